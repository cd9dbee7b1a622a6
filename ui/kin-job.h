/* kin-job.h — one generation in the queue: its request, state, progress, ETA and live preview. */
#pragma once

#include <gtk/gtk.h>
#include "kin-engine.h"
#include "kin-frame-stream.h"

G_BEGIN_DECLS

typedef enum {
  KIN_JOB_QUEUED,
  KIN_JOB_RUNNING,
  KIN_JOB_SAVING,
  KIN_JOB_DONE,
  KIN_JOB_FAILED,
  KIN_JOB_CANCELLED,
} KinJobState;

#define KIN_TYPE_JOB (kin_job_get_type ())
G_DECLARE_FINAL_TYPE (KinJob, kin_job, KIN, JOB, GObject)

/* Deep-copies @req including its conditioning image or latents (@cond_latents_len floats). */
KinJob           *kin_job_new (const KinRequest *req, const char *title, gsize cond_latents_len);
const KinRequest *kin_job_get_request (KinJob *self);
const char       *kin_job_get_title (KinJob *self);
KinJobState       kin_job_get_state (KinJob *self);
void              kin_job_set_state (KinJob *self, KinJobState state);
gboolean          kin_job_is_finished (KinJob *self);
/* 0…1 over the whole job */
double            kin_job_get_fraction (KinJob *self);
/* A line for the queue row: "Denoising 12 / 50 · about 2 min left". */
const char       *kin_job_get_status (KinJob *self);
void              kin_job_set_status (KinJob *self, const char *status);
/* Estimated seconds: the whole job before it starts, the remainder while it runs. */
double            kin_job_get_eta (KinJob *self);
void              kin_job_set_eta (KinJob *self, double seconds);
GCancellable     *kin_job_get_cancellable (KinJob *self);
void              kin_job_cancel (KinJob *self);
/* The live preview (empty until the first denoising step). */
KinFrameStream   *kin_job_get_preview (KinJob *self);
/* Feeds one progress report from the engine. */
void              kin_job_progress (KinJob *self, const char *stage, int step, int total,
                                    double eta_seconds, const guint8 *preview, int preview_frames,
                                    int preview_h, int preview_w);
/* The work of a request in arbitrary units (steps × latent volume), for ETAs. */
double            kin_request_work_units (const KinRequest *req);
/* "about 3 min", "less than a minute" */
char             *kin_format_duration (double seconds);

G_END_DECLS
