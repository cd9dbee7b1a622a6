/* kin-dpm-solver.c — DPM-Solver++(2M) with classifier-free guidance (see kin-dpm-solver.h).
 *
 * Schedule ("discrete" NoiseScheduleVP): log α(t_i) = ½·Σ_{s≤i} log(1−β_s) at t_i = (i+1)/1000,
 * linearly interpolated in t.  σ = sqrt(1 − α²), λ = log α − log σ.  Time-uniform steps from 1
 * to 1/1000; the model sees the discrete time (t − 1/1000)·1000.  Data prediction
 * x̂0 = (x − σ·ε)/α; first step first order, then the 2M update; the last step is first order when
 * there are fewer than 10 steps (lower_order_final). */
#include "kin-dpm-solver.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>

#define N_DISCRETE 1000

static double log_alpha[N_DISCRETE];
static gsize tables_ready = 0;

static void
init_tables (void)
{
  if (g_once_init_enter (&tables_ready)) {
    double acc = 0;
    for (int i = 0; i < N_DISCRETE; i++) {
      double beta = 0.0001 + (0.02 - 0.0001) * i / (N_DISCRETE - 1);
      acc += log (1.0 - beta);
      log_alpha[i] = 0.5 * acc;
    }
    g_once_init_leave (&tables_ready, 1);
  }
}

double
kin_dpm_marginal_log_mean_coeff (double t)
{
  init_tables ();
  double pos = t * N_DISCRETE - 1; /* t_i = (i+1)/N */
  if (pos <= 0)
    return log_alpha[0] + (log_alpha[1] - log_alpha[0]) * pos;
  if (pos >= N_DISCRETE - 1)
    return log_alpha[N_DISCRETE - 1];
  int i = (int) floor (pos);
  double f = pos - i;
  return log_alpha[i] * (1 - f) + log_alpha[i + 1] * f;
}

double
kin_dpm_lambda (double t)
{
  double lm = kin_dpm_marginal_log_mean_coeff (t);
  return lm - 0.5 * log (1.0 - exp (2.0 * lm));
}

/* Guided ε (all C channels) for the conditional half → data prediction x0 [n, C, …]. */
static gboolean
predict_x0 (const KinIddpmRun *run, double t, const float *x, float *xin, float *mout, float *x0,
            size_t half, size_t spatial, GError **error)
{
  int n = run->n, C = run->channels;
  g_autofree float *ts = g_new (float, 2 * n);
  for (int b = 0; b < 2 * n; b++)
    ts[b] = (float) ((t - 1.0 / N_DISCRETE) * N_DISCRETE);
  memcpy (xin, x, half * sizeof (float));
  memcpy (xin + half, x, half * sizeof (float));
  if (!run->model (run->model_data, xin, ts, NULL, mout, error))
    return FALSE;
  double lm = kin_dpm_marginal_log_mean_coeff (t);
  float alpha = (float) exp (lm), sigma = (float) sqrt (1.0 - exp (2 * lm));
  size_t per_out = (size_t) 2 * C * spatial;
  for (int b = 0; b < n; b++)
    for (int c = 0; c < C; c++) {
      const float *cond = mout + b * per_out + (size_t) c * spatial;
      const float *unc = mout + (b + n) * per_out + (size_t) c * spatial;
      const float *xs = x + ((size_t) b * C + c) * spatial;
      float *o = x0 + ((size_t) b * C + c) * spatial;
      for (size_t j = 0; j < spatial; j++) {
        float eps = unc[j] + run->cfg_scale * (cond[j] - unc[j]);
        o[j] = (xs[j] - sigma * eps) / alpha;
      }
    }
  return TRUE;
}

gboolean
kin_dpm_solver_sample (int steps, const KinIddpmRun *run, const float *z, float *out, GError **error)
{
  if (steps < 1 || steps > 1000) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "DPM-Solver needs 1 to 1000 steps, not %d", steps);
    return FALSE;
  }
  if (run->frame_mask != NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "DPM-Solver++ cannot condition on frames (upstream has no such mode); use the IDDPM sampler");
    return FALSE;
  }
  int n = run->n, C = run->channels;
  size_t spatial = (size_t) run->frames * run->height * run->width, half = (size_t) n * C * spatial;
  g_autofree float *x = g_memdup2 (z, half * sizeof (float));
  g_autofree float *xin = g_new (float, 2 * half), *mout = g_new (float, 4 * half);
  g_autofree float *m0 = g_new (float, half), *m1 = g_new (float, half);
  double t_prev = 1.0, t_prev2 = 1.0;
  for (int k = 0; k < steps + 1; k++) {
    /* k = 0 evaluates the model at t = 1; step k moves from t_{k-1} to t_k */
    double t = 1.0 + (1.0 / N_DISCRETE - 1.0) * k / steps;
    if (k == 0) {
      if (!predict_x0 (run, t, x, xin, mout, m0, half, spatial, error))
        return FALSE;
      t_prev = t;
      continue;
    }
    if (g_cancellable_set_error_if_cancelled (run->cancellable, error)) {
      g_clear_error (error);
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED, "generation cancelled");
      return FALSE;
    }
    double l_t = kin_dpm_lambda (t), l_p = kin_dpm_lambda (t_prev);
    double lm_t = kin_dpm_marginal_log_mean_coeff (t), lm_p = kin_dpm_marginal_log_mean_coeff (t_prev);
    double a_t = exp (lm_t), s_t = sqrt (1 - exp (2 * lm_t)), s_p = sqrt (1 - exp (2 * lm_p));
    double h = l_t - l_p, phi = expm1 (-h);
    gboolean first = k == 1 || (k == steps && steps < 10);
    float cx = (float) (s_t / s_p), c0 = (float) (-a_t * phi);
    if (first) {
      for (size_t j = 0; j < half; j++)
        x[j] = cx * x[j] + c0 * m0[j];
    } else {
      double h0 = l_p - kin_dpm_lambda (t_prev2), r0 = h0 / h;
      float cd = (float) (-0.5 * a_t * phi / r0);
      for (size_t j = 0; j < half; j++)
        x[j] = cx * x[j] + c0 * m0[j] + cd * (m0[j] - m1[j]);
    }
    if (run->on_step && !run->on_step (run->step_data, k - 1, steps, x)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED, "generation cancelled");
      return FALSE;
    }
    if (k < steps) {
      memcpy (m1, m0, half * sizeof (float));
      if (!predict_x0 (run, t, x, xin, mout, m0, half, spatial, error))
        return FALSE;
    }
    t_prev2 = t_prev;
    t_prev = t;
  }
  memcpy (out, x, half * sizeof (float));
  return TRUE;
}
