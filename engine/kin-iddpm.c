/* kin-iddpm.c — IDDPM schedule, guidance and sampling loop (see kin-iddpm.h). */
#include "kin-iddpm.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>

/* Respacing of upstream's space_timesteps(T, "K"): one section, stride (T−1)/(K−1) accumulated by
 * repeated addition, each kept step rounded half-to-even. */
static gboolean
respace (int *map, int k, int t)
{
  if (k == 1) {
    map[0] = 0;
    return TRUE;
  }
  double stride = (double) (t - 1) / (k - 1), cur = 0;
  for (int i = 0; i < k; i++) {
    map[i] = (int) nearbyint (cur); /* FE_TONEAREST: half to even, like Python's round */
    cur += stride;
  }
  for (int i = 1; i < k; i++)
    if (map[i] <= map[i - 1])
      return FALSE;
  return TRUE;
}

static void
tables_f64 (KinIddpmSchedule *s, const double *nb)
{
  int k = s->num_steps;
  double ac = 1;
  for (int i = 0; i < k; i++) {
    double b = nb[i], prev = ac;
    ac *= 1 - b;
    s->betas[i] = b;
    s->log_betas[i] = log (b);
    s->alphas_cumprod[i] = ac;
    s->alphas_cumprod_prev[i] = prev;
    s->sqrt_alphas_cumprod[i] = sqrt (ac);
    s->sqrt_one_minus_alphas_cumprod[i] = sqrt (1 - ac);
    s->sqrt_recip_alphas_cumprod[i] = sqrt (1 / ac);
    s->sqrt_recipm1_alphas_cumprod[i] = sqrt (1 / ac - 1);
    s->posterior_mean_coef1[i] = b * sqrt (prev) / (1 - ac);
    s->posterior_mean_coef2[i] = (1 - prev) * sqrt (1 - b) / (1 - ac);
  }
}

static void
tables_f32 (KinIddpmSchedule *s, const double *nb)
{
  int k = s->num_steps;
  float ac = 1;
  for (int i = 0; i < k; i++) {
    float b = (float) nb[i], prev = ac, alpha = 1.0f - b;
    ac = ac * alpha;
    s->betas[i] = b;
    s->log_betas[i] = logf (b);
    s->alphas_cumprod[i] = ac;
    s->alphas_cumprod_prev[i] = prev;
    s->sqrt_alphas_cumprod[i] = sqrtf (ac);
    s->sqrt_one_minus_alphas_cumprod[i] = sqrtf (1.0f - ac);
    s->sqrt_recip_alphas_cumprod[i] = sqrtf (1.0f / ac);
    s->sqrt_recipm1_alphas_cumprod[i] = sqrtf (1.0f / ac - 1.0f);
    s->posterior_mean_coef1[i] = b * sqrtf (prev) / (1.0f - ac);
    s->posterior_mean_coef2[i] = (1.0f - prev) * sqrtf (alpha) / (1.0f - ac);
  }
}

KinIddpmSchedule *
kin_iddpm_schedule_new (int num_steps, int diffusion_steps, KinIddpmPrecision precision,
                        GError **error)
{
  if (diffusion_steps < 2 || diffusion_steps > 100000 || num_steps < 1 || num_steps > diffusion_steps) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "cannot sample with %d steps out of %d (choose 1 to %d steps)", num_steps,
                 diffusion_steps, diffusion_steps);
    return NULL;
  }
  KinIddpmSchedule *s = g_new0 (KinIddpmSchedule, 1);
  int k = num_steps;
  s->num_steps = k;
  s->diffusion_steps = diffusion_steps;
  s->precision = precision;
  s->timestep_map = g_new0 (int, k);
  double **tabs[] = { &s->betas, &s->log_betas, &s->alphas_cumprod, &s->alphas_cumprod_prev,
                      &s->sqrt_alphas_cumprod, &s->sqrt_one_minus_alphas_cumprod,
                      &s->sqrt_recip_alphas_cumprod, &s->sqrt_recipm1_alphas_cumprod,
                      &s->posterior_mean_coef1, &s->posterior_mean_coef2,
                      &s->posterior_log_variance_clipped };
  for (guint i = 0; i < G_N_ELEMENTS (tabs); i++)
    *tabs[i] = g_new0 (double, k);
  if (!respace (s->timestep_map, k, diffusion_steps)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "%d steps cannot be spaced over %d diffusion steps", k, diffusion_steps);
    kin_iddpm_schedule_free (s);
    return NULL;
  }
  /* Base process: linear betas (float64), ᾱ; spaced betas β'_i = 1 − ᾱ_{map[i]} / ᾱ_{map[i−1]}. */
  g_autofree double *base_ac = g_new (double, diffusion_steps);
  double scale = 1000.0 / diffusion_steps, b0 = scale * 0.0001, b1 = scale * 0.02, ac = 1;
  for (int t = 0; t < diffusion_steps; t++) {
    double beta = b0 + (b1 - b0) * t / (diffusion_steps - 1); /* numpy linspace */
    ac *= 1 - beta;
    base_ac[t] = ac;
  }
  g_autofree double *nb = g_new (double, k);
  double last = 1;
  for (int i = 0; i < k; i++) {
    nb[i] = 1 - base_ac[s->timestep_map[i]] / last;
    last = base_ac[s->timestep_map[i]];
  }
  if (precision == KIN_IDDPM_TABLES_F64)
    tables_f64 (s, nb);
  else
    tables_f32 (s, nb);
  /* posterior variance, log clipped at index 0 to the value at index 1 */
  for (int i = 0; i < k; i++) {
    int j = (i == 0 && k > 1) ? 1 : i;
    double pv;
    if (precision == KIN_IDDPM_TABLES_F64) {
      pv = s->betas[j] * (1 - s->alphas_cumprod_prev[j]) / (1 - s->alphas_cumprod[j]);
      s->posterior_log_variance_clipped[i] = pv > 0 ? log (pv) : -INFINITY;
    } else {
      float pf = (float) s->betas[j] * (1.0f - (float) s->alphas_cumprod_prev[j]) /
                 (1.0f - (float) s->alphas_cumprod[j]);
      s->posterior_log_variance_clipped[i] = pf > 0 ? logf (pf) : -INFINITY;
    }
  }
  return s;
}

void
kin_iddpm_schedule_free (KinIddpmSchedule *s)
{
  if (s == NULL)
    return;
  g_free (s->timestep_map);
  double *tabs[] = { s->betas, s->log_betas, s->alphas_cumprod, s->alphas_cumprod_prev,
                     s->sqrt_alphas_cumprod, s->sqrt_one_minus_alphas_cumprod,
                     s->sqrt_recip_alphas_cumprod, s->sqrt_recipm1_alphas_cumprod,
                     s->posterior_mean_coef1, s->posterior_mean_coef2,
                     s->posterior_log_variance_clipped };
  for (guint i = 0; i < G_N_ELEMENTS (tabs); i++)
    g_free (tabs[i]);
  g_free (s);
}

void
kin_iddpm_p_sample (const KinIddpmSchedule *s, int i, int batch, int channels, size_t spatial,
                    const float *x, const float *model_out, const float *noise, float *x_next,
                    float *pred_x0)
{
  /* each coefficient rounded to f32 when extracted, arithmetic in f32 */
  const float sr = (float) s->sqrt_recip_alphas_cumprod[i];
  const float srm1 = (float) s->sqrt_recipm1_alphas_cumprod[i];
  const float c1 = (float) s->posterior_mean_coef1[i], c2 = (float) s->posterior_mean_coef2[i];
  const float max_log = (float) s->log_betas[i];
  const float min_log = (float) s->posterior_log_variance_clipped[i];
  const float nonzero = i != 0 ? 1.0f : 0.0f;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t) batch * channels * spatial > 32768)
  for (int b = 0; b < batch; b++)
    for (int c = 0; c < channels; c++) {
      const float *xs = x + ((size_t) b * channels + c) * spatial;
      const float *eps = model_out + ((size_t) b * 2 * channels + c) * spatial;
      const float *v = model_out + ((size_t) b * 2 * channels + channels + c) * spatial;
      const float *z = noise ? noise + ((size_t) b * channels + c) * spatial : NULL;
      float *xo = x_next + ((size_t) b * channels + c) * spatial;
      float *p0 = pred_x0 ? pred_x0 + ((size_t) b * channels + c) * spatial : NULL;
      for (size_t j = 0; j < spatial; j++) {
        float x0 = sr * xs[j] - srm1 * eps[j];
        float mean = c1 * x0 + c2 * xs[j];
        float frac = (v[j] + 1.0f) / 2.0f;
        float log_var = frac * max_log + (1.0f - frac) * min_log;
        float zz = z ? z[j] : 0.0f;
        if (p0)
          p0[j] = x0;
        xo[j] = mean + nonzero * expf (0.5f * log_var) * zz;
      }
    }
}

void
kin_iddpm_guide (float *out, int n, int channels2, size_t spatial, int cfg_channels, float scale)
{
  size_t per = (size_t) channels2 * spatial;
  for (int b = 0; b < n; b++)
    for (int c = 0; c < MIN (cfg_channels, channels2); c++) {
      float *cond = out + b * per + (size_t) c * spatial;
      float *unc = out + (b + n) * per + (size_t) c * spatial;
      for (size_t j = 0; j < spatial; j++) {
        float g = unc[j] + scale * (cond[j] - unc[j]);
        cond[j] = g;
        unc[j] = g;
      }
    }
}

static void
trace (const KinIddpmRun *run, int step, const char *what, const float *d, size_t n)
{
  if (run->trace)
    run->trace (run->trace_data, step, what, d, n);
}

gboolean
kin_iddpm_sample (const KinIddpmSchedule *s, const KinIddpmRun *run, const float *z, float *out,
                  GError **error)
{
  int n = run->n, C = run->channels, T = run->frames, B = 2 * n;
  size_t spatial = (size_t) T * run->height * run->width;
  size_t half = (size_t) n * C * spatial, full = 2 * half;
  int K = s->num_steps;
  g_autofree float *x = g_new (float, full), *x0 = g_new (float, full);
  g_autofree float *xin = g_new (float, full), *eps_noise = g_new (float, full);
  g_autofree float *mout = g_new (float, 2 * full), *pred = g_new (float, full);
  g_autofree float *ts = g_new (float, B);
  g_autofree guint8 *xmask = run->frame_mask ? g_new (guint8, (size_t) B * T) : NULL;
  g_autofree int *mask_t = run->frame_mask ? g_new (int, (size_t) B * T) : NULL;
  size_t frame = (size_t) run->height * run->width;

  memcpy (x, z, half * sizeof (float));
  memcpy (x + half, z, half * sizeof (float));
  if (run->frame_mask)
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) /* float32 product, truncated; tiled for the CFG batch */
        mask_t[b * T + t] = (int) (run->frame_mask[(b % n) * T + t] * (float) K);

  for (int step = 0; step < K; step++) {
    int i = K - 1 - step;
    if (g_cancellable_set_error_if_cancelled (run->cancellable, error)) {
      g_clear_error (error);
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED, "generation cancelled");
      return FALSE;
    }
    trace (run, step, "x_in", x, full);
    if (run->frame_mask) {
      /* §4.5: noised copy drawn first; frames with m_t == i take it; x_mask = m_t > i */
      memcpy (x0, x, full * sizeof (float));
      run->noise (run->noise_data, eps_noise, full);
      float sa = (float) s->sqrt_alphas_cumprod[i], s1 = (float) s->sqrt_one_minus_alphas_cumprod[i];
      for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
          xmask[b * T + t] = mask_t[b * T + t] > i;
          if (mask_t[b * T + t] != i)
            continue;
          for (int c = 0; c < C; c++) {
            size_t off = (((size_t) b * C + c) * T + t) * frame;
            for (size_t j = 0; j < frame; j++)
              x[off + j] = sa * x0[off + j] + s1 * eps_noise[off + j];
          }
        }
    }
    /* forward_with_cfg: the model sees cat(x[:n], x[:n]) */
    memcpy (xin, x, half * sizeof (float));
    memcpy (xin + half, x, half * sizeof (float));
    for (int b = 0; b < B; b++)
      ts[b] = (float) s->timestep_map[i];
    trace (run, step, "model_x", xin, full);
    if (!run->model (run->model_data, xin, ts, xmask, mout, error))
      return FALSE;
    trace (run, step, "model_out", mout, 2 * full);
    kin_iddpm_guide (mout, n, 2 * C, spatial, run->cfg_channels, run->cfg_scale);
    trace (run, step, "cfg_out", mout, 2 * full);
    run->noise (run->noise_data, eps_noise, full); /* drawn every step, unused at i = 0 */
    kin_iddpm_p_sample (s, i, B, C, spatial, x, mout, i ? eps_noise : NULL, x, pred);
    trace (run, step, "pred_xstart", pred, full);
    if (run->frame_mask)
      for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
          if (mask_t[b * T + t] >= i)
            continue;
          for (int c = 0; c < C; c++) {
            size_t off = (((size_t) b * C + c) * T + t) * frame;
            memcpy (x + off, x0 + off, frame * sizeof (float));
          }
        }
    trace (run, step, "x", x, full);
    if (run->on_step && !run->on_step (run->step_data, step, K, x)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED, "generation cancelled");
      return FALSE;
    }
  }
  memcpy (out, x, half * sizeof (float));
  return TRUE;
}
