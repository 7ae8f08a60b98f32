/* GFlowNet core: sampling, backward re-sampling, TB and DB residuals and gradients. */
#include <math.h>
#include <string.h>
#include "../tch_check.h"
#include "gfn/gfn.h"
#include "envs/env.h"

static tch_policy *zero_policy(tch_env *e, int learn_pb, int has_flow)
{
  tchi_policy_spec spec = {
    .state_dim = e->d.state_dim, .n_actions = e->d.n_actions, .in_dim = e->in_dim,
    .onehot = 1, .learn_pb = learn_pb, .has_flow = has_flow, .hidden_dim = 8, .n_hidden = 2,
    .act = TCHI_ACT_LEAKY_RELU, .kernel = "auto", .threads = 1, .logz_init = 0.0,
  };
  tch_policy *p = NULL;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_OK);
  return p;
}

static void zero_weights(tch_policy *p)
{
  memset(p->mlp.params, 0, p->mlp.n_params * sizeof(float));
}

/* Builds one trajectory by hand from a list of actions starting at s0 of a 2-D grid. */
static void hand_traj(tch_env *e, tchi_traj *t, size_t i, const int32_t *acts, size_t L)
{
  int32_t s[2] = {0, 0};
  for (size_t k = 0; k < L; k++) {
    memcpy(tchi_traj_state(t, i, k), s, sizeof s);
    t->actions[i * t->T + k] = acts[k];
    if (k + 1 < L) s[acts[k]]++;
  }
  for (size_t k = L; k < t->T; k++) t->actions[i * t->T + k] = -1;
  t->len[i] = (uint32_t)L;
  (void)e;
}

START_TEST(tb_residual_hand_computed)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 4, 1.0, &e), TCH_OK);
  tch_policy *p = zero_policy(e, 0, 0);
  zero_weights(p);   /* logits 0: P_F uniform over valid actions */
  p->log_z = 0.25;
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_traj_reserve(&t, e, 2), TCH_OK);
  /* (0,0) -inc0-> (1,0) -inc1-> (1,1) -EXIT  : stop-terminated interior state */
  const int32_t a0[] = {0, 1, 2};
  /* (0,0) -inc0-> (1,0) -inc0-> (2,0) -inc0-> (3,0) forced EXIT : edge-terminated */
  const int32_t a1[] = {0, 0, 0, 2};
  hand_traj(e, &t, 0, a0, 3);
  hand_traj(e, &t, 1, a1, 4);
  ck_assert_int_eq(tchi_traj_fill_masks(&t, e), TCH_OK);
  double log_r[2];
  int32_t x[4];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, 2, x, -INFINITY, log_r), TCH_OK);
  /* Trajectory 0: P_F = 1/3 * 1/3 * 1/3; P_B: (1,0) has 1 positive coord -> 1; (1,1) has 2 -> 1/2.
   * Trajectory 1: P_F = 1/3 * 1/3 * 1/3 * 1 (forced EXIT); P_B: (1,0) 1, (2,0) 1, (3,0) 1. */
  double want0 = log_r[0] + log(0.5) - 0.25 - 3 * log(1.0 / 3);
  double want1 = log_r[1] + 0.0 - 0.25 - 3 * log(1.0 / 3);
  double delta[2], loss;
  tchi_eval ev;
  tchi_eval_init(&ev);
  ck_assert_int_eq(tchi_tb_loss(p, e, &t, &ev, log_r, NULL, 0, delta, &loss), TCH_OK);
  ck_assert_double_eq_tol(delta[0], want0, 1e-6);
  ck_assert_double_eq_tol(delta[1], want1, 1e-6);
  ck_assert_double_eq_tol(loss, (want0 * want0 + want1 * want1) / 2, 1e-5);
  /* Reward of (1,1) in a 4-grid: u = -1/3 -> a = 1/3 > 0.2 on both axes, not in band: 1e-5. */
  ck_assert_double_eq_tol(log_r[0], log(1e-5), 1e-12);
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

START_TEST(db_residual_hand_computed)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 4, 1.0, &e), TCH_OK);
  tch_policy *p = zero_policy(e, 0, 1);
  zero_weights(p);
  /* flow head bias = 0.5 everywhere: log F(s) = 0.5 */
  p->mlp.params[p->mlp.b_off[p->mlp.n_layers - 1] + p->off_flow] = 0.5f;
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_traj_reserve(&t, e, 2), TCH_OK);
  const int32_t a0[] = {0, 2};          /* (0,0) -> (1,0) -> EXIT */
  const int32_t a1[] = {0, 0, 0, 2};    /* edge-terminated at (3,0) */
  hand_traj(e, &t, 0, a0, 2);
  hand_traj(e, &t, 1, a1, 4);
  ck_assert_int_eq(tchi_traj_fill_masks(&t, e), TCH_OK);
  double log_r[2];
  int32_t x[4];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, 2, x, -INFINITY, log_r), TCH_OK);
  double d[2 * 7], loss;
  ck_assert_int_eq(tchi_db_loss(p, e, &t, NULL, log_r, 0, d, &loss), TCH_OK);
  const double l3 = log(1.0 / 3);
  /* traj 0: t0 = F + log 1/3 - F - log P_B(1 parent) ; t1 = F + log 1/3 - log R(1,0) */
  ck_assert_double_eq_tol(d[0], l3, 1e-6);
  ck_assert_double_eq_tol(d[1], 0.5 + l3 - log_r[0], 1e-6);
  /* traj 1: t0, t1 interior; t2 into forced-terminal (3,0): target log R; EXIT skipped */
  ck_assert_double_eq_tol(d[7 + 0], l3, 1e-6);
  ck_assert_double_eq_tol(d[7 + 1], l3, 1e-6);
  ck_assert_double_eq_tol(d[7 + 2], 0.5 + l3 - log_r[1], 1e-6);
  ck_assert_double_eq(d[7 + 3], 0.0);
  double want = (d[0] * d[0] + d[1] * d[1] + d[7] * d[7] + d[8] * d[8] + d[9] * d[9]) / 2;
  ck_assert_double_eq_tol(loss, want, 1e-6);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

/* Finite-difference check of the analytic TB/DB gradients through the whole pipeline. */
static void check_grad(int db, int learn_pb)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 5, 1.0, &e), TCH_OK);
  tch_policy *p = zero_policy(e, learn_pb, db);
  tchi_rng rng;
  tchi_rng_seed(&rng, 3, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, 6, 0.2, 1.0, &t, NULL), TCH_OK);
  double log_r[6];
  int32_t x[12];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, 6, x, -INFINITY, log_r), TCH_OK);
  double loss0, dres[6 * 9];
  tchi_mlp_zero_grad(&p->mlp);
  p->log_z_grad = 0;
  if (db) ck_assert_int_eq(tchi_db_loss(p, e, &t, NULL, log_r, 1, dres, &loss0), TCH_OK);
  else ck_assert_int_eq(tchi_tb_loss(p, e, &t, NULL, log_r, NULL, 1, NULL, &loss0), TCH_OK);
  /* Probe parameters of every layer, including the output head. */
  size_t probes[] = {0, 3, p->mlp.w_off[1] + 5, p->mlp.b_off[1] + 2, p->mlp.w_off[2] + 1,
                     p->mlp.w_off[2] + 7, p->mlp.b_off[2], p->mlp.b_off[2] + p->out_dim - 1};
  int checked = 0;
  for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
    size_t j = probes[k];
    float keep = p->mlp.params[j];
    const float h = 1e-2f;
    double lp, lm;
    p->mlp.params[j] = keep + h;
    if (db) tchi_db_loss(p, e, &t, NULL, log_r, 0, dres, &lp);
    else tchi_tb_loss(p, e, &t, NULL, log_r, NULL, 0, NULL, &lp);
    p->mlp.params[j] = keep - h;
    if (db) tchi_db_loss(p, e, &t, NULL, log_r, 0, dres, &lm);
    else tchi_tb_loss(p, e, &t, NULL, log_r, NULL, 0, NULL, &lm);
    p->mlp.params[j] = keep;
    double fd = (lp - lm) / (2.0 * h), an = p->mlp.grads[j];
    /* float32 network: central differences with h = 1e-2 are accurate to ~1e-3 relative */
    ck_assert_msg(fabs(fd - an) <= 2e-2 * fmax(1.0, fabs(fd)),
                  "param %zu: analytic %g vs finite difference %g", j, an, fd);
    checked += an != 0.0;
  }
  ck_assert_int_ge(checked, 3);
  if (!db) {
    double keep = p->log_z, lp, lm;
    p->log_z = keep + 1e-4;
    tchi_tb_loss(p, e, &t, NULL, log_r, NULL, 0, NULL, &lp);
    p->log_z = keep - 1e-4;
    tchi_tb_loss(p, e, &t, NULL, log_r, NULL, 0, NULL, &lm);
    p->log_z = keep;
    ck_assert_double_eq_tol(p->log_z_grad, (lp - lm) / 2e-4, 1e-5);
  }
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}

START_TEST(tb_gradient_matches_finite_differences) { check_grad(0, 0); }
END_TEST
START_TEST(tb_learned_pb_gradient_matches_finite_differences) { check_grad(0, 1); }
END_TEST
START_TEST(db_gradient_matches_finite_differences) { check_grad(1, 0); }
END_TEST
START_TEST(db_learned_pb_gradient_matches_finite_differences) { check_grad(1, 1); }
END_TEST

START_TEST(forward_sampling_is_uniform_for_zero_logits)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &e), TCH_OK);
  tch_policy *p = zero_policy(e, 0, 0);
  zero_weights(p);
  tchi_rng rng;
  tchi_rng_seed(&rng, 11, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  const size_t n = 30000;
  double *lpf = malloc(n * sizeof *lpf);
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, n, 0.0, 1.0, &t, lpf), TCH_OK);
  size_t first[3] = {0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    first[t.actions[i * t.T]]++;
    ck_assert_int_eq(t.actions[i * t.T + t.len[i] - 1], 2);
    /* every non-forced step has 3 valid actions: log P_F = -(#non-forced steps) log 3 */
    size_t free_steps = 0;
    for (size_t k = 0; k < t.len[i]; k++) {
      const uint8_t *fm = t.fwd + (i * t.T + k) * 3;
      free_steps += fm[0] && fm[1];
    }
    ck_assert_double_eq_tol(lpf[i], -(double)free_steps * log(3.0), 1e-6);
  }
  /* binomial sd ~ sqrt(n/3*2/3) = 82; 5 sd */
  for (int a = 0; a < 3; a++) ck_assert_uint_lt((size_t)labs((long)first[a] - 10000), 410);
  free(lpf);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

START_TEST(epsilon_and_temperature_change_behaviour_not_scoring)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &e), TCH_OK);
  tch_policy *p = zero_policy(e, 0, 0);
  zero_weights(p);
  /* make EXIT very likely: bias of action 2 = 10 */
  p->mlp.params[p->mlp.b_off[p->mlp.n_layers - 1] + 2] = 10.0f;
  tchi_rng rng;
  tchi_rng_seed(&rng, 5, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  const size_t n = 4000;
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, n, 0.0, 1.0, &t, NULL), TCH_OK);
  size_t stop_first = 0;
  for (size_t i = 0; i < n; i++) stop_first += t.len[i] == 1;
  ck_assert_uint_gt(stop_first, n * 99 / 100);
  /* eps = 1: uniform over valid actions -> EXIT first with prob 1/3 */
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, n, 1.0, 1.0, &t, NULL), TCH_OK);
  stop_first = 0;
  for (size_t i = 0; i < n; i++) stop_first += t.len[i] == 1;
  ck_assert_uint_lt((size_t)labs((long)stop_first - (long)n / 3), 150);
  /* huge temperature flattens the logits too */
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, n, 0.0, 1e6, &t, NULL), TCH_OK);
  stop_first = 0;
  for (size_t i = 0; i < n; i++) stop_first += t.len[i] == 1;
  ck_assert_uint_lt((size_t)labs((long)stop_first - (long)n / 3), 150);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

START_TEST(backward_sampling_builds_valid_trajectories)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &e), TCH_OK);
  tchi_rng rng;
  tchi_rng_seed(&rng, 9, 0);
  /* interior (stop-terminated), edge-terminated, origin */
  const int32_t x[] = {2, 3, 5, 2, 0, 0, 1, 5};
  tchi_traj t;
  tchi_traj_init(&t);
  size_t last_dec_axis0 = 0;
  for (int rep = 0; rep < 200; rep++) {
    ck_assert_int_eq(tchi_sample_backward(NULL, e, &rng, 4, x, &t), TCH_OK);
    for (size_t i = 0; i < 4; i++) {
      size_t L = t.len[i];
      ck_assert_uint_eq(L, (size_t)(x[2 * i] + x[2 * i + 1]) + 1);
      ck_assert(tchi_env_is_s0(e, tchi_traj_state(&t, i, 0)));
      ck_assert_mem_eq(tchi_traj_state(&t, i, L - 1), x + 2 * i, 2 * sizeof(int32_t));
      ck_assert_int_eq(t.actions[i * t.T + L - 1], 2);
      for (size_t k = 0; k + 1 < L; k++) {
        int32_t s[2];
        memcpy(s, tchi_traj_state(&t, i, k), sizeof s);
        s[t.actions[i * t.T + k]]++;
        ck_assert_mem_eq(s, tchi_traj_state(&t, i, k + 1), sizeof s);
        /* no intermediate state may be terminal (coordinate at H-1) */
        ck_assert(s[0] < 5 && s[1] < 5 ? 1 : k + 2 == L);
      }
    }
    /* (5,2): the last forward step must increment axis 0 (the other parent is terminal) */
    last_dec_axis0 += t.actions[1 * t.T + t.len[1] - 2] == 0;
  }
  ck_assert_uint_eq(last_dec_axis0, 200);
  tchi_traj_destroy(&t);
  tch_env_free(e);
}
END_TEST

START_TEST(backward_sampling_is_uniform_over_parents)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &e), TCH_OK);
  tchi_rng rng;
  tchi_rng_seed(&rng, 4, 0);
  const size_t n = 20000;
  int32_t *x = malloc(n * 2 * sizeof *x);
  for (size_t i = 0; i < n; i++) { x[2 * i] = 1; x[2 * i + 1] = 1; }
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_sample_backward(NULL, e, &rng, n, x, &t), TCH_OK);
  size_t via0 = 0;
  for (size_t i = 0; i < n; i++) via0 += t.actions[i * t.T] == 0;
  ck_assert_uint_lt((size_t)labs((long)via0 - (long)n / 2), 5 * 71);
  free(x);
  tchi_traj_destroy(&t);
  tch_env_free(e);
}
END_TEST

/* Replayed transitions give the same residuals as the trajectories they came from, and
 * their gradient matches finite differences. */
static void check_transitions(int learn_pb)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 5, 1.0, &e), TCH_OK);
  tch_policy *p = zero_policy(e, learn_pb, 1);
  tchi_rng rng;
  tchi_rng_seed(&rng, 12, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, 6, 0.3, 1.0, &t, NULL), TCH_OK);
  double log_r[6], dres[6 * 9], loss;
  int32_t x[12];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, 6, x, -INFINITY, log_r), TCH_OK);
  ck_assert_int_eq(tchi_db_loss(p, e, &t, NULL, log_r, 0, dres, &loss), TCH_OK);
  /* build the transition records */
  int32_t rec[6 * 9 * 6];
  double tlr[6 * 9], want[6 * 9], got[6 * 9];
  size_t m = 0;
  for (size_t i = 0; i < 6; i++) {
    size_t L = t.len[i];
    size_t n_tr = L - (size_t)tchi_forced_terminal(t.fwd + (i * t.T + L - 1) * 3, 3);
    for (size_t k = 0; k < n_tr; k++, m++) {
      int32_t a = t.actions[i * t.T + k];
      memcpy(rec + m * 6, tchi_traj_state(&t, i, k), 8);
      rec[m * 6 + 2] = a;
      memcpy(rec + m * 6 + 3, tchi_traj_state(&t, i, a == 2 ? k : k + 1), 8);
      rec[m * 6 + 5] = k + 1 == n_tr;
      tlr[m] = k + 1 == n_tr ? log_r[i] : -INFINITY;
      want[m] = dres[i * t.T + k];
    }
  }
  tchi_eval ev;
  tchi_eval_init(&ev);
  double tloss;
  ck_assert_int_eq(tchi_db_transition_loss(p, e, m, rec, tlr, &ev, 0, got, &tloss), TCH_OK);
  for (size_t j = 0; j < m; j++) ck_assert_double_eq_tol(got[j], want[j], 1e-9);
  /* gradient */
  tchi_mlp_zero_grad(&p->mlp);
  ck_assert_int_eq(tchi_db_transition_loss(p, e, m, rec, tlr, &ev, 1, NULL, &tloss), TCH_OK);
  size_t probes[] = {1, p->mlp.w_off[1] + 4, p->mlp.w_off[2] + 3, p->mlp.b_off[2],
                     p->mlp.b_off[2] + p->out_dim - 1, p->mlp.b_off[2] + p->out_dim - 2};
  for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
    size_t j = probes[k];
    float keep = p->mlp.params[j];
    const float h = 1e-2f;
    double lp, lm;
    p->mlp.params[j] = keep + h;
    tchi_db_transition_loss(p, e, m, rec, tlr, &ev, 0, NULL, &lp);
    p->mlp.params[j] = keep - h;
    tchi_db_transition_loss(p, e, m, rec, tlr, &ev, 0, NULL, &lm);
    p->mlp.params[j] = keep;
    double fd = (lp - lm) / (2.0 * h);
    ck_assert_msg(fabs(fd - p->mlp.grads[j]) <= 2e-2 * fmax(1.0, fabs(fd)),
                  "param %zu: analytic %g vs finite difference %g", j, p->mlp.grads[j], fd);
  }
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}

START_TEST(db_transitions_match_trajectories) { check_transitions(0); }
END_TEST
START_TEST(db_transitions_learned_pb) { check_transitions(1); }
END_TEST

int main(void)
{
  Suite *s = suite_create("gfn");
  TCase *tc = tcase_create("gfn");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, tb_residual_hand_computed);
  tcase_add_test(tc, db_residual_hand_computed);
  tcase_add_test(tc, tb_gradient_matches_finite_differences);
  tcase_add_test(tc, tb_learned_pb_gradient_matches_finite_differences);
  tcase_add_test(tc, db_gradient_matches_finite_differences);
  tcase_add_test(tc, db_learned_pb_gradient_matches_finite_differences);
  tcase_add_test(tc, forward_sampling_is_uniform_for_zero_logits);
  tcase_add_test(tc, epsilon_and_temperature_change_behaviour_not_scoring);
  tcase_add_test(tc, backward_sampling_builds_valid_trajectories);
  tcase_add_test(tc, backward_sampling_is_uniform_over_parents);
  tcase_add_test(tc, db_transitions_match_trajectories);
  tcase_add_test(tc, db_transitions_learned_pb);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
