/* Small networks shared by the SMC sampler tests (test_smc_sampler.c, test_smc_mala.c): a
 * tiny diffusion policy spec (optionally on the OU-DDS reference), a policy net with
 * optionally randomised last layer, and a log-flow twist whose last layer is zero (f_phi = 0)
 * or random. Header-only (static inline), included after tch_check.h and the library's
 * internal headers (diffusion/diffusion.h, smc/smc.h). */
#ifndef TCH_TEST_SMC_FIXTURES_H
#define TCH_TEST_SMC_FIXTURES_H

static inline void small_spec(tchi_dnet_spec *s, uint32_t dim, uint32_t T, double ou_std)
{
  tchi_dnet_spec_default(s, dim);
  s->T = T;
  s->hidden_dim = 16;
  s->s_emb_dim = 12;
  s->t_emb_dim = 10;
  s->harmonics_dim = 6;
  if (ou_std > 0) tchi_dnet_spec_set_ou_dds(s, ou_std);
}

/* randomise_last: scale of random last-layer weights (0 keeps the zero init: u = 0). */
static inline tchi_dnet *make_net(const tchi_dnet_spec *spec, uint64_t seed, double randomise_last)
{
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_INIT, 0));
  tchi_dnet *net = NULL;
  tch_status s = tchi_dnet_create(spec, &rng, &net);
  ck_assert_msg(s == TCH_OK, "create: %s", tch_last_error());
  if (randomise_last > 0) {
    const tchi_dlinear *L = &net->joint.lin[net->joint.n - 1];
    for (size_t i = 0; i < (size_t)L->in * L->out + L->out; i++)
      net->params[L->w + i] = (float)(randomise_last * (2.0 * tchi_rng_uniform(&rng) - 1.0));
  }
  return net;
}

static inline tchi_dflow *make_flow(uint32_t dim, uint32_t T, uint64_t seed, double randomise_last,
                             tchi_beta_schedule beta)
{
  tchi_dflow_spec fs;
  tchi_dflow_spec_default(&fs, dim, T);
  fs.hidden = 8;
  fs.beta = beta;
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_INIT, 1));
  tchi_dflow *f = NULL;
  tch_status s = tchi_dflow_create(&fs, &rng, &f);
  ck_assert_msg(s == TCH_OK, "flow create: %s", tch_last_error());
  tchi_mlp *b = &f->body;
  size_t l = b->n_layers - 1;
  float *w = b->params + b->w_off[l];
  for (size_t i = 0; i < b->dims[l] + 1; i++)   /* W (dims[l] x 1) then b */
    w[i] = randomise_last > 0 ? (float)(randomise_last * (2.0 * tchi_rng_uniform(&rng) - 1.0)) : 0.0f;
  return f;
}

#endif
