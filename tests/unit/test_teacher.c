/* The Teacher's reward, the behaviour mixer and local search. */
#include <math.h>
#include <string.h>
#include "../tch_check.h"
#include "teacher/behaviour.h"

START_TEST(teacher_reward_values)
{
  tchi_teacher_reward tr = {.use_log = 1, .C = 19.0, .alpha = 0.0, .exponent = 1.0};
  /* under-sampled (delta > 0): weight 1 + C = 20 */
  ck_assert_double_eq_tol(tchi_teacher_reward_value(&tr, 2.0, log(0.5)), log(1.001 + 80.0), 1e-12);
  /* over-sampled: weight 1 */
  ck_assert_double_eq_tol(tchi_teacher_reward_value(&tr, -2.0, log(0.5)), log(1.001 + 4.0), 1e-12);
  ck_assert_double_eq_tol(tchi_teacher_reward_value(&tr, 0.0, log(0.5)), log(1.001), 1e-12);
  /* alpha mixes R^alpha; alpha = 0 gives 1 even for R = 0 */
  ck_assert_double_eq_tol(tchi_teacher_reward_value(&tr, 1.0, -INFINITY), log(1.001 + 20.0), 1e-12);
  tr.alpha = 0.5;
  ck_assert_double_eq_tol(tchi_teacher_reward_value(&tr, 1.0, log(0.25)), log(21.001) * 0.5, 1e-12);
  /* no log: w d^2 */
  tr.use_log = 0;
  tr.alpha = 0.0;
  tr.C = 4.0;
  ck_assert_double_eq_tol(tchi_teacher_reward_value(&tr, 3.0, 0.0), 45.0, 1e-12);
  ck_assert_double_eq_tol(tchi_teacher_reward_value(&tr, -3.0, 0.0), 9.0, 1e-12);
  /* the Teacher trains on beta_T log(R_T + 1e-8) */
  tr.exponent = 2.0;
  ck_assert_double_eq_tol(tchi_teacher_log_reward(&tr, 3.0), 2.0 * log(3.0 + 1e-8), 1e-12);
}
END_TEST

START_TEST(teacher_reward_db_sums_transitions)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 4, 1.0, &e), TCH_OK);
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_traj_reserve(&t, e, 2), TCH_OK);
  /* (0,0) -> (1,0) -> EXIT (2 transitions); (0,0)->(1,0)->(2,0)->(3,0) forced EXIT (3) */
  const int32_t a0[] = {0, 2}, a1[] = {0, 0, 0, 2};
  const int32_t s0[][2] = {{0, 0}, {1, 0}}, s1[][2] = {{0, 0}, {1, 0}, {2, 0}, {3, 0}};
  for (int k = 0; k < 2; k++) { memcpy(tchi_traj_state(&t, 0, k), s0[k], 8); t.actions[k] = a0[k]; }
  for (int k = 0; k < 4; k++) { memcpy(tchi_traj_state(&t, 1, k), s1[k], 8); t.actions[t.T + k] = a1[k]; }
  t.len[0] = 2;
  t.len[1] = 4;
  ck_assert_int_eq(tchi_traj_fill_masks(&t, e), TCH_OK);
  double d[2 * 7] = {0};
  d[0] = 1.0; d[1] = -0.5;
  d[7] = 0.3; d[8] = -0.2; d[9] = 2.0; d[10] = 0.0;
  double log_r[2] = {log(0.5), log(2.0)}, rt[2];
  tchi_teacher_reward tr = {.use_log = 1, .C = 19.0, .alpha = 1.0, .exponent = 1.0};
  tchi_teacher_rewards_db(&tr, &t, d, log_r, rt);
  double f1 = log(1.001 + 20.0), f2 = log(1.001 + 0.25);
  ck_assert_double_eq_tol(rt[0], f1 * 1.0 + f2 * 1.5, 1e-12);   /* r = 1 + R on the last */
  double g1 = log(1.001 + 0.09 * 20), g2 = log(1.001 + 0.04), g3 = log(1.001 + 80.0);
  ck_assert_double_eq_tol(rt[1], g1 + g2 + g3 * 3.0, 1e-12);   /* forced EXIT has no transition */
  tchi_traj_destroy(&t);
  tch_env_free(e);
}
END_TEST

/* The reference's rule (grid/trainer.py) for step i. */
static void reference_source(int teacher, int buffer, int ls, int i, tch_source *src, int *use_ls)
{
  *use_ls = 0;
  if (teacher) {
    if (i % 2 == 0 || !buffer) {
      if ((i / 2) % 2 == 0) *src = TCH_SOURCE_STUDENT;
      else {
        *src = TCH_SOURCE_TEACHER;
        *use_ls = ls && (i / 4) % 4 == 3;
      }
    } else {
      *src = TCH_SOURCE_BUFFER;
    }
  } else {
    if (i % 2 == 0 || !buffer) {
      *src = TCH_SOURCE_STUDENT;
      *use_ls = ls && (i / 2) % 8 == 7;
    } else {
      *src = TCH_SOURCE_BUFFER;
    }
  }
}

START_TEST(auto_schedules_match_the_reference)
{
  for (int mask = 0; mask < 8; mask++) {
    int teacher = mask & 1, buffer = (mask >> 1) & 1, ls = (mask >> 2) & 1;
    tch_mixer *m;
    ck_assert_int_eq(tchi_mixer_create(tchi_mixer_auto_schedule(teacher, buffer, ls), &m), TCH_OK);
    for (int i = 0; i < 200; i++) {
      tch_source want, got;
      int want_ls;
      uint32_t flags;
      reference_source(teacher, buffer, ls, i, &want, &want_ls);
      tchi_mixer_source(m, 0, (uint64_t)i, &got, &flags);
      ck_assert_msg(got == want && ((flags & TCH_MIXER_LOCAL_SEARCH) != 0) == want_ls,
                    "teacher %d buffer %d ls %d step %d: got %d/%u want %d/%d", teacher, buffer,
                    ls, i, got, flags, want, want_ls);
    }
    tchi_mixer_release(m);
  }
}
END_TEST

START_TEST(mixer_parsing_and_random_weights)
{
  tch_mixer *m;
  ck_assert_int_eq(tch_mixer_create(" student , teacher+ls,buffer ", &m), TCH_OK);
  const char *text;
  ck_assert_int_eq(tch_mixer_schedule(m, &text), TCH_OK);
  ck_assert_str_eq(text, "student,teacher+ls,buffer");
  tch_mixer_free(m);
  const char *bad[] = {"", "student,", "studnet", "buffer+ls", "teacher+xx", "random:",
                       "random:student=-1", "random:student=0", "random:teach=1", NULL};
  for (const char **b = bad; *b; b++) {
    ck_assert_msg(tch_mixer_create(*b, &m) == TCH_E_CONFIG, "'%s' accepted", *b);
    ck_assert_ptr_null(m);
  }
  /* too long to hold: rejected, never truncated into another schedule */
  char longs[700] = "";
  for (int i = 0; i < 80; i++) strcat(longs, i ? ",student" : "student");
  ck_assert_int_eq(tch_mixer_create(longs, &m), TCH_E_CONFIG);
  ck_assert_ptr_null(m);
  ck_assert_int_eq(tch_mixer_create("random:student=2,teacher=1,buffer=1", &m), TCH_OK);
  size_t counts[3] = {0, 0, 0};
  const int n = 40000;
  for (int i = 0; i < n; i++) {
    tch_source s;
    ck_assert_int_eq(tch_mixer_source(m, 7, (uint64_t)i, &s, NULL), TCH_OK);
    counts[s]++;
  }
  /* expected 0.5 / 0.25 / 0.25; 5 standard errors */
  ck_assert_double_lt(fabs(counts[0] / (double)n - 0.5), 5 * sqrt(0.25 / n));
  ck_assert_double_lt(fabs(counts[1] / (double)n - 0.25), 5 * sqrt(0.1875 / n));
  /* deterministic in (seed, step) */
  tch_source s1, s2;
  tch_mixer_source(m, 7, 123, &s1, NULL);
  tch_mixer_source(m, 7, 123, &s2, NULL);
  ck_assert_int_eq(s1, s2);
  ck_assert_int_eq(tch_mixer_set_exploration(m, TCH_SOURCE_BUFFER, 0.1, 1.0), TCH_E_ARG);
  ck_assert_int_eq(tch_mixer_set_exploration(m, TCH_SOURCE_TEACHER, 0.1, 2.0), TCH_OK);
  double eps, temp;
  ck_assert_int_eq(tch_mixer_get_exploration(m, TCH_SOURCE_TEACHER, &eps, &temp), TCH_OK);
  ck_assert_double_eq(eps, 0.1);
  ck_assert_double_eq(temp, 2.0);
  tch_mixer_free(m);
}
END_TEST

START_TEST(mixer_draws_standalone)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &e), TCH_OK);
  tch_policy *p;
  ck_assert_int_eq(tch_policy_create(e, NULL, 1, &p), TCH_OK);
  tch_buffer *b;
  ck_assert_int_eq(tch_buffer_create(2, 10, TCH_PRIORITY_NONE, 0.01, &b), TCH_OK);
  const int32_t x[] = {3, 2};
  const double lr = log(0.1);
  ck_assert_int_eq(tch_buffer_add_discrete(b, 1, x, &lr), TCH_OK);
  tch_mixer *m;
  ck_assert_int_eq(tch_mixer_create("student,buffer", &m), TCH_OK);
  enum { N = 5, T = 11 };
  int32_t st[N * T * 2], ac[N * T];
  uint32_t len[N];
  tch_source src;
  /* nothing attached yet */
  ck_assert_int_eq(tch_mixer_draw_discrete(m, e, 1, 0, N, st, ac, len, &src, NULL), TCH_E_STATE);
  ck_assert_int_eq(tch_mixer_set_policy(m, TCH_SOURCE_STUDENT, p), TCH_OK);
  ck_assert_int_eq(tch_mixer_draw_discrete(m, e, 1, 0, N, st, ac, len, &src, NULL), TCH_OK);
  ck_assert_int_eq(src, TCH_SOURCE_STUDENT);
  ck_assert_int_eq(tch_mixer_draw_discrete(m, e, 1, 1, N, st, ac, len, &src, NULL), TCH_E_STATE);
  ck_assert_int_eq(tch_mixer_set_buffer(m, b), TCH_OK);
  ck_assert_int_eq(tch_mixer_draw_discrete(m, e, 1, 1, N, st, ac, len, &src, NULL), TCH_OK);
  ck_assert_int_eq(src, TCH_SOURCE_BUFFER);
  for (int i = 0; i < N; i++) {   /* every replayed trajectory ends at the buffered state */
    ck_assert_uint_eq(len[i], 6);
    ck_assert_int_eq(st[(i * T + 5) * 2], 3);
    ck_assert_int_eq(st[(i * T + 5) * 2 + 1], 2);
  }
  /* the mixer keeps what it was given alive */
  tch_policy_free(p);
  tch_buffer_free(b);
  ck_assert_int_eq(tch_mixer_draw_discrete(m, e, 2, 1, N, st, ac, len, &src, NULL), TCH_OK);
  tch_mixer_free(m);
  tch_env_free(e);
}
END_TEST

START_TEST(local_search_never_lowers_the_reward)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 16, 1.0, &e), TCH_OK);
  tch_policy *p;
  ck_assert_int_eq(tch_policy_create(e, NULL, 2, &p), TCH_OK);
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  const size_t n = 64;
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, n, 0.0, 1.0, &t, NULL), TCH_OK);
  int32_t x[64 * 2];
  double before[64];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, n, x, -INFINITY, t.log_r), TCH_OK);
  memcpy(before, t.log_r, sizeof before);
  tchi_teacher_reward tr = {.use_log = 1, .C = 19.0, .alpha = 0.0, .exponent = 1.0};
  tchi_ls_params lp = {.iterations = 4, .back_ratio = 0.5, .teacher_ls = 0, .student = p,
                       .tr = &tr, .reward_exponent = 1.0, .clip_min = -INFINITY};
  tchi_ls_ws w;
  tchi_ls_ws_init(&w);
  ck_assert_int_eq(tchi_local_search(p, e, &rng, &lp, &t, &w), TCH_OK);
  size_t improved = 0;
  double check[64];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, n, x, -INFINITY, check), TCH_OK);
  for (size_t i = 0; i < n; i++) {
    ck_assert_double_ge(t.log_r[i], before[i]);
    ck_assert_double_eq(t.log_r[i], check[i]);          /* stored reward is the state's */
    improved += t.log_r[i] > before[i];
    ck_assert(tchi_env_is_s0(e, tchi_traj_state(&t, i, 0)));
    for (size_t k = 0; k + 1 < t.len[i]; k++) {          /* consecutive states are steps */
      int32_t s[2];
      memcpy(s, tchi_traj_state(&t, i, k), sizeof s);
      s[t.actions[i * t.T + k]]++;
      ck_assert_mem_eq(s, tchi_traj_state(&t, i, k + 1), sizeof s);
    }
  }
  ck_assert_uint_gt(improved, 0);
  /* the refined batch is still scorable: masks were carried along */
  double loss;
  ck_assert_int_eq(tchi_tb_loss(p, e, &t, NULL, t.log_r, NULL, 0, NULL, &loss), TCH_OK);
  ck_assert(isfinite(loss));
  /* Teacher acceptance runs too */
  lp.teacher_ls = 1;
  ck_assert_int_eq(tchi_local_search(p, e, &rng, &lp, &t, &w), TCH_OK);
  tchi_ls_ws_destroy(&w);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

/* Analytic GAFN gradients (policy network, log Z, flow, learned P_B, RND predictor) against
 * central differences of the loss. */
static void gafn_grad_check(int learn_pb)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 5, 1.0, &e), TCH_OK);
  tchi_policy_spec spec = {
    .state_dim = 2, .n_actions = 3, .in_dim = e->in_dim, .onehot = 1, .learn_pb = learn_pb,
    .has_flow = 1, .hidden_dim = 8, .n_hidden = 2, .act = TCHI_ACT_LEAKY_RELU, .kernel = "auto",
    .threads = 1, .logz_init = 0.3,
  };
  tch_policy *p;
  ck_assert_int_eq(tchi_policy_new(&spec, 4, 0, &p), TCH_OK);
  tchi_rnd rnd;
  ck_assert_int_eq(tchi_rnd_init(&rnd, e->in_dim, 8, 4, 4), TCH_OK);
  tchi_rng rng;
  tchi_rng_seed(&rng, 8, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, 6, 0.3, 1.0, &t, NULL), TCH_OK);
  int32_t x[12];
  double log_r[6];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, 6, x, -INFINITY, log_r), TCH_OK);
  /* a large ri_scale makes the edge bonus matter */
  tchi_gafn_params gp = {.ri_scale = 0.5, .ri_loss_weight = 0.7, .edge_ri = 1};
  tchi_eval ev;
  tchi_eval_init(&ev);
  double loss0;
  tchi_mlp_zero_grad(&p->mlp);
  tchi_mlp_zero_grad(&rnd.pred);
  p->log_z_grad = 0.0;
  ck_assert_int_eq(tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 1, &loss0), TCH_OK);
  float *vals[2] = {p->mlp.params, rnd.pred.params};
  const float *grads[2] = {p->mlp.grads, rnd.pred.grads};
  size_t last = p->mlp.b_off[p->mlp.n_layers - 1];
  size_t probes[2][6] = {
    {0, p->mlp.w_off[1] + 3, last, last + p->off_flow, last + (learn_pb ? p->off_pb : 1),
     p->mlp.w_off[2] + 2},
    {1, rnd.pred.w_off[1] + 5, rnd.pred.w_off[2] + 1, rnd.pred.b_off[2], rnd.pred.b_off[2] + 3, 7},
  };
  for (int net = 0; net < 2; net++)
    for (int k = 0; k < 6; k++) {
      size_t j = probes[net][k];
      float keep = vals[net][j];
      const float h = 1e-2f;
      double lp, lm;
      vals[net][j] = keep + h;
      ck_assert_int_eq(tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 0, &lp), TCH_OK);
      vals[net][j] = keep - h;
      ck_assert_int_eq(tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 0, &lm), TCH_OK);
      vals[net][j] = keep;
      double fd = (lp - lm) / (2.0 * h);
      /* intrinsic rewards are constants in the reference (computed without gradients): the
       * predictor's finite difference also moves them, so compare the predictor only where
       * its RND-loss term dominates: with edge rewards off */
      if (net == 1) continue;
      ck_assert_msg(fabs(fd - grads[net][j]) <= 2e-2 * fmax(1.0, fabs(fd)),
                    "net %d param %zu: analytic %g vs finite difference %g", net, j, grads[net][j], fd);
    }
  /* log Z */
  double keep = p->log_z, lp, lm;
  p->log_z = keep + 1e-4;
  tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 0, &lp);
  p->log_z = keep - 1e-4;
  tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 0, &lm);
  p->log_z = keep;
  ck_assert_double_eq_tol(p->log_z_grad, (lp - lm) / 2e-4, 1e-5);
  /* predictor gradient = gradient of the RND loss alone, checked with ri_scale 0 (no
   * intrinsic rewards in D, so D does not depend on the predictor) */
  gp.ri_scale = 0.0;
  tchi_mlp_zero_grad(&rnd.pred);
  tchi_mlp_zero_grad(&p->mlp);
  ck_assert_int_eq(tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 1, &loss0), TCH_OK);
  for (int k = 0; k < 6; k++) {
    size_t j = probes[1][k];
    float kv = rnd.pred.params[j];
    const float h = 1e-2f;
    rnd.pred.params[j] = kv + h;
    tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 0, &lp);
    rnd.pred.params[j] = kv - h;
    tchi_gafn_loss(p, &rnd, e, &t, &ev, log_r, &gp, 0, &lm);
    rnd.pred.params[j] = kv;
    double fd = (lp - lm) / (2.0 * h);
    ck_assert_msg(fabs(fd - rnd.pred.grads[j]) <= 2e-2 * fmax(1.0, fabs(fd)),
                  "RND param %zu: analytic %g vs finite difference %g", j, rnd.pred.grads[j], fd);
  }
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  tchi_rnd_destroy(&rnd);
  tch_policy_free(p);
  tch_env_free(e);
}

START_TEST(gafn_gradients) { gafn_grad_check(0); }
END_TEST
START_TEST(gafn_gradients_learned_pb) { gafn_grad_check(1); }
END_TEST

int main(void)
{
  Suite *s = suite_create("teacher");
  TCase *tc = tcase_create("teacher");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, teacher_reward_values);
  tcase_add_test(tc, teacher_reward_db_sums_transitions);
  tcase_add_test(tc, auto_schedules_match_the_reference);
  tcase_add_test(tc, mixer_parsing_and_random_weights);
  tcase_add_test(tc, mixer_draws_standalone);
  tcase_add_test(tc, local_search_never_lowers_the_reward);
  tcase_add_test(tc, gafn_gradients);
  tcase_add_test(tc, gafn_gradients_learned_pb);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
