/* golden-iddpm.c — the iddpm (v1.0) and iddpm_v2_mask (v1.1) cases: the whole sampling chain
 * around a tiny STDiT, replaying the recorded noise stream; every step's intermediates compared
 * at 1e-4 relative (the tolerance for sampler trajectories). */
#include "kin-golden.h"
#include "kin-error.h"
#include "kin-iddpm.h"
#include "kin-stdit.h"
#include <stdio.h>
#include <string.h>

#define STEP_TOL 1e-4

typedef struct {
  KinGoldenCase *gc;
  KinStdit *model;
  KinTensor *y;            /* [2n, 1, L, C_cap] = cat(prompts, null) */
  int32_t *mask;           /* [n, L] */
  int n, L;
  float *height, *width, *num_frames, *fps, *ar; /* [n] or NULL (v1.0) */
  int next_draw;
  gboolean noise_ok;
  int64_t shape[5];        /* [2n, C, T, H, W] */
} Ctx;

static void
replay_noise (gpointer user, float *out, size_t n)
{
  Ctx *c = user;
  g_autofree char *name = g_strdup_printf ("golden.noise.%d", c->next_draw++);
  size_t got = 0;
  g_autofree float *d = kin_golden_tensor_f32 (c->gc, name, &got, NULL);
  if (d == NULL || got != n) {
    printf ("  noise draw %s: %s (wanted %zu values, have %zu)\n", name, d ? "size differs" : "missing", n, got);
    c->noise_ok = FALSE;
    memset (out, 0, n * sizeof (float));
    return;
  }
  memcpy (out, d, n * sizeof (float));
}

static gboolean
run_model (gpointer user, const float *x, const float *timesteps, const guint8 *x_mask, float *out,
           GError **error)
{
  Ctx *c = user;
  KinBackend *be = c->gc->be;
  g_autoptr (KinTensor) xt = kin_tensor_from_host_f32 (be, x, 5, c->shape, error);
  int64_t oshape[5] = { c->shape[0], 2 * c->shape[1], c->shape[2], c->shape[3], c->shape[4] };
  g_autoptr (KinTensor) ot = kin_tensor_new (be, KIN_DTYPE_F32, 5, oshape, error);
  if (xt == NULL || ot == NULL)
    return FALSE;
  KinStditInput in = { .x = xt, .timestep = timesteps, .y = c->y, .mask = c->mask, .mask_rows = c->n,
                       .height = c->height, .width = c->width, .num_frames = c->num_frames,
                       .ar = c->ar, .fps = c->fps, .cond_rows = c->n, .x_mask = x_mask };
  if (!kin_stdit_forward (c->model, &in, ot, error))
    return FALSE;
  be->download (be, out, ot->data, kin_tensor_nbytes (ot));
  return TRUE;
}

static void
on_trace (gpointer user, int step, const char *what, const float *data, size_t n)
{
  Ctx *c = user;
  g_autofree char *name = g_strdup_printf ("golden.step.%d.%s", step, what);
  if (kin_weights_contains (c->gc->tensors, name))
    kin_golden_compare_tol (c->gc, name, data, n, STEP_TOL);
}

static void
compare_schedule (KinGoldenCase *gc, const KinIddpmSchedule *s)
{
  const struct { const char *name; const double *v; } tabs[] = {
    { "betas", s->betas }, { "alphas_cumprod", s->alphas_cumprod },
    { "alphas_cumprod_prev", s->alphas_cumprod_prev }, { "sqrt_alphas_cumprod", s->sqrt_alphas_cumprod },
    { "sqrt_one_minus_alphas_cumprod", s->sqrt_one_minus_alphas_cumprod },
    { "sqrt_recip_alphas_cumprod", s->sqrt_recip_alphas_cumprod },
    { "sqrt_recipm1_alphas_cumprod", s->sqrt_recipm1_alphas_cumprod },
    { "posterior_mean_coef1", s->posterior_mean_coef1 }, { "posterior_mean_coef2", s->posterior_mean_coef2 },
    { "posterior_log_variance_clipped", s->posterior_log_variance_clipped },
  };
  g_autofree float *f = g_new (float, s->num_steps);
  for (guint i = 0; i < G_N_ELEMENTS (tabs); i++) {
    g_autofree char *name = g_strconcat ("golden.schedule.", tabs[i].name, NULL);
    for (int k = 0; k < s->num_steps; k++)
      f[k] = (float) tabs[i].v[k];
    kin_golden_compare_tol (gc, name, f, s->num_steps, 1e-6);
  }
  /* timestep map, exactly */
  const KinWeightEntry *e = kin_weights_lookup (gc->tensors, "golden.schedule.timestep_map");
  if (e != NULL && e->dtype == KIN_DTYPE_I64) {
    g_autofree int64_t *m = g_new (int64_t, s->num_steps);
    for (int k = 0; k < s->num_steps; k++)
      m[k] = s->timestep_map[k];
    kin_golden_compare_ids (gc, "golden.schedule.timestep_map", m, s->num_steps, e->data,
                            e->nbytes / 8);
  }
}

static float *
cond_array (KinGoldenCase *gc, const char *name)
{
  return kin_weights_contains (gc->tensors, name) ? kin_golden_tensor_f32 (gc, name, NULL, NULL) : NULL;
}

gboolean
kin_golden_run_iddpm (KinGoldenCase *gc, GError **error)
{
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  JsonNode *mn = kin_golden_config_node (gc, "model");
  if (gc->tensors == NULL || mn == NULL || !JSON_NODE_HOLDS_OBJECT (mn)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "iddpm case without model config or tensors");
    return FALSE;
  }
  if (!kin_stdit_config_derive (&cfg, json_node_get_object (mn), gc->tensors, error))
    return FALSE;
  g_autoptr (KinStdit) model = kin_stdit_load (gc->tensors, &cfg, gc->be, error);
  if (model == NULL)
    return FALSE;

  int K = (int) kin_golden_config_int (gc, "scheduler.num_sampling_steps", 10);
  int T1000 = (int) kin_golden_config_int (gc, "scheduler.diffusion_steps", 1000);
  float cfg_scale = (float) kin_golden_config_double (gc, "scheduler.cfg_scale", 7.0);
  /* v1.0 hard-codes 3 guided channels; v1.1 reads cfg_channel (None → out/2) */
  int cfg_ch = cfg.version == KIN_STDIT_V1 ? 3
               : (int) kin_golden_config_int (gc, "scheduler.cfg_channel", cfg.in_channels);
  KinIddpmSchedule *s = kin_iddpm_schedule_new (K, T1000, cfg.version == KIN_STDIT_V1 ? KIN_IDDPM_TABLES_F64
                                                                                    : KIN_IDDPM_TABLES_F32, error);
  if (s == NULL)
    return FALSE;
  compare_schedule (gc, s);

  const KinWeightEntry *ye = kin_golden_entry (gc, "input.y", error);
  const KinWeightEntry *me = ye ? kin_golden_entry (gc, "input.mask", error) : NULL;
  if (me == NULL) {
    kin_iddpm_schedule_free (s);
    return FALSE;
  }
  Ctx c = { .gc = gc, .model = model, .noise_ok = TRUE };
  c.n = (int) ye->shape[0];
  c.L = (int) ye->shape[ye->ndim - 2];
  int Cc = (int) ye->shape[ye->ndim - 1];
  /* y = cat(prompts, null caption repeated) */
  g_autofree float *yp = kin_weight_entry_to_f32 (ye);
  g_autofree float *null = kin_tensor_to_host_f32 (kin_stdit_get_null_caption (model));
  g_autofree float *yall = g_new (float, (size_t) 2 * c.n * c.L * Cc);
  memcpy (yall, yp, sizeof (float) * c.n * c.L * Cc);
  for (int b = 0; b < c.n; b++)
    memcpy (yall + (size_t) (c.n + b) * c.L * Cc, null, sizeof (float) * c.L * Cc);
  kin_golden_compare (gc, "golden.y_null", yall + (size_t) c.n * c.L * Cc, (size_t) c.n * c.L * Cc);
  int64_t yshape[4] = { 2 * c.n, 1, c.L, Cc };
  c.y = kin_tensor_from_host_f32 (gc->be, yall, 4, yshape, error);
  c.mask = g_new (int32_t, (size_t) c.n * c.L);
  for (int i = 0; i < c.n * c.L; i++)
    c.mask[i] = (int32_t) ((const int64_t *) me->data)[i];
  c.height = cond_array (gc, "input.height");
  c.width = cond_array (gc, "input.width");
  c.num_frames = cond_array (gc, "input.num_frames");
  c.fps = cond_array (gc, "input.fps");
  c.ar = cond_array (gc, "input.ar");

  /* initial latent: v1.0 draws z itself (draw 0); v1.1 is given input.z */
  g_autofree float *z = NULL, *frame_mask = NULL, *sample = NULL;
  size_t zn = 0;
  if (kin_weights_contains (gc->tensors, "input.z")) {
    z = kin_golden_tensor_f32 (gc, "input.z", &zn, error);
    const KinWeightEntry *ze = kin_weights_lookup (gc->tensors, "input.z");
    for (int d = 0; d < 5; d++)
      c.shape[d] = ze->shape[d];
  } else {
    const KinWeightEntry *ze = kin_golden_entry (gc, "golden.z_init", error);
    if (ze == NULL)
      goto fail;
    for (int d = 0; d < 5; d++)
      c.shape[d] = ze->shape[d];
    zn = ze->nbytes / 4;
    z = g_new (float, zn);
    replay_noise (&c, z, zn);
  }
  if (z == NULL)
    goto fail;
  c.shape[0] = 2 * c.n;
  frame_mask = cond_array (gc, "input.frame_mask");
  KinIddpmRun run = {
    .n = c.n, .channels = (int) c.shape[1], .frames = (int) c.shape[2], .height = (int) c.shape[3],
    .width = (int) c.shape[4], .cfg_scale = cfg_scale, .cfg_channels = cfg_ch, .frame_mask = frame_mask,
    .model = run_model, .model_data = &c, .noise = replay_noise, .noise_data = &c,
    .trace = on_trace, .trace_data = &c,
  };
  sample = g_new (float, zn);
  if (!kin_iddpm_sample (s, &run, z, sample, error))
    goto fail;
  if (!c.noise_ok)
    gc->n_failed++;
  kin_golden_compare_tol (gc, "golden.sample", sample, zn, STEP_TOL);
  kin_iddpm_schedule_free (s);
  kin_tensor_free (c.y);
  g_free (c.mask);
  g_free (c.height), g_free (c.width), g_free (c.num_frames), g_free (c.fps), g_free (c.ar);
  return TRUE;
fail:
  kin_iddpm_schedule_free (s);
  kin_tensor_free (c.y);
  g_free (c.mask);
  g_free (c.height), g_free (c.width), g_free (c.num_frames), g_free (c.fps), g_free (c.ar);
  return FALSE;
}
