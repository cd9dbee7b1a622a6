/* kin-job.c — see kin-job.h. */
#include "kin-config.h"
#include "kin-job.h"
#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

struct _KinJob {
  GObject parent_instance;
  KinRequest request;
  guint8 *cond_image;        /* owned copies of the request's conditioning */
  float *cond_latents;
  char *title;
  KinJobState state;
  double fraction;
  double eta;
  char *status;
  GCancellable *cancellable;
  KinFrameStream *preview;
};

G_DEFINE_FINAL_TYPE (KinJob, kin_job, G_TYPE_OBJECT)

enum { PROP_0, PROP_STATE, PROP_FRACTION, PROP_STATUS, PROP_ETA, PROP_TITLE, N_PROPS };
static GParamSpec *props[N_PROPS];

static void
kin_job_finalize (GObject *object)
{
  KinJob *self = KIN_JOB (object);
  kin_request_clear (&self->request);
  g_free (self->cond_image);
  g_free (self->cond_latents);
  g_free (self->title);
  g_free (self->status);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->preview);
  G_OBJECT_CLASS (kin_job_parent_class)->finalize (object);
}

static void
kin_job_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  KinJob *self = KIN_JOB (object);
  switch (prop_id) {
  case PROP_STATE: g_value_set_int (value, self->state); break;
  case PROP_FRACTION: g_value_set_double (value, self->fraction); break;
  case PROP_STATUS: g_value_set_string (value, self->status); break;
  case PROP_ETA: g_value_set_double (value, self->eta); break;
  case PROP_TITLE: g_value_set_string (value, self->title); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
  }
}

static void
kin_job_class_init (KinJobClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->finalize = kin_job_finalize;
  object_class->get_property = kin_job_get_property;
  GParamFlags f = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;
  props[PROP_STATE] = g_param_spec_int ("state", NULL, NULL, 0, KIN_JOB_CANCELLED, 0, f);
  props[PROP_FRACTION] = g_param_spec_double ("fraction", NULL, NULL, 0, 1, 0, f);
  props[PROP_STATUS] = g_param_spec_string ("status", NULL, NULL, NULL, f);
  props[PROP_ETA] = g_param_spec_double ("eta", NULL, NULL, -1, G_MAXDOUBLE, -1, f);
  props[PROP_TITLE] = g_param_spec_string ("title", NULL, NULL, NULL, f);
  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
kin_job_init (KinJob *self)
{
  self->cancellable = g_cancellable_new ();
  self->preview = kin_frame_stream_new (8);
  gtk_media_stream_set_loop (GTK_MEDIA_STREAM (self->preview), TRUE);
  self->eta = -1;
}

KinJob *
kin_job_new (const KinRequest *req, const char *title, gsize cond_latents_len)
{
  KinJob *self = g_object_new (KIN_TYPE_JOB, NULL);
  kin_request_copy (&self->request, req);
  if (req->cond_image != NULL) {
    self->cond_image = g_memdup2 (req->cond_image, (gsize) req->cond_image_w * req->cond_image_h * 3);
    self->request.cond_image = self->cond_image;
    self->request.cond_image_w = req->cond_image_w;
    self->request.cond_image_h = req->cond_image_h;
  }
  if (req->cond_latents != NULL) {
    self->cond_latents = g_memdup2 (req->cond_latents, cond_latents_len * sizeof (float));
    self->request.cond_latents = self->cond_latents;
    self->request.cond_latent_frames = req->cond_latent_frames;
    self->request.cond_latent_channels = req->cond_latent_channels;
    self->request.cond_latent_h = req->cond_latent_h;
    self->request.cond_latent_w = req->cond_latent_w;
  }
  self->title = g_strdup (title);
  return self;
}

const KinRequest *kin_job_get_request (KinJob *self) { return &self->request; }
const char *kin_job_get_title (KinJob *self) { return self->title; }
KinJobState kin_job_get_state (KinJob *self) { return self->state; }
double kin_job_get_fraction (KinJob *self) { return self->fraction; }
const char *kin_job_get_status (KinJob *self) { return self->status ? self->status : ""; }
double kin_job_get_eta (KinJob *self) { return self->eta; }
GCancellable *kin_job_get_cancellable (KinJob *self) { return self->cancellable; }
KinFrameStream *kin_job_get_preview (KinJob *self) { return self->preview; }

gboolean
kin_job_is_finished (KinJob *self)
{
  return self->state >= KIN_JOB_DONE;
}

void
kin_job_set_state (KinJob *self, KinJobState state)
{
  if (self->state == state)
    return;
  self->state = state;
  if (state >= KIN_JOB_DONE)
    gtk_media_stream_pause (GTK_MEDIA_STREAM (self->preview));
  if (state == KIN_JOB_DONE) {
    self->fraction = 1.0;
    g_object_notify_by_pspec (G_OBJECT (self), props[PROP_FRACTION]);
  }
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_STATE]);
}

void
kin_job_set_status (KinJob *self, const char *status)
{
  if (g_strcmp0 (self->status, status) == 0)
    return;
  g_free (self->status);
  self->status = g_strdup (status);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_STATUS]);
}

void
kin_job_set_eta (KinJob *self, double seconds)
{
  if (self->eta == seconds)
    return;
  self->eta = seconds;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_ETA]);
}

void
kin_job_cancel (KinJob *self)
{
  g_cancellable_cancel (self->cancellable);
  if (self->state == KIN_JOB_QUEUED)
    kin_job_set_state (self, KIN_JOB_CANCELLED);
}

char *
kin_format_duration (double seconds)
{
  if (!(seconds >= 0) || !isfinite (seconds))
    return g_strdup (_("unknown time"));
  if (seconds < 60)
    return g_strdup (_("less than a minute"));
  if (seconds < 3600) {
    int m = (int) lround (seconds / 60);
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "about %d minute", "about %d minutes", m), m);
  }
  int h = (int) (seconds / 3600), m = (int) lround (fmod (seconds, 3600) / 60);
  return g_strdup_printf (_("about %d h %02d min"), h, m);
}

double
kin_request_work_units (const KinRequest *req)
{
  /* Tokens of the transformer (one latent frame per frame, 2×2 patches of the 8× latent);
   * attention makes the cost grow faster than the count, hence the second term. */
  double grid = ceil (MAX (1, req->height / 8) / 2.0) * ceil (MAX (1, req->width / 8) / 2.0);
  double tokens = MAX (1, req->frames) * grid;
  double per_step = tokens * (1.0 + tokens / 16384.0);
  return MAX (1, req->steps) * per_step / 1e4;
}

static const char *
stage_label (const char *stage)
{
  if (g_strcmp0 (stage, "encoding") == 0)
    return _("Reading the prompt");
  if (g_strcmp0 (stage, "denoising") == 0)
    return _("Denoising");
  if (g_strcmp0 (stage, "decoding") == 0)
    return _("Decoding frames");
  if (g_strcmp0 (stage, "loading") == 0)
    return _("Loading models");
  return stage;
}

void
kin_job_progress (KinJob *self, const char *stage, int step, int total, double eta_seconds,
                  const guint8 *preview, int preview_frames, int preview_h, int preview_w)
{
  /* Denoising dominates; the other stages get a small slice of the bar each. */
  double f = total > 0 ? (double) step / total : 0;
  if (g_strcmp0 (stage, "denoising") == 0)
    f = 0.05 + 0.85 * f;
  else if (g_strcmp0 (stage, "decoding") == 0)
    f = 0.90 + 0.10 * f;
  else
    f = 0.05 * f;
  if (fabs (f - self->fraction) > 1e-6) {
    self->fraction = CLAMP (f, 0, 1);
    g_object_notify_by_pspec (G_OBJECT (self), props[PROP_FRACTION]);
  }
  if (eta_seconds >= 0)
    kin_job_set_eta (self, eta_seconds);
  g_autofree char *left = kin_format_duration (self->eta);
  g_autofree char *status = total > 0
    ? g_strdup_printf (_("%s %d / %d · %s left"), stage_label (stage), step, total, left)
    : g_strdup_printf (_("%s · %s left"), stage_label (stage), left);
  kin_job_set_status (self, status);
  if (preview != NULL && preview_frames > 0) {
    kin_frame_stream_set_frames (self->preview, preview, preview_frames, preview_h, preview_w);
    if (!gtk_media_stream_get_playing (GTK_MEDIA_STREAM (self->preview)))
      gtk_media_stream_play (GTK_MEDIA_STREAM (self->preview));
  }
}
