/* kin-dpm-solver.h — DPM-Solver++ (2nd-order multistep, data prediction) on Open-Sora's discrete
 * linear schedule (spec/stdit.md §4.3): a fast sampler for ~20 steps. */
#pragma once

#include "kin-iddpm.h"

G_BEGIN_DECLS

/* Same run description as IDDPM (frame_mask must be NULL: upstream's DPM-Solver has no frame
 * conditioning; cfg_channels is ignored — all latent channels are guided, as upstream). */
gboolean kin_dpm_solver_sample (int steps, const KinIddpmRun *run, const float *z, float *out,
                                GError **error);

/* The continuous-time schedule, exposed for tests: log ᾱ(t)/2 interpolated on the 1000 discrete
 * steps, t ∈ [1/1000, 1]. */
double   kin_dpm_marginal_log_mean_coeff (double t);
double   kin_dpm_lambda (double t);

G_END_DECLS
