/* kin-iddpm.h — the IDDPM sampler of Open-Sora 1.0/1.1 (spec/stdit.md §4.1, §4.2, §4.5).
 *
 * Linear betas over diffusion_steps (1000), respaced to K steps with upstream's accumulated-stride
 * rounding, learned-range variance, ε prediction, no clipping.  v1.0 keeps the tables in float64
 * and rounds each coefficient to f32 when used; v1.1 computes them in float32.  Each step is a
 * pure function of (state, model output, noise). */
#pragma once

#include "kin-types.h"
#include <gio/gio.h>

G_BEGIN_DECLS

typedef enum {
  KIN_IDDPM_TABLES_F64, /* Open-Sora 1.0 */
  KIN_IDDPM_TABLES_F32, /* Open-Sora 1.1 */
} KinIddpmPrecision;

typedef struct {
  int num_steps;          /* K */
  int diffusion_steps;    /* 1000 */
  KinIddpmPrecision precision;
  int *timestep_map;      /* [K] original step of spaced index i */
  /* [K] tables (values exactly representable in f32 when precision is F32) */
  double *betas, *log_betas, *alphas_cumprod, *alphas_cumprod_prev, *sqrt_alphas_cumprod,
         *sqrt_one_minus_alphas_cumprod, *sqrt_recip_alphas_cumprod, *sqrt_recipm1_alphas_cumprod,
         *posterior_mean_coef1, *posterior_mean_coef2, *posterior_log_variance_clipped;
} KinIddpmSchedule;

KinIddpmSchedule *kin_iddpm_schedule_new (int num_steps, int diffusion_steps,
                                          KinIddpmPrecision precision, GError **error);
void              kin_iddpm_schedule_free (KinIddpmSchedule *s);

/* The model as the sampler sees it: x [B, C, T, H, W] (B = 2n with CFG), timesteps [B] on the
 * original scale, x_mask [B, T] (1 = noisy frame, 0 = conditioning frame using the t=0
 * modulation; NULL = all 1) → out [B, 2C, T, H, W]. */
typedef gboolean (*KinModelFunc) (gpointer user, const float *x, const float *timesteps,
                                  const guint8 *x_mask, float *out, GError **error);
/* Fills @out with @n standard normal values (the next draw of the stream). */
typedef void (*KinNoiseFunc) (gpointer user, float *out, size_t n);
/* Called after every step with the current (conditional) latent; return FALSE to stop. */
typedef gboolean (*KinStepFunc) (gpointer user, int step, int total, const float *x_cond);

typedef struct {
  int n;                  /* prompts */
  int channels;           /* latent channels C (4) */
  int frames, height, width;
  float cfg_scale;        /* 7.0 */
  int cfg_channels;       /* 3 as upstream */
  const float *frame_mask; /* [n, T] or NULL: 1 = generate, 0 = keep, in-between = edit ratio */
  KinModelFunc model;
  gpointer model_data;
  KinNoiseFunc noise;
  gpointer noise_data;
  KinStepFunc on_step;    /* optional */
  gpointer step_data;
  GCancellable *cancellable;
  /* optional observer for tests: called with named intermediates of each step */
  void (*trace) (gpointer user, int step, const char *what, const float *data, size_t n);
  gpointer trace_data;
} KinIddpmRun;

/* One denoising update (§4.1 step 2–5) on @n values of a [B, C, T·H·W] latent:
 * out_model [B, 2C, …]; noise may be NULL at the last step (spaced index 0).
 * Writes x_next and (optionally) pred_x0. */
void kin_iddpm_p_sample (const KinIddpmSchedule *s, int i, int batch, int channels, size_t spatial,
                         const float *x, const float *model_out, const float *noise,
                         float *x_next, float *pred_x0);

/* Classifier-free guidance on [2n, 2C, …]: the first @cfg_channels channels become
 * uncond + scale·(cond − uncond) in both halves; the rest pass through. In place. */
void kin_iddpm_guide (float *model_out, int n, int channels2, size_t spatial, int cfg_channels,
                      float scale);

/* Runs the whole chain.  @z: [n, C, T, H, W] initial noise (already holding reference latents in
 * conditioned frames); @out: [n, C, T, H, W] sample.  Draws noise through run->noise exactly in
 * upstream's order.  Cancellation → KIN_ENGINE_ERROR_CANCELLED. */
gboolean kin_iddpm_sample (const KinIddpmSchedule *s, const KinIddpmRun *run, const float *z,
                           float *out, GError **error);

G_END_DECLS
