/* kin-window.c — the main window: controls, the job queue and the project (see kin-window.h). */
#include "kin-config.h"
#include "kin-window-private.h"
#include "kin-clip-row.h"
#include "kin-queue-row.h"
#include "kin-error.h"
#include "kin-export.h"
#include <glib/gi18n.h>
#include <math.h>

G_DEFINE_FINAL_TYPE (KinWindow, kin_window, ADW_TYPE_APPLICATION_WINDOW)

#define HISTORY_MAX 30
#define RECENT_MAX 10

/* Frame counts the v1.1 model was trained on per resolution class (stage-3 training buckets):
 * 720p up to 32 frames, 480p up to 64, smaller classes up to 128. */
static int
max_frames_for (const char *resolution)
{
  if (g_strcmp0 (resolution, "720p") == 0)
    return 32;
  if (g_strcmp0 (resolution, "480p") == 0)
    return 64;
  return 128;
}

/* Aspect ratios offered, as people say them for video (W:H). */
static const char *const aspect_labels[] = { "9:16", "2:3", "3:4", "1:1", "4:3", "3:2", "16:9", "2:1" };
static const char *const resolution_names[] = { "144p", "240p", "360p", "480p", "720p" };

/* The built-in demo model (data/models/kinora-demo) was trained on square 64 × 64 clips of 16
 * frames and nothing else; the engine's kin_pipeline_request_defaults uses the same size for it.
 * While it is the active transformer the resolution list starts with this size and selects it. */
#define DEMO_SIZE 64
#define DEMO_FRAMES 16
static const KinBucket demo_bucket = { "1.00", DEMO_SIZE, DEMO_SIZE };

void
kin_window_toast (KinWindow *self, const char *text)
{
  adw_toast_overlay_add_toast (self->toast_overlay, adw_toast_new (text));
}

/* ================================================================ controls */

/* TRUE when no transformer folder is configured and the demo pack is there to stand in. */
static gboolean
demo_model_active (KinWindow *self)
{
  g_autofree char *folder = g_settings_get_string (self->settings, "transformer-folder");
  if (*folder != '\0')
    return FALSE;
  KinModelPaths demo = { 0 };
  gboolean found = kin_pipeline_default_paths (&demo);
  kin_model_paths_clear (&demo);
  return found;
}

/* The demo model's entry is the selected resolution. */
static gboolean
demo_selected (KinWindow *self)
{
  return self->demo_model && adw_combo_row_get_selected (self->resolution_row) == 0;
}

/* The selected resolution class's name; NULL for the demo model's entry. */
static const char *
selected_class_name (KinWindow *self)
{
  guint i = adw_combo_row_get_selected (self->resolution_row);
  if (self->demo_model) {
    if (i == 0)
      return NULL;
    i--;
  }
  return resolution_names[MIN (i, G_N_ELEMENTS (resolution_names) - 1)];
}

static const KinBucket *
current_bucket (KinWindow *self)
{
  if (demo_selected (self))
    return &demo_bucket;
  guint i = adw_combo_row_get_selected (self->aspect_row);
  double r = i < self->aspect_ratios->len ? g_array_index (self->aspect_ratios, double, i) : 0.5625;
  return kin_bucket_nearest (kin_resolution_class_find (selected_class_name (self)), r);
}

static int
current_frames (KinWindow *self)
{
  if (demo_selected (self))
    return DEMO_FRAMES;
  guint i = adw_combo_row_get_selected (self->duration_row);
  return i < self->frame_counts->len ? g_array_index (self->frame_counts, int, i) : 16;
}

char *
kin_window_dup_prompt (KinWindow *self)
{
  GtkTextBuffer *buf = gtk_text_view_get_buffer (self->prompt_view);
  GtkTextIter a, b;
  gtk_text_buffer_get_bounds (buf, &a, &b);
  g_autofree char *text = gtk_text_buffer_get_text (buf, &a, &b, FALSE);
  return g_strstrip (g_steal_pointer (&text));
}

void
kin_window_fill_request (KinWindow *self, KinRequest *req)
{
  const KinBucket *b = current_bucket (self);
  memset (req, 0, sizeof *req);
  req->prompt = kin_window_dup_prompt (self);
  req->height = b->height;
  req->width = b->width;
  req->frames = current_frames (self);
  req->fps = KIN_OUTPUT_FPS;
  req->seed = (guint64) gtk_adjustment_get_value (self->seed_adjustment);
  req->steps = (int) gtk_adjustment_get_value (self->steps_adjustment);
  req->guidance = (float) gtk_adjustment_get_value (self->guidance_adjustment);
  req->sampler = adw_combo_row_get_selected (self->sampler_row) == 1 ? KIN_SAMPLER_DPM_SOLVER
                                                                    : KIN_SAMPLER_IDDPM;
}

static void
update_estimate (KinWindow *self)
{
  KinRequest req;
  kin_window_fill_request (self, &req);
  double spu = g_settings_get_double (self->settings, "seconds-per-unit");
  g_autofree char *len = kin_describe_length (req.frames, KIN_OUTPUT_FPS);
  g_autofree char *text = NULL;
  if (spu > 0) {
    g_autofree char *t = kin_format_duration (spu * kin_request_work_units (&req));
    /* TRANSLATORS: "426 × 240 · 2.0 s · 16 frames · about 3 minutes" */
    text = g_strdup_printf (_("%d × %d · %s · takes %s"), req.width, req.height, len, t);
  } else {
    text = g_strdup_printf (_("%d × %d · %s · the first clip measures this computer’s speed"),
                            req.width, req.height, len);
  }
  gtk_label_set_label (self->estimate_label, text);
  kin_request_clear (&req);
}

/* The durations of the selected resolution; the one nearest the saved "frames" at or below it is
 * selected.  The demo model's entry offers its one trained length. */
static void
fill_durations (KinWindow *self)
{
  gboolean demo = demo_selected (self);
  int keep = g_settings_get_int (self->settings, "frames");
  int max = max_frames_for (selected_class_name (self));
  static const int demo_counts[] = { DEMO_FRAMES };
  int n = G_N_ELEMENTS (demo_counts);
  const int *counts = demo ? demo_counts : kin_frame_counts (&n);
  g_autoptr (GtkStringList) list = gtk_string_list_new (NULL);
  g_array_set_size (self->frame_counts, 0);
  guint select = 0;
  for (int i = 0; i < n; i++) {
    if (counts[i] > max)
      continue;
    g_autofree char *label = counts[i] <= 1 ? g_strdup (_("Still image (1 frame)"))
                                            : kin_describe_length (counts[i], KIN_OUTPUT_FPS);
    gtk_string_list_append (list, label);
    g_array_append_val (self->frame_counts, counts[i]);
    if (counts[i] <= keep)
      select = self->frame_counts->len - 1;
  }
  adw_combo_row_set_model (self->duration_row, G_LIST_MODEL (list));
  adw_combo_row_set_selected (self->duration_row, select);
  gtk_widget_set_sensitive (GTK_WIDGET (self->duration_row), !demo);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->duration_row),
                               demo ? _("The demo model was trained on this length only") : NULL);
}

/* The aspect ratios of the selected resolution, with the saved "aspect-ratio" selected.  The demo
 * model's entry offers its one trained shape, 1:1. */
static void
fill_aspects (KinWindow *self)
{
  gboolean demo = demo_selected (self);
  g_autofree char *want = g_settings_get_string (self->settings, "aspect-ratio");
  g_autoptr (GtkStringList) list = gtk_string_list_new (NULL);
  g_array_set_size (self->aspect_ratios, 0);
  guint select = GTK_INVALID_LIST_POSITION, fallback = 0;
  if (demo) {
    g_autofree char *label = g_strdup_printf ("1:1  (%d × %d)", DEMO_SIZE, DEMO_SIZE);
    double r = 1.0;
    gtk_string_list_append (list, label);
    g_array_append_val (self->aspect_ratios, r);
  } else {
    const KinResolutionClass *cls = kin_resolution_class_find (selected_class_name (self));
    for (guint i = 0; i < G_N_ELEMENTS (aspect_labels); i++) {
      double r = 0;
      if (!kin_aspect_parse (aspect_labels[i], &r))
        continue;
      const KinBucket *b = kin_bucket_nearest (cls, r);
      g_autofree char *label = g_strdup_printf ("%s  (%d × %d)", aspect_labels[i], b->width, b->height);
      gtk_string_list_append (list, label);
      g_array_append_val (self->aspect_ratios, r);
      if (g_strcmp0 (aspect_labels[i], want) == 0)
        select = self->aspect_ratios->len - 1;
      if (g_strcmp0 (aspect_labels[i], "16:9") == 0)
        fallback = self->aspect_ratios->len - 1;
    }
  }
  adw_combo_row_set_model (self->aspect_row, G_LIST_MODEL (list));
  adw_combo_row_set_selected (self->aspect_row, select != GTK_INVALID_LIST_POSITION ? select : fallback);
  gtk_widget_set_sensitive (GTK_WIDGET (self->aspect_row), !demo);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->aspect_row),
                               demo ? _("The demo model makes square clips only") : NULL);
}

static void
on_controls_changed (KinWindow *self)
{
  if (self->filling_controls || self->aspect_ratios->len == 0 || self->frame_counts->len == 0)
    return; /* still filling */
  const KinBucket *b = current_bucket (self);
  g_autofree char *size = NULL; /* none for the demo entry: it says it all, and fits */
  if (!demo_selected (self))
    size = self->demo_model
      /* TRANSLATORS: two short lines beside the size choice, "426 × 240 pixels" and "The demo
       * model was trained at 64 × 64" */
      ? g_strdup_printf (_("%d × %d pixels\nThe demo model was trained at %d × %d"), b->width,
                         b->height, DEMO_SIZE, DEMO_SIZE)
      : g_strdup_printf (_("%d × %d pixels"), b->width, b->height);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (self->resolution_row), size);
  g_autofree char *tip = self->demo_model
    ? g_strdup_printf (_("The built-in demo model was trained on %d × %d clips only"), DEMO_SIZE, DEMO_SIZE)
    : NULL;
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->resolution_row), tip);
  /* The demo model's fixed choices are not remembered: the saved ones are for real models. */
  if (!demo_selected (self)) {
    g_settings_set_string (self->settings, "resolution", selected_class_name (self));
    guint a = adw_combo_row_get_selected (self->aspect_row);
    if (a < G_N_ELEMENTS (aspect_labels))
      g_settings_set_string (self->settings, "aspect-ratio", aspect_labels[a]);
    g_settings_set_int (self->settings, "frames", current_frames (self));
  }
  update_estimate (self);
}

/* Rebuilds the aspect and duration choices for the selected resolution. */
static void
refill_choices (KinWindow *self)
{
  self->filling_controls = TRUE;
  fill_aspects (self);
  fill_durations (self);
  self->filling_controls = FALSE;
  on_controls_changed (self);
}

static void
on_resolution_changed (KinWindow *self)
{
  if (!self->filling_controls)
    refill_choices (self);
}

/* The resolution classes, headed by the demo model's size while the demo model is the active
 * transformer.  The demo entry is then selected; otherwise the saved class is. */
static void
fill_resolutions (KinWindow *self)
{
  self->demo_model = demo_model_active (self);
  g_autofree char *want = g_settings_get_string (self->settings, "resolution");
  g_autoptr (GtkStringList) res = gtk_string_list_new (NULL);
  guint offset = 0, select = 1; /* 240p */
  if (self->demo_model) {
    /* TRANSLATORS: the first entry of the Resolution list, "Demo model · 64 × 64" */
    g_autofree char *label = g_strdup_printf (_("Demo model · %d × %d"), DEMO_SIZE, DEMO_SIZE);
    gtk_string_list_append (res, label);
    offset = 1;
  }
  for (guint i = 0; i < G_N_ELEMENTS (resolution_names); i++) {
    gtk_string_list_append (res, resolution_names[i]);
    if (g_strcmp0 (want, resolution_names[i]) == 0)
      select = i;
  }
  self->filling_controls = TRUE;
  adw_combo_row_set_model (self->resolution_row, G_LIST_MODEL (res));
  adw_combo_row_set_selected (self->resolution_row, self->demo_model ? 0 : offset + select);
  self->filling_controls = FALSE;
  refill_choices (self);
}

/* A transformer folder was chosen or cleared in Preferences: the demo entry comes or goes. */
static void
on_transformer_folder_changed (KinWindow *self)
{
  if (demo_model_active (self) != self->demo_model)
    fill_resolutions (self);
}

static gboolean
sampler_get (GValue *value, GVariant *variant, gpointer data)
{
  g_value_set_uint (value, g_strcmp0 (g_variant_get_string (variant, NULL), "dpm-solver") == 0);
  return TRUE;
}

static GVariant *
sampler_set (const GValue *value, const GVariantType *type, gpointer data)
{
  return g_variant_new_string (g_value_get_uint (value) == 1 ? "dpm-solver" : "iddpm");
}

static gboolean
seed_get (GValue *value, GVariant *variant, gpointer data)
{
  g_value_set_double (value, (double) (g_variant_get_uint64 (variant) & 0xffffffffu));
  return TRUE;
}

static GVariant *
seed_set (const GValue *value, const GVariantType *type, gpointer data)
{
  return g_variant_new_uint64 ((guint64) g_value_get_double (value));
}

static void
on_seed_lock_toggled (KinWindow *self)
{
  gboolean locked = gtk_toggle_button_get_active (self->seed_lock_button);
  gtk_button_set_icon_name (GTK_BUTTON (self->seed_lock_button),
                            locked ? "changes-prevent-symbolic" : "changes-allow-symbolic");
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->seed_lock_button),
                               locked ? _("The seed stays the same for the next clips")
                                      : _("Keep this seed for the next clips"));
}

static void
setup_controls (KinWindow *self)
{
  fill_resolutions (self);
  g_signal_connect_swapped (self->resolution_row, "notify::selected",
                            G_CALLBACK (on_resolution_changed), self);
  g_signal_connect_swapped (self->aspect_row, "notify::selected", G_CALLBACK (on_controls_changed), self);
  g_signal_connect_swapped (self->duration_row, "notify::selected", G_CALLBACK (on_controls_changed), self);
  g_signal_connect_swapped (self->steps_adjustment, "value-changed", G_CALLBACK (on_controls_changed), self);
  g_signal_connect_swapped (self->settings, "changed::transformer-folder",
                            G_CALLBACK (on_transformer_folder_changed), self);

  g_settings_bind (self->settings, "steps", self->steps_adjustment, "value", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "guidance", self->guidance_adjustment, "value", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "seed-locked", self->seed_lock_button, "active", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind_with_mapping (self->settings, "seed", self->seed_adjustment, "value",
                                G_SETTINGS_BIND_DEFAULT, seed_get, seed_set, NULL, NULL);
  g_settings_bind_with_mapping (self->settings, "sampler", self->sampler_row, "selected",
                                G_SETTINGS_BIND_DEFAULT, sampler_get, sampler_set, NULL, NULL);
  g_signal_connect_swapped (self->seed_lock_button, "toggled", G_CALLBACK (on_seed_lock_toggled), self);
  on_seed_lock_toggled (self);
  g_signal_connect_swapped (self->settings, "changed::seconds-per-unit", G_CALLBACK (update_estimate), self);
  on_controls_changed (self);
}

/* ---- prompt editor and history ---- */

static void
on_prompt_changed (KinWindow *self)
{
  GtkTextBuffer *buf = gtk_text_view_get_buffer (self->prompt_view);
  gtk_widget_set_visible (self->prompt_placeholder, gtk_text_buffer_get_char_count (buf) == 0);
}

static void
fill_history (KinWindow *self)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->history_list))) != NULL)
    gtk_list_box_remove (self->history_list, child);
  g_auto (GStrv) items = g_settings_get_strv (self->settings, "prompt-history");
  for (guint i = 0; items[i] != NULL; i++) {
    GtkWidget *label = gtk_label_new (items[i]);
    gtk_label_set_xalign (GTK_LABEL (label), 0);
    gtk_label_set_wrap (GTK_LABEL (label), TRUE);
    gtk_label_set_lines (GTK_LABEL (label), 2);
    gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
    gtk_list_box_append (self->history_list, label);
  }
  if (items[0] == NULL) {
    GtkWidget *label = gtk_label_new (_("Prompts you generate appear here"));
    gtk_widget_add_css_class (label, "dim-label");
    gtk_list_box_append (self->history_list, label);
  }
  gtk_widget_set_sensitive (GTK_WIDGET (self->history_button), TRUE);
}

static void
on_history_row_activated (KinWindow *self, GtkListBoxRow *row)
{
  GtkWidget *label = gtk_list_box_row_get_child (row);
  if (gtk_widget_has_css_class (label, "dim-label"))
    return;
  GtkTextBuffer *buf = gtk_text_view_get_buffer (self->prompt_view);
  gtk_text_buffer_set_text (buf, gtk_label_get_label (GTK_LABEL (label)), -1);
  gtk_popover_popdown (self->history_popover);
  gtk_widget_grab_focus (GTK_WIDGET (self->prompt_view));
}

static void
remember_prompt (KinWindow *self, const char *prompt)
{
  g_auto (GStrv) old = g_settings_get_strv (self->settings, "prompt-history");
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
  g_strv_builder_add (b, prompt);
  for (guint i = 0, n = 1; old[i] != NULL && n < HISTORY_MAX; i++)
    if (g_strcmp0 (old[i], prompt) != 0) {
      g_strv_builder_add (b, old[i]);
      n++;
    }
  g_auto (GStrv) items = g_strv_builder_end (b);
  g_settings_set_strv (self->settings, "prompt-history", (const char *const *) items);
}

static gboolean
on_prompt_key (GtkEventControllerKey *key, guint keyval, guint keycode, GdkModifierType state,
               KinWindow *self)
{
  if ((keyval == GDK_KEY_Return || keyval == GDK_KEY_KP_Enter) && (state & GDK_CONTROL_MASK)) {
    gtk_widget_activate_action (GTK_WIDGET (self), "win.generate", NULL);
    return TRUE;
  }
  return FALSE;
}

/* ================================================================ queue */

static void start_next_job (KinWindow *self);

static void
update_etas (KinWindow *self)
{
  double spu = g_settings_get_double (self->settings, "seconds-per-unit");
  double ahead = self->running != NULL ? MAX (0, kin_job_get_eta (self->running)) : 0;
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->jobs));
  for (guint i = 0; i < n; i++) {
    g_autoptr (KinJob) job = g_list_model_get_item (G_LIST_MODEL (self->jobs), i);
    if (kin_job_get_state (job) != KIN_JOB_QUEUED)
      continue;
    if (spu <= 0) {
      kin_job_set_status (job, self->running ? _("Waiting for the clip before it")
                                             : _("Waiting to start"));
      continue;
    }
    double own = spu * kin_request_work_units (kin_job_get_request (job));
    kin_job_set_eta (job, own);
    g_autofree char *takes = kin_format_duration (own);
    g_autofree char *starts = kin_format_duration (ahead);
    g_autofree char *status = ahead > 0
      /* TRANSLATORS: "Waiting · starts in about 2 minutes · takes about 3 minutes" */
      ? g_strdup_printf (_("Waiting · starts in %s · takes %s"), starts, takes)
      : g_strdup_printf (_("Waiting · takes %s"), takes);
    kin_job_set_status (job, status);
    ahead += own;
  }
}

static void
on_job_progress (const char *stage, int step, int total, double eta, const guint8 *preview,
                 int frames, int h, int w, gpointer data)
{
  KinJob *job = data;
  kin_job_progress (job, stage, step, total, eta, preview, frames, h, w);
}

static void
show_live (KinWindow *self)
{
  if (self->running == NULL || self->playing != NULL)
    return;
  gtk_picture_set_paintable (self->live_picture, GDK_PAINTABLE (kin_job_get_preview (self->running)));
  gtk_stack_set_visible_child_name (self->viewer_stack, "live");
}

static void
on_running_notify (KinWindow *self)
{
  if (self->running == NULL)
    return;
  gtk_label_set_label (self->live_label, kin_job_get_status (self->running));
  update_etas (self);
}

typedef struct {
  KinWindow *window;
  KinProject *project;       /* the project the job was made for, even if the window moves on */
  KinJob *job;
  KinClip *clip;
} SaveData;

static void
save_data_free (SaveData *d)
{
  g_object_unref (d->window);
  g_object_unref (d->project);
  g_object_unref (d->job);
  kin_clip_free (d->clip);
  g_free (d);
}

static char *
write_clip_video (const KinClip *clip, const char *dir, gpointer user_data, GError **error)
{
  g_autofree char *path = g_build_filename (dir, "clip.mp4", NULL);
  if (!kin_export_clip (clip, path, KIN_EXPORT_MP4, NULL, error))
    return NULL;
  return g_strdup ("clip.mp4");
}

static void
write_clip_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  SaveData *d = data;
  GError *error = NULL;
  gboolean video = g_getenv ("KINORA_NO_VIDEO_FILES") == NULL;
  KinProjectClip *clip = kin_project_write_clip (d->project, d->clip,
                                                 video ? write_clip_video : NULL, NULL, &error);
  if (clip == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, clip, g_object_unref);
}

static void
finish_job (KinWindow *self, KinJob *job)
{
  if (self->running == job) {
    g_signal_handlers_disconnect_by_func (job, on_running_notify, self);
    g_clear_object (&self->running);
  }
  if (self->playing == NULL)
    kin_window_show_clip (self, kin_window_get_selected_clip (self));
  start_next_job (self);
}

/* GTK 4.8 has no gtk_list_view_scroll_to; new clips are appended, so scroll to the end. */
static gboolean
scroll_timeline_to_end (gpointer data)
{
  KinWindow *self = data;
  GtkWidget *scroller = gtk_widget_get_ancestor (GTK_WIDGET (self->timeline), GTK_TYPE_SCROLLED_WINDOW);
  if (scroller != NULL) {
    GtkAdjustment *adj = gtk_scrolled_window_get_hadjustment (GTK_SCROLLED_WINDOW (scroller));
    gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj));
  }
  return G_SOURCE_REMOVE;
}

static void
on_clip_written (GObject *source, GAsyncResult *result, gpointer data)
{
  SaveData *d = g_task_get_task_data (G_TASK (result));
  KinWindow *self = d->window;
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProjectClip) clip = g_task_propagate_pointer (G_TASK (result), &error);
  if (clip == NULL || !kin_project_append_clip (d->project, clip, &error)) {
    kin_job_set_state (d->job, KIN_JOB_FAILED);
    kin_job_set_status (d->job, error->message);
    kin_window_show_error (self, _("The Clip Could Not Be Saved"), error);
  } else {
    /* Learn the speed of this computer for the next estimates. */
    double units = kin_request_work_units (&d->clip->request);
    if (d->clip->seconds > 0 && units > 0)
      g_settings_set_double (self->settings, "seconds-per-unit", d->clip->seconds / units);
    g_autofree char *took = g_strdup_printf (_("Finished in %.0f s"), d->clip->seconds);
    kin_job_set_state (d->job, KIN_JOB_DONE);
    kin_job_set_status (d->job, took);
    guint pos = 0;
    if (d->project == self->project &&
        g_list_store_find (G_LIST_STORE (kin_project_get_clips (self->project)), clip, &pos) &&
        !gtk_widget_get_visible (GTK_WIDGET (self->history_popover))) {
      self->playing = NULL; /* the new clip takes over the viewer */
      gtk_single_selection_set_selected (self->selection, pos);
      g_idle_add_full (G_PRIORITY_LOW, scroll_timeline_to_end, g_object_ref (self), g_object_unref);
    }
  }
  finish_job (self, d->job);
}

static void
on_generated (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (KinWindow) self = data;
  KinJob *job = self->running;
  g_autoptr (GError) error = NULL;
  KinClip *clip = kin_engine_generate_finish (KIN_ENGINE (source), result, &error);
  if (job == NULL) {
    kin_clip_free (clip);
    return;
  }
  if (clip == NULL) {
    gboolean cancelled = g_error_matches (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED) ||
                         g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
                         g_cancellable_is_cancelled (kin_job_get_cancellable (job));
    kin_job_set_state (job, cancelled ? KIN_JOB_CANCELLED : KIN_JOB_FAILED);
    kin_job_set_status (job, cancelled ? _("Cancelled") : error->message);
    if (!cancelled && !g_cancellable_is_cancelled (self->cancellable))
      kin_window_show_error (self, _("Generation Failed"), error);
    finish_job (self, job);
    return;
  }
  kin_job_set_state (job, KIN_JOB_SAVING);
  kin_job_set_status (job, _("Saving the clip…"));
  SaveData *d = g_new0 (SaveData, 1);
  d->window = g_object_ref (self);
  d->project = g_object_ref (self->project);
  d->job = g_object_ref (job);
  d->clip = clip;
  g_autoptr (GTask) task = g_task_new (NULL, NULL, on_clip_written, NULL);
  g_task_set_task_data (task, d, (GDestroyNotify) save_data_free);
  g_task_run_in_thread (task, write_clip_thread);
}

static void
start_next_job (KinWindow *self)
{
  if (self->running != NULL || self->queue_paused || self->project == NULL)
    return;
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->jobs));
  for (guint i = 0; i < n; i++) {
    g_autoptr (KinJob) job = g_list_model_get_item (G_LIST_MODEL (self->jobs), i);
    if (kin_job_get_state (job) != KIN_JOB_QUEUED)
      continue;
    self->running = g_object_ref (job);
    kin_job_set_state (job, KIN_JOB_RUNNING);
    kin_job_set_status (job, _("Starting…"));
    g_signal_connect_swapped (job, "notify", G_CALLBACK (on_running_notify), self);
    show_live (self);
    kin_engine_generate_async (self->engine, kin_job_get_request (job), on_job_progress,
                               g_object_ref (job), g_object_unref, kin_job_get_cancellable (job),
                               on_generated, g_object_ref (self));
    break;
  }
  update_etas (self);
}

void
kin_window_set_queue_paused (KinWindow *self, gboolean paused)
{
  self->queue_paused = paused;
  start_next_job (self);
}

static void
on_job_state (KinWindow *self, GParamSpec *pspec, KinJob *job)
{
  /* A job cancelled while it waited never reaches the engine. */
  if (kin_job_get_state (job) == KIN_JOB_CANCELLED && job != self->running) {
    kin_job_set_status (job, _("Cancelled"));
    update_etas (self);
  }
}

void
kin_window_queue_job (KinWindow *self, KinJob *job)
{
  g_signal_connect_object (job, "notify::state", G_CALLBACK (on_job_state), self, G_CONNECT_SWAPPED);
  g_list_store_append (self->jobs, job);
  update_etas (self);
  start_next_job (self);
}

static GtkWidget *
create_queue_row (gpointer item, gpointer data)
{
  return kin_queue_row_new (KIN_JOB (item));
}

static void
clear_finished (GSimpleAction *action, GVariant *param, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  for (guint i = g_list_model_get_n_items (G_LIST_MODEL (self->jobs)); i > 0; i--) {
    g_autoptr (KinJob) job = g_list_model_get_item (G_LIST_MODEL (self->jobs), i - 1);
    if (kin_job_is_finished (job))
      g_list_store_remove (self->jobs, i - 1);
  }
}

static void
generate (GSimpleAction *action, GVariant *param, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  KinRequest req;
  kin_window_fill_request (self, &req);
  if (*req.prompt == '\0' && self->image_rgb == NULL) {
    kin_window_toast (self, _("Write a prompt first"));
    gtk_widget_grab_focus (GTK_WIDGET (self->prompt_view));
    kin_request_clear (&req);
    return;
  }
  if (!gtk_toggle_button_get_active (self->seed_lock_button))
    req.seed = g_random_int ();
  gtk_adjustment_set_value (self->seed_adjustment, (double) req.seed);
  if (self->image_rgb != NULL) {
    req.cond = KIN_COND_IMAGE;
    req.sampler = KIN_SAMPLER_IDDPM; /* frame conditioning is defined for IDDPM only */
    req.cond_image = self->image_rgb;
    req.cond_image_w = self->image_w;
    req.cond_image_h = self->image_h;
  }
  g_autofree char *title = *req.prompt ? g_strdup (req.prompt) : g_strdup (_("Clip from an image"));
  g_autoptr (KinJob) job = kin_job_new (&req, title, 0);
  if (*req.prompt)
    remember_prompt (self, req.prompt);
  kin_request_clear (&req);
  /* The image prompt conditions one clip. */
  kin_window_set_image_prompt (self, NULL, 0, 0);
  kin_window_queue_job (self, job);
}

static void
random_seed (GSimpleAction *action, GVariant *param, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  gtk_adjustment_set_value (self->seed_adjustment, (double) g_random_int ());
}

/* ================================================================ projects */

static void
update_title (KinWindow *self)
{
  if (self->project == NULL)
    return;
  adw_window_title_set_title (self->window_title, kin_project_get_name (self->project));
  g_autofree char *dir = g_path_get_dirname (kin_project_get_path (self->project));
  const char *home = g_get_home_dir ();
  g_autofree char *shown = g_str_has_prefix (dir, home) ? g_strconcat ("~", dir + strlen (home), NULL)
                                                        : g_strdup (dir);
  adw_window_title_set_subtitle (self->window_title, shown);
  g_autofree char *title = g_strdup_printf ("%s — Kinora", kin_project_get_name (self->project));
  gtk_window_set_title (GTK_WINDOW (self), title);
}

static void
update_recent_menu (KinWindow *self)
{
  g_auto (GStrv) recent = g_settings_get_strv (self->settings, "recent-projects");
  g_autoptr (GMenu) menu = g_menu_new ();
  for (guint i = 0; recent[i] != NULL; i++) {
    g_autofree char *name = g_path_get_basename (recent[i]);
    if (g_str_has_suffix (name, KIN_PROJECT_SUFFIX))
      name[strlen (name) - strlen (KIN_PROJECT_SUFFIX)] = '\0';
    g_autoptr (GMenuItem) item = g_menu_item_new (name, NULL);
    g_menu_item_set_action_and_target (item, "win.open-recent", "s", recent[i]);
    g_menu_append_item (menu, item);
  }
  if (recent[0] == NULL) {
    g_autoptr (GMenuItem) item = g_menu_item_new (_("No Recent Projects"), "win.none");
    g_menu_append_item (menu, item);
  }
  adw_split_button_set_menu_model (self->open_button, G_MENU_MODEL (menu));
}

static void
remember_project (KinWindow *self, const char *path)
{
  g_auto (GStrv) old = g_settings_get_strv (self->settings, "recent-projects");
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
  g_strv_builder_add (b, path);
  for (guint i = 0, n = 1; old[i] != NULL && n < RECENT_MAX; i++)
    if (g_strcmp0 (old[i], path) != 0 && g_file_test (old[i], G_FILE_TEST_IS_DIR)) {
      g_strv_builder_add (b, old[i]);
      n++;
    }
  g_auto (GStrv) items = g_strv_builder_end (b);
  g_settings_set_strv (self->settings, "recent-projects", (const char *const *) items);
  g_settings_set_string (self->settings, "last-project", path);
}

static void
on_clips_changed (KinWindow *self)
{
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->selection));
  gtk_stack_set_visible_child_name (self->timeline_stack, n > 0 ? "clips" : "empty");
  if (n == 0 && self->running == NULL)
    gtk_stack_set_visible_child_name (self->viewer_stack, "empty");
}

static void
on_selection_changed (KinWindow *self)
{
  kin_window_show_clip (self, kin_window_get_selected_clip (self));
  kin_window_update_clip_actions (self);
}

void
kin_window_set_project (KinWindow *self, KinProject *project)
{
  if (self->project != NULL)
    g_signal_handlers_disconnect_by_data (kin_project_get_clips (self->project), self);
  g_set_object (&self->project, project);
  self->playing = NULL;
  GListModel *clips = kin_project_get_clips (project);
  gtk_single_selection_set_model (self->selection, clips);
  g_signal_connect_swapped (clips, "items-changed", G_CALLBACK (on_clips_changed), self);
  g_signal_connect_object (project, "notify::name", G_CALLBACK (update_title), self, G_CONNECT_SWAPPED);
  guint n = g_list_model_get_n_items (clips);
  if (n > 0)
    gtk_single_selection_set_selected (self->selection, n - 1);
  on_clips_changed (self);
  on_selection_changed (self);
  update_title (self);
  remember_project (self, kin_project_get_path (project));
  update_recent_menu (self);
  start_next_job (self);
}

KinProject *
kin_window_get_project (KinWindow *self)
{
  return self->project;
}

static void
on_open_error_response (AdwMessageDialog *dialog, const char *response, gpointer data)
{
  KinWindow *self = KIN_WINDOW (gtk_window_get_transient_for (GTK_WINDOW (dialog)));
  const char *path = g_object_get_data (G_OBJECT (dialog), "path");
  if (g_strcmp0 (response, "recover") == 0) {
    g_autoptr (GError) error = NULL;
    g_autoptr (KinProject) p = kin_project_recover (path, &error);
    if (p == NULL)
      kin_window_show_error (self, _("The Project Could Not Be Recovered"), error);
    else {
      kin_window_set_project (self, p);
      kin_window_toast (self, _("Project recovered; the damaged file was kept beside it"));
    }
  } else if (g_strcmp0 (response, "reveal") == 0) {
    g_autoptr (GFile) f = g_file_new_for_path (path);
    g_autofree char *uri = g_file_get_uri (f);
    gtk_show_uri (GTK_WINDOW (self), uri, GDK_CURRENT_TIME);
  }
  if (self->project == NULL)
    kin_window_open_project (self, NULL);
}

static void
show_open_error (KinWindow *self, const char *path, const GError *error)
{
  GtkWidget *dialog = adw_message_dialog_new (GTK_WINDOW (self), _("The Project Could Not Be Opened"),
                                              error->message);
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), "close", _("_Close"));
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), "reveal", _("Show in _Files"));
  if (g_error_matches (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_CORRUPT)) {
    adw_message_dialog_format_body (ADW_MESSAGE_DIALOG (dialog),
                                    _("%s\n\nKinora can rebuild the project from the clips it holds. "
                                      "The damaged file is kept, never overwritten."),
                                    error->message);
    adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), "recover", _("_Recover Clips"));
    adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "recover",
                                                ADW_RESPONSE_SUGGESTED);
    adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "recover");
  }
  g_object_set_data_full (G_OBJECT (dialog), "path", g_strdup (path), g_free);
  g_signal_connect (dialog, "response", G_CALLBACK (on_open_error_response), NULL);
  gtk_window_present (GTK_WINDOW (dialog));
}

static KinProject *
new_untitled (KinWindow *self, GError **error)
{
  g_autofree char *dir = kin_application_dup_projects_dir ();
  g_autofree char *path = kin_project_make_unique_path (dir, _("Untitled"));
  return kin_project_create (path, error);
}

void
kin_window_open_project (KinWindow *self, const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) project = NULL;
  if (path != NULL) {
    project = kin_project_open (path, &error);
    if (project == NULL) {
      show_open_error (self, path, error);
      return;
    }
  } else {
    g_autofree char *last = g_settings_get_string (self->settings, "last-project");
    if (*last != '\0')
      project = kin_project_open (last, NULL); /* a vanished last project is not an error */
    if (project == NULL)
      project = new_untitled (self, &error);
    if (project == NULL) {
      kin_window_show_error (self, _("No Project Could Be Created"), error);
      return;
    }
  }
  kin_window_set_project (self, project);
}

/* ================================================================ errors */

static void
on_error_response (AdwMessageDialog *dialog, const char *response, KinWindow *self)
{
  if (g_strcmp0 (response, "low-memory") == 0) {
    g_settings_set_enum (self->settings, "memory-mode", KIN_MEMORY_LOW);
    kin_window_toast (self, _("Low memory mode is on; generate again"));
  } else if (g_strcmp0 (response, "preferences") == 0) {
    gtk_widget_activate_action (GTK_WIDGET (self), "app.preferences", NULL);
  }
}

void
kin_window_show_error (KinWindow *self, const char *heading, const GError *error)
{
  g_warning ("%s: %s", heading, error->message);
  if (self->self_test_dir != NULL) {
    /* In the self-test an error is an expected outcome worth a toast, never a modal dialog. */
    g_autofree char *t = g_strdup_printf ("%s: %s", heading, error->message);
    kin_window_toast (self, t);
    return;
  }
  const char *hint = NULL;
  const char *action = NULL, *action_label = NULL;
  if (error->domain == KIN_ENGINE_ERROR) {
    switch (error->code) {
    case KIN_ENGINE_ERROR_OUT_OF_MEMORY:
      hint = _("Try a lower resolution or fewer frames, or switch on low memory mode.");
      action = "low-memory";
      action_label = _("Use _Low Memory Mode");
      break;
    case KIN_ENGINE_ERROR_BAD_WEIGHTS:
    case KIN_ENGINE_ERROR_BAD_FILE:
    case KIN_ENGINE_ERROR_NO_DEVICE:
    case KIN_ENGINE_ERROR_UNSUPPORTED:
      hint = _("Check the model folders and the device in Preferences.");
      action = "preferences";
      action_label = _("Open _Preferences");
      break;
    case KIN_ENGINE_ERROR_BAD_INPUT:
      hint = _("Change the clip’s settings and generate again.");
      break;
    default:
      break;
    }
  }
  g_autofree char *body = hint ? g_strdup_printf ("%s\n\n%s", error->message, hint)
                               : g_strdup (error->message);
  GtkWidget *dialog = adw_message_dialog_new (GTK_WINDOW (self), heading, body);
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), "close", _("_Close"));
  if (action != NULL) {
    adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), action, action_label);
    adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), action,
                                                ADW_RESPONSE_SUGGESTED);
  }
  g_signal_connect_object (dialog, "response", G_CALLBACK (on_error_response), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

/* ================================================================ window */

static gboolean
kin_window_close_request (GtkWindow *window)
{
  KinWindow *self = KIN_WINDOW (window);
  g_cancellable_cancel (self->cancellable);
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->jobs));
  for (guint i = 0; i < n; i++) {
    g_autoptr (KinJob) job = g_list_model_get_item (G_LIST_MODEL (self->jobs), i);
    kin_job_cancel (job);
  }
  if (self->project != NULL && kin_project_get_dirty (self->project))
    kin_project_save (self->project, NULL);
  int w = 0, h = 0;
  gtk_window_get_default_size (window, &w, &h);
  if (self->self_test_dir == NULL) {
    g_settings_set_int (self->settings, "window-width", w);
    g_settings_set_int (self->settings, "window-height", h);
    g_settings_set_boolean (self->settings, "window-maximized", gtk_window_is_maximized (window));
  }
  return GTK_WINDOW_CLASS (kin_window_parent_class)->close_request (window);
}

static void
kin_window_dispose (GObject *object)
{
  KinWindow *self = KIN_WINDOW (object);
  kin_window_clips_dispose (self);
  g_clear_handle_id (&self->self_test_source, g_source_remove);
  if (self->running != NULL)
    g_signal_handlers_disconnect_by_func (self->running, on_running_notify, self);
  g_clear_object (&self->running);
  if (self->project != NULL)
    g_signal_handlers_disconnect_by_data (kin_project_get_clips (self->project), self);
  g_clear_object (&self->project);
  g_clear_object (&self->selection);
  g_clear_object (&self->jobs);
  g_clear_object (&self->cancellable);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_clear_object (&self->settings);
  g_clear_object (&self->engine);
  g_clear_pointer (&self->aspect_ratios, g_array_unref);
  g_clear_pointer (&self->frame_counts, g_array_unref);
  g_clear_pointer (&self->image_rgb, g_free);
  g_clear_pointer (&self->self_test_dir, g_free);
  gtk_widget_dispose_template (GTK_WIDGET (self), KIN_TYPE_WINDOW);
  G_OBJECT_CLASS (kin_window_parent_class)->dispose (object);
}

static void
kin_window_class_init (KinWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->dispose = kin_window_dispose;
  GTK_WINDOW_CLASS (klass)->close_request = kin_window_close_request;

  g_type_ensure (KIN_TYPE_CLIP_ROW);
  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/kinora/Kinora/kin-window.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, KinWindow, name)
  CHILD (toast_overlay); CHILD (open_button); CHILD (window_title); CHILD (paned);
  CHILD (prompt_card); CHILD (prompt_view); CHILD (prompt_placeholder); CHILD (image_stack);
  CHILD (image_picture); CHILD (image_label); CHILD (history_button); CHILD (history_popover);
  CHILD (history_list); CHILD (resolution_row); CHILD (aspect_row); CHILD (duration_row);
  CHILD (advanced_row); CHILD (seed_spin); CHILD (seed_adjustment); CHILD (seed_lock_button);
  CHILD (steps_spin); CHILD (steps_adjustment); CHILD (guidance_spin); CHILD (guidance_adjustment);
  CHILD (sampler_row); CHILD (generate_button); CHILD (estimate_label); CHILD (queue_group);
  CHILD (queue_list); CHILD (viewer_stack); CHILD (empty_page); CHILD (live_picture);
  CHILD (live_label); CHILD (video); CHILD (clip_bar); CHILD (clip_title); CHILD (clip_details);
  CHILD (timeline_stack); CHILD (timeline);
#undef CHILD
  gtk_widget_class_bind_template_callback (widget_class, on_history_row_activated);

}

static void
setup_timeline_item (GtkSignalListItemFactory *f, GtkListItem *item, gpointer data)
{
  gtk_list_item_set_child (item, kin_clip_row_new ());
}

static void
bind_timeline_item (GtkSignalListItemFactory *f, GtkListItem *item, gpointer data)
{
  kin_clip_row_set_clip (KIN_CLIP_ROW (gtk_list_item_get_child (item)),
                         KIN_PROJECT_CLIP (gtk_list_item_get_item (item)));
}

static void
kin_window_init (KinWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->cancellable = g_cancellable_new ();
  self->jobs = g_list_store_new (KIN_TYPE_JOB);
  self->aspect_ratios = g_array_new (FALSE, FALSE, sizeof (double));
  self->frame_counts = g_array_new (FALSE, FALSE, sizeof (int));
  self->selection = gtk_single_selection_new (NULL);
  gtk_single_selection_set_autoselect (self->selection, FALSE);
  gtk_single_selection_set_can_unselect (self->selection, TRUE);
  g_signal_connect_swapped (self->selection, "notify::selected-item",
                            G_CALLBACK (on_selection_changed), self);

  GtkListItemFactory *factory = gtk_signal_list_item_factory_new ();
  g_signal_connect (factory, "setup", G_CALLBACK (setup_timeline_item), NULL);
  g_signal_connect (factory, "bind", G_CALLBACK (bind_timeline_item), NULL);
  gtk_list_view_set_factory (self->timeline, factory);
  g_object_unref (factory);
  gtk_list_view_set_model (self->timeline, GTK_SELECTION_MODEL (self->selection));

  gtk_list_box_bind_model (self->queue_list, G_LIST_MODEL (self->jobs), create_queue_row, NULL, NULL);

  GtkTextBuffer *buf = gtk_text_view_get_buffer (self->prompt_view);
  gtk_text_buffer_set_enable_undo (buf, TRUE);
  g_signal_connect_swapped (buf, "changed", G_CALLBACK (on_prompt_changed), self);
  GtkEventController *key = gtk_event_controller_key_new ();
  gtk_event_controller_set_propagation_phase (key, GTK_PHASE_CAPTURE);
  g_signal_connect (key, "key-pressed", G_CALLBACK (on_prompt_key), self);
  gtk_widget_add_controller (GTK_WIDGET (self->prompt_view), key);

  kin_window_clips_init (self);
}

KinWindow *
kin_window_new (KinApplication *app)
{
  KinWindow *self = g_object_new (KIN_TYPE_WINDOW, "application", app, NULL);
  self->settings = g_object_ref (kin_application_get_settings (app));
  self->engine = g_object_ref (kin_application_get_engine (app));
  gtk_window_set_default_size (GTK_WINDOW (self), g_settings_get_int (self->settings, "window-width"),
                               g_settings_get_int (self->settings, "window-height"));
  if (g_settings_get_boolean (self->settings, "window-maximized"))
    gtk_window_maximize (GTK_WINDOW (self));
  setup_controls (self);
  fill_history (self);
  g_signal_connect_swapped (self->settings, "changed::prompt-history", G_CALLBACK (fill_history), self);
  static const GActionEntry entries[] = {
    { "generate", generate },
    { "random-seed", random_seed },
    { "clear-finished", clear_finished },
  };
  g_action_map_add_action_entries (G_ACTION_MAP (self), entries, G_N_ELEMENTS (entries), self);
  kin_window_add_clip_actions (self, G_ACTION_MAP (self));
  kin_window_add_project_actions (self, G_ACTION_MAP (self));
  update_recent_menu (self);
  return self;
}
