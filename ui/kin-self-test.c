/* kin-self-test.c — `kinora --self-test=DIR PROJECT`: the UI test of tests/test-ui.c.
 *
 * Runs the real window on a project, checks what a user would look at (title, controls, the
 * timeline restored from disk, the player, a queued job with its ETA, preferences), saves
 * screenshots with GTK's own renderer, lets the job run to an end (a clip or the engine's
 * error, shown without freezing), and quits with the result. */
#include "kin-config.h"
#include "kin-window-private.h"
#include "kin-preferences.h"
#include <glib/gi18n.h>

static int exit_status;

int
kin_self_test_exit_status (void)
{
  return exit_status;
}

#define CHECK(self, cond, ...)                                    \
  G_STMT_START {                                                  \
    if (cond) {                                                   \
      g_print ("ok - " __VA_ARGS__);                              \
    } else {                                                      \
      (self)->self_test_failures++;                               \
      g_print ("not ok - " __VA_ARGS__);                          \
    }                                                             \
    g_print ("\n");                                               \
  } G_STMT_END

gboolean
kin_window_save_screenshot (GtkWidget *widget, const char *path, GError **error)
{
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  if (w <= 0 || h <= 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "the widget has no size yet");
    return FALSE;
  }
  g_autoptr (GdkPaintable) paintable = gtk_widget_paintable_new (widget);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  gdk_paintable_snapshot (paintable, snapshot, w, h);
  g_autoptr (GskRenderNode) node = gtk_snapshot_free_to_node (snapshot);
  if (node == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "nothing was drawn");
    return FALSE;
  }
  GskRenderer *renderer = gtk_native_get_renderer (gtk_widget_get_native (widget));
  g_autoptr (GdkTexture) texture = gsk_renderer_render_texture (renderer, node,
                                                                &GRAPHENE_RECT_INIT (0, 0, w, h));
  if (!gdk_texture_save_to_png (texture, path)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "could not write %s", path);
    return FALSE;
  }
  return TRUE;
}

typedef struct {
  KinWindow *window;
  int step;
  int waited;                /* ticks spent waiting in the current step */
  guint clips_before;
  KinJob *job;
  GtkWindow *prefs;
  gboolean shot_live;
  int live_tries;
} SelfTest;

/* A frame may be between two draws; a few more tries before it counts as a failure. */
static gboolean
shoot_try (SelfTest *t, GtkWidget *widget, const char *name, int tries_left)
{
  g_autofree char *path = g_build_filename (t->window->self_test_dir, name, NULL);
  g_autoptr (GError) error = NULL;
  gboolean ok = kin_window_save_screenshot (widget, path, &error);
  if (!ok && tries_left > 0)
    return FALSE;
  CHECK (t->window, ok, "screenshot %s%s%s", path, error ? ": " : "", error ? error->message : "");
  return TRUE;
}

static void
shoot (SelfTest *t, GtkWidget *widget, const char *name)
{
  shoot_try (t, widget, name, 0);
}

/* The request the controls describe, as "W × H, N frames". */
static void
request_size (KinWindow *self, int *w, int *h, int *frames)
{
  KinRequest req;
  kin_window_fill_request (self, &req);
  *w = req.width;
  *h = req.height;
  *frames = req.frames;
  kin_request_clear (&req);
}

static int
max_offered_frames (KinWindow *self)
{
  int max = 0;
  for (guint i = 0; i < self->frame_counts->len; i++)
    max = MAX (max, g_array_index (self->frame_counts, int, i));
  return max;
}

static void
check_controls (SelfTest *t)
{
  KinWindow *self = t->window;
  const char *title = gtk_window_get_title (GTK_WINDOW (self));
  CHECK (self, title && strstr (title, kin_project_get_name (self->project)),
         "window title “%s” names the project", title ? title : "");
  int w = 0, h = 0, frames = 0;

  /* No transformer folder is set, so the test's pack stands in as the demo model: the list
   * starts with the one size it was trained on, selected. */
  GListModel *res = adw_combo_row_get_model (self->resolution_row);
  CHECK (self, self->demo_model, "the demo model is the active transformer");
  CHECK (self, res && g_list_model_get_n_items (res) == 6, "the demo size and five resolution classes offered");
  g_autoptr (GtkStringObject) first = res ? g_list_model_get_item (res, 0) : NULL;
  const char *label = first ? gtk_string_object_get_string (first) : "";
  CHECK (self, adw_combo_row_get_selected (self->resolution_row) == 0 && strstr (label, "64 × 64"),
         "the demo model's size “%s” is selected", label);
  request_size (self, &w, &h, &frames);
  CHECK (self, w == 64 && h == 64 && frames == 16, "the default request is 64 × 64, 16 frames (%d × %d, %d)",
         w, h, frames);
  const char *estimate = gtk_label_get_label (self->estimate_label);
  CHECK (self, g_str_has_prefix (estimate, "64 × 64 · "), "the estimate says so: %s", estimate);
  GListModel *ar = adw_combo_row_get_model (self->aspect_row);
  CHECK (self, ar && g_list_model_get_n_items (ar) == 1 && !gtk_widget_get_sensitive (GTK_WIDGET (self->aspect_row)),
         "the demo model's aspect ratio is fixed at 1:1");
  CHECK (self, self->frame_counts->len == 1 && max_offered_frames (self) == 16 &&
               !gtk_widget_get_sensitive (GTK_WIDGET (self->duration_row)),
         "the demo model's duration is fixed at 16 frames");
  g_autofree char *saved = g_settings_get_string (self->settings, "resolution");
  CHECK (self, g_strcmp0 (saved, "240p") == 0, "the saved resolution is kept for real models (%s)", saved);

  /* A real class stays available, with its own bucket. */
  adw_combo_row_set_selected (self->resolution_row, 2); /* 240p */
  g_autofree char *aspect = g_settings_get_string (self->settings, "aspect-ratio");
  double r = 0;
  kin_aspect_parse (aspect, &r);
  const KinBucket *b240 = kin_bucket_nearest (kin_resolution_class_find ("240p"), r);
  request_size (self, &w, &h, &frames);
  CHECK (self, w == b240->width && h == b240->height, "240p %s gives its bucket %d × %d (%d × %d)", aspect,
         b240->width, b240->height, w, h);
  ar = adw_combo_row_get_model (self->aspect_row);
  CHECK (self, ar && g_list_model_get_n_items (ar) >= 7 && gtk_widget_get_sensitive (GTK_WIDGET (self->aspect_row)),
         "aspect ratios 9:16 … 16:9 offered");
  /* 720p offers no clip longer than the model was trained on (32 frames). */
  adw_combo_row_set_selected (self->resolution_row, 5);
  CHECK (self, max_offered_frames (self) == 32, "720p durations stop at 32 frames (found %d)",
         max_offered_frames (self));
  adw_combo_row_set_selected (self->resolution_row, 1);
  CHECK (self, max_offered_frames (self) == 128, "144p durations reach 128 frames (found %d)",
         max_offered_frames (self));

  /* Choosing a transformer folder (as Preferences does) takes the demo entry away, and clearing
   * it brings it back. */
  const char *pack = g_getenv ("KINORA_DEMO_PACK");
  g_autofree char *transformer = g_build_filename (pack ? pack : g_get_tmp_dir (), "transformer", NULL);
  g_settings_set_string (self->settings, "transformer-folder", transformer);
  res = adw_combo_row_get_model (self->resolution_row);
  GtkStringObject *sel = adw_combo_row_get_selected_item (self->resolution_row);
  const char *name = sel ? gtk_string_object_get_string (sel) : "";
  CHECK (self, !self->demo_model && res && g_list_model_get_n_items (res) == 5 && g_strcmp0 (name, "144p") == 0,
         "with a transformer folder the five classes are offered and the last one chosen stays (%s)", name);
  g_settings_reset (self->settings, "transformer-folder");
  request_size (self, &w, &h, &frames);
  CHECK (self, self->demo_model && adw_combo_row_get_selected (self->resolution_row) == 0 &&
               w == 64 && h == 64 && frames == 16,
         "without one the demo size is back and selected (%d × %d, %d frames)", w, h, frames);

  CHECK (self, gtk_widget_get_visible (GTK_WIDGET (self->generate_button)), "Generate button shown");
  CHECK (self, gtk_text_buffer_get_enable_undo (gtk_text_view_get_buffer (self->prompt_view)),
         "prompt editor has undo");
}

static void
check_timeline (SelfTest *t)
{
  KinWindow *self = t->window;
  t->clips_before = g_list_model_get_n_items (kin_project_get_clips (self->project));
  CHECK (self, t->clips_before > 0, "timeline restored %u clips from disk", t->clips_before);
  CHECK (self, kin_window_get_selected_clip (self) != NULL, "the last clip is selected");
  const char *page = gtk_stack_get_visible_child_name (self->viewer_stack);
  CHECK (self, g_strcmp0 (page, "player") == 0, "the player shows the clip (page %s)", page);
  CHECK (self, gtk_video_get_media_stream (self->video) != NULL, "the clip's frames are loaded");
  CHECK (self, gtk_action_bar_get_revealed (self->clip_bar), "clip actions are shown");
  /* A frame of the clip becomes the image prompt, and goes again. */
  g_action_group_activate_action (G_ACTION_GROUP (self), "clip-use-frame", NULL);
  CHECK (self, self->image_rgb != NULL && self->image_w == kin_project_clip_get_width (kin_window_get_selected_clip (self)),
         "a frame of the clip is the image prompt");
  g_action_group_activate_action (G_ACTION_GROUP (self), "clear-image", NULL);
  CHECK (self, self->image_rgb == NULL, "the image prompt can be removed");
}

static void
queue_job (SelfTest *t)
{
  KinWindow *self = t->window;
  self->queue_paused = TRUE;
  gtk_adjustment_set_value (self->steps_adjustment, 10); /* a short job keeps the test quick */
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->prompt_view),
                            "a red ball bouncing on green grass, sunny day", -1);
  gtk_widget_activate_action (GTK_WIDGET (self), "win.generate", NULL);
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->jobs));
  CHECK (self, n == 1, "Generate queued one job");
  if (n == 1) {
    t->job = g_list_model_get_item (G_LIST_MODEL (self->jobs), 0);
    CHECK (self, kin_job_get_state (t->job) == KIN_JOB_QUEUED, "the job waits in the queue");
    CHECK (self, *kin_job_get_status (t->job) != '\0', "the waiting job shows a status: %s",
           kin_job_get_status (t->job));
    const KinRequest *req = kin_job_get_request (t->job);
    CHECK (self, req->width == 64 && req->height == 64 && req->frames == 16,
           "the job asks the demo model for 64 × 64, 16 frames (%d × %d, %d)", req->width, req->height,
           req->frames);
  }
  CHECK (self, gtk_list_box_get_row_at_index (self->queue_list, 0) != NULL, "the queue shows the job");
  g_auto (GStrv) history = g_settings_get_strv (self->settings, "prompt-history");
  CHECK (self, history[0] && strstr (history[0], "red ball"), "the prompt entered the history");
}

static gboolean
step (gpointer data)
{
  SelfTest *t = data;
  KinWindow *self = t->window;
  switch (t->step) {
  case 0: /* the window is mapped and the project's frames loaded */
    if ((!gtk_widget_get_mapped (GTK_WIDGET (self)) || self->project == NULL ||
         (self->playing != NULL && gtk_video_get_media_stream (self->video) == NULL)) &&
        t->waited++ < 100)
      return G_SOURCE_CONTINUE;
    check_controls (t);
    check_timeline (t);
    queue_job (t);
    break;
  case 1: /* let the viewer's crossfade finish */
    if (t->waited++ < 8)
      return G_SOURCE_CONTINUE;
    shoot (t, GTK_WIDGET (self), "main-window.png");
    /* The three folders set by hand (a model needs all three), to see their validation lines. */
    if (g_getenv ("KINORA_DEMO_PACK") != NULL) {
      const char *const keys[][2] = { { "transformer-folder", "transformer" },
                                      { "text-encoder-folder", "text_encoder" }, { "vae-folder", "vae" } };
      for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
        g_autofree char *dir = g_build_filename (g_getenv ("KINORA_DEMO_PACK"), keys[i][1], NULL);
        g_settings_set_string (self->settings, keys[i][0], dir);
      }
    }
    t->prefs = GTK_WINDOW (kin_preferences_new (KIN_APPLICATION (gtk_window_get_application (GTK_WINDOW (self))),
                                                GTK_WINDOW (self)));
    gtk_window_present (t->prefs);
    break;
  case 2:
    if (!gtk_widget_get_mapped (GTK_WIDGET (t->prefs)) && t->waited++ < 50)
      return G_SOURCE_CONTINUE;
    kin_preferences_check (KIN_PREFERENCES (t->prefs));
    break;
  case 3: /* the model check answers (the engine loads the pack on its thread) */
    if ((kin_preferences_get_checking (KIN_PREFERENCES (t->prefs)) && t->waited++ < 1200) ||
        t->waited++ < 5)
      return G_SOURCE_CONTINUE;
    {
      gboolean ok = FALSE;
      const char *result = kin_preferences_get_check_result (KIN_PREFERENCES (t->prefs), &ok);
      CHECK (self, ok && result && *result, "the model check describes the models: %s",
             result ? result : "(no answer)");
      const char *vae = kin_preferences_get_folder_status (KIN_PREFERENCES (t->prefs), "vae-folder");
      CHECK (self, g_getenv ("KINORA_DEMO_PACK") == NULL || (vae && strstr (vae, "tensors")),
             "the VAE folder row says what it holds: %s", vae ? vae : "");
    }
    shoot (t, GTK_WIDGET (t->prefs), "preferences.png");
    gtk_window_destroy (t->prefs);
    t->prefs = NULL;
    /* With no clip selected the viewer shows the whole clip denoising. */
    gtk_single_selection_set_selected (self->selection, GTK_INVALID_LIST_POSITION);
    kin_window_set_queue_paused (self, FALSE);
    break;
  case 4: /* the job runs to an end: a clip, or the engine's error shown in a toast */
    if (t->job != NULL && !t->shot_live && kin_job_get_state (t->job) == KIN_JOB_RUNNING &&
        kin_frame_stream_get_n_frames (kin_job_get_preview (t->job)) > 0 && kin_job_get_fraction (t->job) > 0.3) {
      if (!shoot_try (t, GTK_WIDGET (self), "generating.png", 20 - t->live_tries++))
        return G_SOURCE_CONTINUE;
      t->shot_live = TRUE;
      CHECK (self, g_strcmp0 (gtk_stack_get_visible_child_name (self->viewer_stack), "player") == 0 ||
                   g_strcmp0 (gtk_stack_get_visible_child_name (self->viewer_stack), "live") == 0,
             "the viewer stays usable while the job runs");
      CHECK (self, kin_job_get_eta (t->job) >= 0, "the running job has an ETA (%.0f s)", kin_job_get_eta (t->job));
    }
    if (t->job != NULL && !kin_job_is_finished (t->job) && t->waited++ < 2400)
      return G_SOURCE_CONTINUE;
    if (t->job != NULL) {
      KinJobState s = kin_job_get_state (t->job);
      CHECK (self, s == KIN_JOB_DONE,
             "the job ended (%s: %s)", s == KIN_JOB_DONE ? "done" : s == KIN_JOB_FAILED ? "failed" : "stuck",
             kin_job_get_status (t->job));
      if (s == KIN_JOB_DONE)
        CHECK (self, g_list_model_get_n_items (kin_project_get_clips (self->project)) == t->clips_before + 1,
               "the new clip is in the timeline");
    }
    break;
  case 5: /* extend the new clip: a conditioned job through the same queue */
    if (t->job != NULL && kin_job_get_state (t->job) == KIN_JOB_DONE) {
      g_clear_object (&t->job);
      GAction *extend = g_action_map_lookup_action (G_ACTION_MAP (self), "clip-extend");
      CHECK (self, extend && g_action_get_enabled (extend), "the new clip can be extended");
      g_action_activate (extend, NULL);
      guint n = g_list_model_get_n_items (G_LIST_MODEL (self->jobs));
      t->job = n > 0 ? g_list_model_get_item (G_LIST_MODEL (self->jobs), n - 1) : NULL;
      CHECK (self, t->job && kin_job_get_request (t->job)->cond == KIN_COND_EXTEND &&
                   kin_job_get_request (t->job)->cond_latents != NULL,
             "Extend queued a job conditioned on the clip's latents");
    }
    break;
  case 6:
    if (t->job != NULL && !kin_job_is_finished (t->job) && t->waited++ < 2400)
      return G_SOURCE_CONTINUE;
    if (t->job != NULL) {
      CHECK (self, kin_job_get_state (t->job) == KIN_JOB_DONE, "the extension finished (%s)",
             kin_job_get_status (t->job));
      guint n = g_list_model_get_n_items (kin_project_get_clips (self->project));
      CHECK (self, n == t->clips_before + 2, "the extension is in the timeline (%u clips)", n);
      /* Delete it again: the timeline shrinks and an undo toast appears. */
      g_action_group_activate_action (G_ACTION_GROUP (self), "clip-delete", NULL);
      CHECK (self, g_list_model_get_n_items (kin_project_get_clips (self->project)) == n - 1,
             "Delete takes the clip out of the timeline");
    }
    break;
  case 7: /* the new clip plays */
    if (t->waited++ < 15)
      return G_SOURCE_CONTINUE;
    {
      GtkMediaStream *m = gtk_video_get_media_stream (self->video);
      CHECK (self, m != NULL && gtk_media_stream_get_error (m) == NULL, "the new clip plays%s%s",
             m && gtk_media_stream_get_error (m) ? ": " : "",
             m && gtk_media_stream_get_error (m) ? gtk_media_stream_get_error (m)->message : "");
    }
    shoot (t, GTK_WIDGET (self), "after-job.png");
    break;
  default:
    g_print ("%d check(s) failed\n", self->self_test_failures);
    exit_status = self->self_test_failures > 0 ? 1 : 0;
    self->self_test_source = 0;
    g_clear_object (&t->job);
    g_free (t);
    gtk_window_close (GTK_WINDOW (self));
    return G_SOURCE_REMOVE;
  }
  t->step++;
  t->waited = 0;
  return G_SOURCE_CONTINUE;
}

void
kin_window_run_self_test (KinWindow *self, const char *dir)
{
  g_free (self->self_test_dir);
  self->self_test_dir = g_strdup (dir);
  g_mkdir_with_parents (dir, 0755);
  SelfTest *t = g_new0 (SelfTest, 1);
  t->window = self;
  /* Ticks of 100 ms leave GTK time to lay out and draw between steps. */
  self->self_test_source = g_timeout_add (100, step, t);
}
