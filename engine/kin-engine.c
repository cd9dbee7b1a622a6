/* kin-engine.c — the engine thread (see kin-engine.h).
 *
 * One GThread owns the pipeline (and, on CUDA, the context).  Jobs are GTasks pushed onto a
 * GAsyncQueue; the thread pops them in order, runs them, and returns the result through the
 * GTask, which completes on the caller's context.  Progress is forwarded with
 * g_main_context_invoke_full to the same context, coalesced so a slow UI never queues more than
 * one pending preview per job. */
#include "kin-engine.h"
#include "kin-backend.h"
#include "kin-backend-cuda.h"
#include "kin-error.h"
#include <string.h>

/* What the thread uses lives in a refcounted state of its own, so the KinEngine may be finalised
 * on any thread — even on the engine thread, when a finished GTask drops the last reference. */
typedef struct {
  gint ref;
  GAsyncQueue *jobs;        /* Job*; a JOB_STOP job ends the thread */
  GMutex lock;              /* guards paths/mode/dirty */
  KinModelPaths paths;
  KinMemoryMode mode;
  gboolean dirty;
  KinPipeline *pipeline;    /* engine thread only */
} EngineState;

struct _KinEngine {
  GObject parent_instance;
  GThread *thread;
  EngineState *st;
};

static void
state_unref (EngineState *st)
{
  if (!g_atomic_int_dec_and_test (&st->ref))
    return;
  g_async_queue_unref (st->jobs);
  kin_model_paths_clear (&st->paths);
  g_clear_pointer (&st->pipeline, kin_pipeline_free);
  g_mutex_clear (&st->lock);
  g_free (st);
}

G_DEFINE_FINAL_TYPE (KinEngine, kin_engine, G_TYPE_OBJECT)

typedef enum { JOB_STOP, JOB_GENERATE, JOB_DESCRIBE } JobKind;

typedef struct {
  gint ref;                 /* the queue/engine thread and each undelivered progress update */
  JobKind kind;
  GTask *task;
  KinRequest req;
  guint8 *cond_image;       /* owned copies of the conditioning data */
  float *cond_latents;
  KinEngineProgressFunc progress;
  gpointer progress_data;
  GDestroyNotify progress_destroy;
  GMainContext *context;
  gint64 start_us, denoise_start_us;
  gint pending;             /* progress updates queued but not yet delivered */
} Job;

typedef struct {
  Job *job;
  char *stage;
  int step, total;
  double eta;
  guint8 *preview;
  int pf, ph, pw;
} Progress;

static void
job_unref (Job *job)
{
  if (job == NULL || !g_atomic_int_dec_and_test (&job->ref))
    return;
  g_clear_object (&job->task);
  kin_request_clear (&job->req);
  g_free (job->cond_image);
  g_free (job->cond_latents);
  if (job->progress_destroy)
    job->progress_destroy (job->progress_data);
  if (job->context)
    g_main_context_unref (job->context);
  g_free (job);
}

static gboolean
ensure_pipeline (EngineState *self, GError **error)
{
  g_mutex_lock (&self->lock);
  gboolean dirty = self->dirty;
  KinModelPaths paths = { g_strdup (self->paths.transformer), g_strdup (self->paths.text_encoder),
                          g_strdup (self->paths.vae) };
  KinMemoryMode mode = self->mode;
  self->dirty = FALSE;
  g_mutex_unlock (&self->lock);
  if (dirty)
    g_clear_pointer (&self->pipeline, kin_pipeline_free);
  if (self->pipeline == NULL)
    self->pipeline = kin_pipeline_new (&paths, kin_backend_for_device (g_getenv ("KINORA_DEVICE")), mode, error);
  kin_model_paths_clear (&paths);
  return self->pipeline != NULL;
}

static gboolean
deliver_progress (gpointer data)
{
  Progress *pr = data;
  Job *job = pr->job;
  if (job->progress)
    job->progress (pr->stage, pr->step, pr->total, pr->eta, pr->preview, pr->pf, pr->ph, pr->pw,
                   job->progress_data);
  g_atomic_int_dec_and_test (&job->pending);
  return G_SOURCE_REMOVE;
}

static void
progress_free (gpointer data)
{
  Progress *pr = data;
  g_free (pr->stage);
  g_free (pr->preview);
  job_unref (pr->job);
  g_free (pr);
}

static gboolean
on_pipeline_progress (const char *stage, int step, int total, const guint8 *preview, int pf, int ph,
                      int pw, gpointer user_data)
{
  Job *job = user_data;
  if (g_cancellable_is_cancelled (g_task_get_cancellable (job->task)))
    return FALSE;
  gint64 now = g_get_monotonic_time ();
  double eta = -1;
  if (g_strcmp0 (stage, "denoising") == 0) {
    if (job->denoise_start_us == 0)
      job->denoise_start_us = now;
    if (step > 0)
      eta = (now - job->denoise_start_us) / 1e6 / step * (total - step);
  }
  gboolean last = step == total;
  /* coalesce: drop intermediate updates while the caller is still busy with earlier ones */
  if (job->progress == NULL || (!last && g_atomic_int_get (&job->pending) > 1))
    return TRUE;
  Progress *pr = g_new0 (Progress, 1);
  pr->job = job;
  pr->stage = g_strdup (stage);
  pr->step = step, pr->total = total, pr->eta = eta;
  if (preview) {
    pr->preview = g_memdup2 (preview, (gsize) pf * ph * pw * 3);
    pr->pf = pf, pr->ph = ph, pr->pw = pw;
  }
  g_atomic_int_inc (&job->ref); /* the update keeps the job (and its callback data) alive */
  g_atomic_int_inc (&job->pending);
  g_main_context_invoke_full (job->context, G_PRIORITY_DEFAULT, deliver_progress, pr, progress_free);
  return TRUE;
}

static void
run_job (EngineState *self, Job *job)
{
  g_autoptr (GError) error = NULL;
  GCancellable *cancellable = g_task_get_cancellable (job->task);
  if (g_cancellable_set_error_if_cancelled (cancellable, &error)) {
    g_task_return_new_error (job->task, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED, "generation cancelled");
    return;
  }
  if (!ensure_pipeline (self, &error)) {
    g_task_return_error (job->task, g_steal_pointer (&error));
    return;
  }
  if (job->kind == JOB_DESCRIBE) {
    g_task_return_pointer (job->task, kin_pipeline_describe (self->pipeline), g_free);
    return;
  }
  job->start_us = g_get_monotonic_time ();
  KinClip *clip = kin_pipeline_generate (self->pipeline, &job->req, on_pipeline_progress, job,
                                         cancellable, &error);
  if (clip == NULL)
    g_task_return_error (job->task, g_steal_pointer (&error));
  else
    g_task_return_pointer (job->task, clip, (GDestroyNotify) kin_clip_free);
}

static gpointer
engine_thread (gpointer data)
{
  EngineState *self = data;
  for (;;) {
    Job *job = g_async_queue_pop (self->jobs);
    if (job->kind == JOB_STOP) {
      job_unref (job);
      break;
    }
    run_job (self, job);
    job_unref (job);
  }
  g_clear_pointer (&self->pipeline, kin_pipeline_free);
  state_unref (self);
  return NULL;
}

static void
kin_engine_finalize (GObject *object)
{
  KinEngine *self = KIN_ENGINE (object);
  Job *stop = g_new0 (Job, 1);
  stop->ref = 1;
  stop->kind = JOB_STOP;
  g_async_queue_push (self->st->jobs, stop);
  if (g_thread_self () == self->thread)
    g_thread_unref (self->thread); /* finalised by the engine thread itself: it ends on its own */
  else
    g_thread_join (self->thread);
  state_unref (self->st);
  G_OBJECT_CLASS (kin_engine_parent_class)->finalize (object);
}

static void
kin_engine_class_init (KinEngineClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = kin_engine_finalize;
}

static void
kin_engine_init (KinEngine *self)
{
  EngineState *st = g_new0 (EngineState, 1);
  st->ref = 2; /* the engine and its thread */
  g_mutex_init (&st->lock);
  st->jobs = g_async_queue_new ();
  st->dirty = TRUE;
  self->st = st;
  self->thread = g_thread_new ("kinora-engine", engine_thread, st);
}

KinEngine *
kin_engine_new (void)
{
  return g_object_new (KIN_TYPE_ENGINE, NULL);
}

void
kin_engine_set_models (KinEngine *self, const KinModelPaths *paths, KinMemoryMode mode)
{
  g_return_if_fail (KIN_IS_ENGINE (self));
  EngineState *st = self->st;
  g_mutex_lock (&st->lock);
  kin_model_paths_clear (&st->paths);
  if (paths) {
    st->paths.transformer = g_strdup (paths->transformer);
    st->paths.text_encoder = g_strdup (paths->text_encoder);
    st->paths.vae = g_strdup (paths->vae);
  }
  st->mode = mode;
  st->dirty = TRUE;
  g_mutex_unlock (&st->lock);
}

static Job *
job_new (KinEngine *self, JobKind kind, GCancellable *cancellable, GAsyncReadyCallback callback,
         gpointer user_data, gpointer tag)
{
  Job *job = g_new0 (Job, 1);
  job->ref = 1;
  job->kind = kind;
  job->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (job->task, tag);
  g_task_set_return_on_cancel (job->task, FALSE);
  job->context = g_main_context_ref_thread_default ();
  return job;
}

void
kin_engine_generate_async (KinEngine *self, const KinRequest *req, KinEngineProgressFunc progress,
                           gpointer progress_data, GDestroyNotify progress_destroy,
                           GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_return_if_fail (KIN_IS_ENGINE (self));
  Job *job = job_new (self, JOB_GENERATE, cancellable, callback, user_data, kin_engine_generate_async);
  kin_request_copy (&job->req, req);
  if (req->cond_image && req->cond_image_w > 0 && req->cond_image_h > 0) {
    job->cond_image = g_memdup2 (req->cond_image, (gsize) req->cond_image_w * req->cond_image_h * 3);
    job->req.cond_image = job->cond_image;
  }
  if (req->cond_latents && req->cond_latent_frames > 0) {
    gsize n = (gsize) MAX (req->cond_latent_channels, 0) * req->cond_latent_frames *
              MAX (req->cond_latent_h, 0) * MAX (req->cond_latent_w, 0);
    job->cond_latents = g_memdup2 (req->cond_latents, n * sizeof (float));
    job->req.cond_latents = job->cond_latents;
  }
  job->progress = progress;
  job->progress_data = progress_data;
  job->progress_destroy = progress_destroy;
  g_async_queue_push (self->st->jobs, job);
}

KinClip *
kin_engine_generate_finish (KinEngine *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
kin_engine_describe_async (KinEngine *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
  Job *job = job_new (self, JOB_DESCRIBE, cancellable, callback, user_data, kin_engine_describe_async);
  g_async_queue_push (self->st->jobs, job);
}

char *
kin_engine_describe_finish (KinEngine *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
