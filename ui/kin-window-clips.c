/* kin-window-clips.c — the player, clip actions, the image prompt and project files. */
#include "kin-config.h"
#include "kin-window-private.h"
#include "kin-clip-row.h"
#include "kin-export.h"
#include "kin-frame-stream.h"
#include <glib/gi18n.h>

KinProjectClip *
kin_window_get_selected_clip (KinWindow *self)
{
  gpointer item = gtk_single_selection_get_selected_item (self->selection);
  return item != NULL ? KIN_PROJECT_CLIP (item) : NULL;
}

/* ================================================================ player */

typedef struct {
  KinWindow *window;
  KinProjectClip *clip;
  guint serial;
  guint8 *rgb;
  int frames, h, w;
} LoadData;

static void
load_data_free (LoadData *d)
{
  g_object_unref (d->window);
  g_object_unref (d->clip);
  g_free (d->rgb);
  g_free (d);
}

static void
load_frames_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  LoadData *d = data;
  GError *error = NULL;
  d->rgb = kin_project_clip_load_frames (d->clip, &d->frames, &d->h, &d->w, &error);
  if (d->rgb == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_frames_loaded (GObject *source, GAsyncResult *result, gpointer data)
{
  LoadData *d = g_task_get_task_data (G_TASK (result));
  KinWindow *self = d->window;
  g_autoptr (GError) error = NULL;
  if (!g_task_propagate_boolean (G_TASK (result), &error)) {
    if (d->serial == self->load_serial)
      kin_window_toast (self, error->message);
    return;
  }
  if (d->serial != self->load_serial || self->playing != d->clip)
    return; /* another clip was chosen meanwhile */
  g_autoptr (KinFrameStream) stream = kin_frame_stream_new (kin_project_clip_get_fps (d->clip));
  kin_frame_stream_set_frames (stream, d->rgb, d->frames, d->h, d->w);
  gtk_video_set_media_stream (self->video, GTK_MEDIA_STREAM (stream));
  gtk_media_stream_set_loop (GTK_MEDIA_STREAM (stream), TRUE);
  gtk_media_stream_play (GTK_MEDIA_STREAM (stream));
}

static void
update_clip_labels (KinWindow *self, KinProjectClip *clip)
{
  const KinRequest *r = kin_project_clip_get_request (clip);
  gtk_label_set_label (self->clip_title, kin_project_clip_get_prompt (clip));
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->clip_title), kin_project_clip_get_prompt (clip));
  g_autofree char *len = kin_describe_length (kin_project_clip_get_frames (clip),
                                              kin_project_clip_get_fps (clip));
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, r->seed);
  /* TRANSLATORS: "426 × 240 · 2.0 s · 16 frames · seed 42 · 30 steps" */
  g_autofree char *details = g_strdup_printf (_("%d × %d · %s · seed %s · %d steps"),
                                              kin_project_clip_get_width (clip),
                                              kin_project_clip_get_height (clip), len, seed,
                                              r->steps);
  gtk_label_set_label (self->clip_details, details);
}

static void load_frames (KinWindow *self, KinProjectClip *clip);

static void
on_media_error (KinWindow *self, GParamSpec *pspec, GtkMediaStream *media)
{
  const GError *error = gtk_media_stream_get_error (media);
  if (error == NULL || gtk_video_get_media_stream (self->video) != media || self->playing == NULL)
    return;
  g_message ("Playing the clip's frames instead of its video file: %s", error->message);
  load_frames (self, self->playing);
}

void
kin_window_show_clip (KinWindow *self, KinProjectClip *clip)
{
  if (clip == self->playing && clip != NULL)
    return;
  self->playing = clip;
  self->load_serial++;
  gtk_action_bar_set_revealed (self->clip_bar, clip != NULL);
  if (clip == NULL) {
    gtk_video_set_media_stream (self->video, NULL);
    if (self->running != NULL) {
      gtk_picture_set_paintable (self->live_picture,
                                 GDK_PAINTABLE (kin_job_get_preview (self->running)));
      gtk_stack_set_visible_child_name (self->viewer_stack, "live");
    } else {
      gtk_stack_set_visible_child_name (self->viewer_stack, "empty");
    }
    return;
  }
  update_clip_labels (self, clip);
  gtk_stack_set_visible_child_name (self->viewer_stack, "player");
  g_autofree char *video = g_getenv ("KINORA_PLAY_FRAMES") ? NULL : kin_project_clip_dup_video_path (clip);
  if (video != NULL) {
    /* GStreamer through GtkMediaFile; should it fail (no media backend, no decoder), the PNG
     * frames play instead. */
    g_autoptr (GtkMediaStream) media = gtk_media_file_new_for_filename (video);
    g_signal_connect_object (media, "notify::error", G_CALLBACK (on_media_error), self, G_CONNECT_SWAPPED);
    gtk_media_stream_set_loop (media, TRUE);
    gtk_video_set_media_stream (self->video, media);
    gtk_media_stream_play (media);
    return;
  }
  load_frames (self, clip);
}

static void
load_frames (KinWindow *self, KinProjectClip *clip)
{
  gtk_video_set_media_stream (self->video, NULL);
  LoadData *d = g_new0 (LoadData, 1);
  d->window = g_object_ref (self);
  d->clip = g_object_ref (clip);
  d->serial = self->load_serial;
  g_autoptr (GTask) task = g_task_new (NULL, self->cancellable, on_frames_loaded, NULL);
  g_task_set_task_data (task, d, (GDestroyNotify) load_data_free);
  g_task_run_in_thread (task, load_frames_thread);
}

/* The frame on screen, counted from 0. */
static int
current_frame (KinWindow *self, KinProjectClip *clip)
{
  GtkMediaStream *stream = gtk_video_get_media_stream (self->video);
  if (stream == NULL)
    return 0;
  if (KIN_IS_FRAME_STREAM (stream))
    return kin_frame_stream_get_current_frame (KIN_FRAME_STREAM (stream));
  gint64 ts = gtk_media_stream_get_timestamp (stream);
  int f = (int) (ts * kin_project_clip_get_fps (clip) / G_USEC_PER_SEC);
  return CLAMP (f, 0, kin_project_clip_get_frames (clip) - 1);
}

void
kin_window_update_clip_actions (KinWindow *self)
{
  KinProjectClip *clip = kin_window_get_selected_clip (self);
  const char *names[] = { "clip-extend", "clip-loop", "clip-use-frame", "clip-export",
                          "clip-reveal", "clip-delete" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    GAction *a = g_action_map_lookup_action (G_ACTION_MAP (self), names[i]);
    if (a != NULL)
      g_simple_action_set_enabled (G_SIMPLE_ACTION (a), clip != NULL);
  }
  /* Extending and looping need the clip's latents and a video (more than one frame). */
  gboolean has_latents = FALSE;
  if (clip != NULL) {
    g_autofree char *lat = kin_project_clip_dup_latents_path (clip);
    has_latents = lat != NULL && kin_project_clip_get_frames (clip) > 1;
  }
  const char *need_latents[] = { "clip-extend", "clip-loop" };
  for (guint i = 0; i < G_N_ELEMENTS (need_latents); i++) {
    GAction *a = g_action_map_lookup_action (G_ACTION_MAP (self), need_latents[i]);
    if (a != NULL)
      g_simple_action_set_enabled (G_SIMPLE_ACTION (a), has_latents);
  }
}

/* ================================================================ extend / loop */

static void
queue_conditioned (KinWindow *self, KinCondKind kind)
{
  KinProjectClip *clip = kin_window_get_selected_clip (self);
  if (clip == NULL)
    return;
  g_autoptr (GError) error = NULL;
  int c = 0, t = 0, h = 0, w = 0;
  g_autofree float *latents = kin_project_clip_load_latents (clip, &c, &t, &h, &w, &error);
  if (latents == NULL) {
    kin_window_show_error (self, _("The Clip Cannot Be Continued"), error);
    return;
  }
  const KinRequest *src = kin_project_clip_get_request (clip);
  KinRequest req;
  kin_window_fill_request (self, &req);
  if (*req.prompt == '\0') {
    g_free (req.prompt);
    req.prompt = g_strdup (src->prompt);
  }
  /* The new clip has the size of the one it continues. */
  req.height = src->height;
  req.width = src->width;
  if (kind == KIN_COND_LOOP)
    req.frames = kin_project_clip_get_frames (clip);
  if (!gtk_toggle_button_get_active (self->seed_lock_button))
    req.seed = g_random_int ();
  req.cond = kind;
  req.sampler = KIN_SAMPLER_IDDPM; /* frame conditioning is defined for IDDPM only */
  req.cond_latents = latents;
  req.cond_latent_channels = c;
  req.cond_latent_frames = t;
  req.cond_latent_h = h;
  req.cond_latent_w = w;
  g_autofree char *title = kind == KIN_COND_LOOP
                             ? g_strdup_printf (_("Loop: %s"), req.prompt)
                             : g_strdup_printf (_("Extension: %s"), req.prompt);
  g_autoptr (KinJob) job = kin_job_new (&req, title, (gsize) c * t * h * w);
  req.cond_latents = NULL;
  kin_request_clear (&req);
  kin_window_queue_job (self, job);
}

static void
clip_extend (GSimpleAction *a, GVariant *p, gpointer data)
{
  queue_conditioned (KIN_WINDOW (data), KIN_COND_EXTEND);
}

static void
clip_loop (GSimpleAction *a, GVariant *p, gpointer data)
{
  queue_conditioned (KIN_WINDOW (data), KIN_COND_LOOP);
}

/* ================================================================ image prompt */

void
kin_window_set_image_prompt (KinWindow *self, const guint8 *rgb, int w, int h)
{
  g_clear_pointer (&self->image_rgb, g_free);
  if (rgb == NULL) {
    gtk_picture_set_paintable (self->image_picture, NULL);
    gtk_stack_set_visible_child_name (self->image_stack, "hint");
    return;
  }
  self->image_rgb = g_memdup2 (rgb, (gsize) w * h * 3);
  self->image_w = w;
  self->image_h = h;
  g_autoptr (GBytes) bytes = g_bytes_new (rgb, (gsize) w * h * 3);
  g_autoptr (GdkTexture) tex = gdk_memory_texture_new (w, h, GDK_MEMORY_R8G8B8, bytes, w * 3);
  gtk_picture_set_paintable (self->image_picture, GDK_PAINTABLE (tex));
  g_autofree char *label = g_strdup_printf (_("Next clip starts from this image (%d × %d)"), w, h);
  gtk_label_set_label (self->image_label, label);
  gtk_stack_set_visible_child_name (self->image_stack, "image");
}

void
kin_window_set_image_prompt_texture (KinWindow *self, GdkTexture *texture)
{
  int w = gdk_texture_get_width (texture), h = gdk_texture_get_height (texture);
  gsize stride = (gsize) w * 4;
  g_autofree guint8 *argb = g_malloc (stride * h);
  /* gdk_texture_download gives premultiplied CAIRO_FORMAT_ARGB32: B, G, R, A in memory order on
   * little-endian machines; transparent parts become black, as the model has no alpha. */
  gdk_texture_download (texture, argb, stride);
  g_autofree guint8 *rgb = g_malloc ((gsize) w * h * 3);
  for (gsize i = 0; i < (gsize) w * h; i++) {
    guint32 px = ((guint32 *) argb)[i];
    rgb[i * 3 + 0] = (px >> 16) & 0xff;
    rgb[i * 3 + 1] = (px >> 8) & 0xff;
    rgb[i * 3 + 2] = px & 0xff;
  }
  kin_window_set_image_prompt (self, rgb, w, h);
}

static gboolean
on_drop (GtkDropTarget *target, const GValue *value, double x, double y, KinWindow *self)
{
  g_autoptr (GdkTexture) texture = NULL;
  g_autoptr (GError) error = NULL;
  if (G_VALUE_HOLDS (value, GDK_TYPE_TEXTURE))
    texture = g_value_dup_object (value);
  else if (G_VALUE_HOLDS (value, G_TYPE_FILE))
    texture = gdk_texture_new_from_file (g_value_get_object (value), &error);
  if (texture == NULL) {
    kin_window_toast (self, error ? error->message : _("Only images can be dropped here"));
    return FALSE;
  }
  kin_window_set_image_prompt_texture (self, texture);
  kin_window_toast (self, _("The next clip will start from the dropped image"));
  return TRUE;
}

static void
on_image_chosen (GtkNativeDialog *dialog, int response, KinWindow *self)
{
  if (response == GTK_RESPONSE_ACCEPT) {
    g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
    g_autoptr (GError) error = NULL;
    g_autoptr (GdkTexture) texture = gdk_texture_new_from_file (file, &error);
    if (texture == NULL)
      kin_window_show_error (self, _("The Image Could Not Be Read"), error);
    else
      kin_window_set_image_prompt_texture (self, texture);
  }
  g_object_unref (dialog);
}

static void
choose_image (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  GtkFileChooserNative *dialog = gtk_file_chooser_native_new (_("Choose an Image Prompt"), GTK_WINDOW (self),
                                                              GTK_FILE_CHOOSER_ACTION_OPEN, _("_Use"), NULL);
  g_autoptr (GtkFileFilter) filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (filter, _("Images"));
  gtk_file_filter_add_pixbuf_formats (filter);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (dialog), filter);
  g_signal_connect (dialog, "response", G_CALLBACK (on_image_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (dialog));
}

static void
clear_image (GSimpleAction *a, GVariant *p, gpointer data)
{
  kin_window_set_image_prompt (KIN_WINDOW (data), NULL, 0, 0);
}

static void
clip_use_frame (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  KinProjectClip *clip = kin_window_get_selected_clip (self);
  if (clip == NULL)
    return;
  int frame = current_frame (self, clip);
  g_autofree char *path = kin_project_clip_dup_frame_path (clip, frame);
  g_autoptr (GError) error = NULL;
  g_autoptr (GdkTexture) texture = gdk_texture_new_from_filename (path, &error);
  if (texture == NULL) {
    kin_window_show_error (self, _("The Frame Could Not Be Read"), error);
    return;
  }
  kin_window_set_image_prompt_texture (self, texture);
  g_autofree char *msg = g_strdup_printf (_("Frame %d is the image prompt of the next clip"), frame + 1);
  kin_window_toast (self, msg);
}

/* ================================================================ export */

typedef struct {
  KinProjectClip *clip;
  char *path;
  KinExportFormat format;
} ExportData;

static void
export_data_free (ExportData *d)
{
  g_object_unref (d->clip);
  g_free (d->path);
  g_free (d);
}

static void
export_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  ExportData *d = data;
  GError *error = NULL;
  int frames, h, w;
  g_autofree guint8 *rgb = kin_project_clip_load_frames (d->clip, &frames, &h, &w, &error);
  if (rgb == NULL || !kin_export_frames (rgb, frames, h, w, kin_project_clip_get_fps (d->clip),
                                         kin_project_clip_get_request (d->clip), d->path, d->format,
                                         cancellable, &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_exported (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (KinWindow) self = data;
  ExportData *d = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;
  if (!g_task_propagate_boolean (G_TASK (result), &error)) {
    kin_window_show_error (self, _("Export Failed"), error);
    return;
  }
  g_autofree char *name = g_path_get_basename (d->path);
  g_autofree char *text = g_strdup_printf (_("Exported “%s”"), name);
  AdwToast *toast = adw_toast_new (text);
  adw_toast_set_button_label (toast, _("Show"));
  adw_toast_set_detailed_action_name (toast, "win.reveal-path");
  adw_toast_set_action_target_value (toast, g_variant_new_string (d->path));
  adw_toast_overlay_add_toast (self->toast_overlay, toast);
}

static const char *const format_ids[] = { "mp4", "webm", "png", "gif" };

static void
on_export_response (GtkNativeDialog *dialog, int response, KinWindow *self)
{
  KinProjectClip *clip = g_object_get_data (G_OBJECT (dialog), "clip");
  if (response == GTK_RESPONSE_ACCEPT && clip != NULL) {
    g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
    const char *choice = gtk_file_chooser_get_choice (GTK_FILE_CHOOSER (dialog), "format");
    KinExportFormat format = KIN_EXPORT_MP4;
    if (choice == NULL || !kin_export_format_from_name (choice, &format))
      format = kin_export_format_for_path (g_file_peek_path (file));
    g_autofree char *path = g_file_get_path (file);
    /* The extension follows the format chosen; a PNG sequence is a folder. */
    char *dot = strrchr (path, '.');
    char *slash = strrchr (path, '/');
    if (dot != NULL && (slash == NULL || dot > slash))
      *dot = '\0';
    ExportData *d = g_new0 (ExportData, 1);
    d->clip = g_object_ref (clip);
    d->format = format;
    d->path = format == KIN_EXPORT_PNG ? g_strdup (path)
                                       : g_strdup_printf ("%s.%s", path, kin_export_format_name (format));
    g_settings_set_enum (self->settings, "default-export-format", (int) format);
    g_autoptr (GTask) task = g_task_new (NULL, self->cancellable, on_exported, g_object_ref (self));
    g_task_set_task_data (task, d, (GDestroyNotify) export_data_free);
    g_task_run_in_thread (task, export_thread);
    kin_window_toast (self, _("Exporting…"));
  }
  g_object_unref (dialog);
}

static void
clip_export (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  KinProjectClip *clip = kin_window_get_selected_clip (self);
  if (clip == NULL)
    return;
  GtkFileChooserNative *dialog = gtk_file_chooser_native_new (_("Export Clip"), GTK_WINDOW (self),
                                                              GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"), NULL);
  const char *labels[] = { _("MP4 video (H.264)"), _("WebM video (VP9)"), _("PNG pictures (a folder)"),
                           _("Animated GIF"), NULL };
  gtk_file_chooser_add_choice (GTK_FILE_CHOOSER (dialog), "format", _("Format"),
                               (const char **) format_ids, labels);
  int fmt = g_settings_get_enum (self->settings, "default-export-format");
  gtk_file_chooser_set_choice (GTK_FILE_CHOOSER (dialog), "format",
                               format_ids[CLAMP (fmt, 0, (int) G_N_ELEMENTS (format_ids) - 1)]);
  /* A name from the prompt: its first words. */
  g_autofree char *name = g_strndup (kin_project_clip_get_prompt (clip), 40);
  g_strdelimit (name, "/\\:*?\"<>|\n", ' ');
  g_strstrip (name);
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (dialog), *name ? name : _("Clip"));
  const char *videos = g_get_user_special_dir (G_USER_DIRECTORY_VIDEOS);
  if (videos != NULL) {
    g_autoptr (GFile) folder = g_file_new_for_path (videos);
    gtk_file_chooser_set_current_folder (GTK_FILE_CHOOSER (dialog), folder, NULL);
  }
  g_object_set_data_full (G_OBJECT (dialog), "clip", g_object_ref (clip), g_object_unref);
  g_signal_connect (dialog, "response", G_CALLBACK (on_export_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (dialog));
}

/* ================================================================ reveal */

static void
on_show_items (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autofree char *uri = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) ret = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (ret == NULL) {
    /* No file manager service: open the folder that holds the item instead. */
    g_autoptr (GFile) file = g_file_new_for_uri (uri);
    g_autoptr (GFile) parent = g_file_get_parent (file);
    g_autofree char *puri = g_file_get_uri (parent ? parent : file);
    g_app_info_launch_default_for_uri_async (puri, NULL, NULL, NULL, NULL);
  }
}

static void
reveal_path (const char *path)
{
  g_autoptr (GFile) file = g_file_new_for_path (path);
  char *uri = g_file_get_uri (file);
  GDBusConnection *bus = g_application_get_dbus_connection (g_application_get_default ());
  if (bus == NULL) {
    g_app_info_launch_default_for_uri_async (uri, NULL, NULL, NULL, NULL);
    g_free (uri);
    return;
  }
  const char *uris[] = { uri, NULL };
  g_dbus_connection_call (bus, "org.freedesktop.FileManager1", "/org/freedesktop/FileManager1",
                          "org.freedesktop.FileManager1", "ShowItems",
                          g_variant_new ("(^ass)", uris, ""), NULL, G_DBUS_CALL_FLAGS_NONE, 5000,
                          NULL, on_show_items, uri);
}

static void
clip_reveal (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinProjectClip *clip = kin_window_get_selected_clip (KIN_WINDOW (data));
  if (clip == NULL)
    return;
  g_autofree char *video = kin_project_clip_dup_video_path (clip);
  g_autofree char *dir = kin_project_clip_dup_dir (clip);
  reveal_path (video ? video : dir);
}

static void
reveal_path_action (GSimpleAction *a, GVariant *p, gpointer data)
{
  reveal_path (g_variant_get_string (p, NULL));
}

static void
reveal_project (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  if (self->project != NULL)
    reveal_path (kin_project_get_path (self->project));
}

/* ================================================================ delete with undo */

typedef struct {
  KinWindow *window;
  KinProject *project;
  KinProjectClip *clip;
  int position;
  gboolean undone;
} DeleteData;

static void
on_delete_undo (AdwToast *toast, DeleteData *d)
{
  g_autoptr (GError) error = NULL;
  d->undone = TRUE;
  if (!kin_project_restore_clip (d->project, d->clip, (guint) d->position, &error))
    kin_window_show_error (d->window, _("The Clip Could Not Be Restored"), error);
  else if (d->project == d->window->project)
    gtk_single_selection_set_selected (d->window->selection, (guint) d->position);
}

static void
on_delete_dismissed (AdwToast *toast, DeleteData *d)
{
  g_autoptr (GError) error = NULL;
  if (!d->undone && !kin_project_purge_clip (d->project, d->clip, &error))
    g_warning ("%s", error->message);
  g_object_unref (d->window);
  g_object_unref (d->project);
  g_object_unref (d->clip);
  g_free (d);
}

static void
clip_delete (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  KinProjectClip *clip = kin_window_get_selected_clip (self);
  if (clip == NULL)
    return;
  DeleteData *d = g_new0 (DeleteData, 1);
  d->window = g_object_ref (self);
  d->project = g_object_ref (self->project);
  d->clip = g_object_ref (clip);
  g_autoptr (GError) error = NULL;
  d->position = kin_project_remove_clip (self->project, clip, &error);
  if (d->position < 0) {
    kin_window_show_error (self, _("The Clip Could Not Be Deleted"), error);
    d->undone = TRUE;
    on_delete_dismissed (NULL, d);
    return;
  }
  guint n = g_list_model_get_n_items (kin_project_get_clips (self->project));
  if (n > 0)
    gtk_single_selection_set_selected (self->selection, MIN ((guint) d->position, n - 1));
  AdwToast *toast = adw_toast_new (_("Clip deleted"));
  adw_toast_set_button_label (toast, _("_Undo"));
  adw_toast_set_priority (toast, ADW_TOAST_PRIORITY_HIGH);
  g_signal_connect (toast, "button-clicked", G_CALLBACK (on_delete_undo), d);
  g_signal_connect (toast, "dismissed", G_CALLBACK (on_delete_dismissed), d);
  adw_toast_overlay_add_toast (self->toast_overlay, toast);
}

/* ================================================================ project files */

static void
new_project (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  g_autofree char *dir = kin_application_dup_projects_dir ();
  g_autofree char *path = kin_project_make_unique_path (dir, _("Untitled"));
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) project = kin_project_create (path, &error);
  if (project == NULL) {
    kin_window_show_error (self, _("No Project Could Be Created"), error);
    return;
  }
  kin_window_set_project (self, project);
  kin_window_toast (self, _("New project created; it saves itself as you go"));
}

static void
on_open_response (GtkNativeDialog *dialog, int response, KinWindow *self)
{
  if (response == GTK_RESPONSE_ACCEPT) {
    g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
    kin_window_open_project (self, g_file_peek_path (file));
  }
  g_object_unref (dialog);
}

static void
open_project (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  GtkFileChooserNative *dialog = gtk_file_chooser_native_new (_("Open Project"), GTK_WINDOW (self),
                                                              GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
                                                              _("_Open"), NULL);
  g_autofree char *dir = kin_application_dup_projects_dir ();
  g_autoptr (GFile) folder = g_file_new_for_path (dir);
  gtk_file_chooser_set_current_folder (GTK_FILE_CHOOSER (dialog), folder, NULL);
  g_signal_connect (dialog, "response", G_CALLBACK (on_open_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (dialog));
}

static void
open_recent (GSimpleAction *a, GVariant *p, gpointer data)
{
  kin_window_open_project (KIN_WINDOW (data), g_variant_get_string (p, NULL));
}

static void
on_save_as_response (GtkNativeDialog *dialog, int response, KinWindow *self)
{
  if (response == GTK_RESPONSE_ACCEPT && self->project != NULL) {
    g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
    g_autoptr (GError) error = NULL;
    if (!kin_project_save_as (self->project, g_file_peek_path (file), &error))
      kin_window_show_error (self, _("The Project Could Not Be Saved"), error);
    else
      kin_window_set_project (self, self->project);
  }
  g_object_unref (dialog);
}

static void
save_project_as (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinWindow *self = KIN_WINDOW (data);
  if (self->project == NULL)
    return;
  GtkFileChooserNative *dialog = gtk_file_chooser_native_new (_("Save Project As"), GTK_WINDOW (self),
                                                              GTK_FILE_CHOOSER_ACTION_SAVE, _("_Save"), NULL);
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (dialog), kin_project_get_name (self->project));
  g_signal_connect (dialog, "response", G_CALLBACK (on_save_as_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (dialog));
}

/* ================================================================ setup */

void
kin_window_add_clip_actions (KinWindow *self, GActionMap *map)
{
  static const GActionEntry entries[] = {
    { "clip-extend", clip_extend },
    { "clip-loop", clip_loop },
    { "clip-use-frame", clip_use_frame },
    { "clip-export", clip_export },
    { "clip-reveal", clip_reveal },
    { "clip-delete", clip_delete },
    { "choose-image", choose_image },
    { "clear-image", clear_image },
    { "reveal-path", reveal_path_action, "s" },
  };
  g_action_map_add_action_entries (map, entries, G_N_ELEMENTS (entries), self);
  kin_window_update_clip_actions (self);
}

void
kin_window_add_project_actions (KinWindow *self, GActionMap *map)
{
  static const GActionEntry entries[] = {
    { "new-project", new_project },
    { "open-project", open_project },
    { "open-recent", open_recent, "s" },
    { "save-project-as", save_project_as },
    { "reveal-project", reveal_project },
  };
  g_action_map_add_action_entries (map, entries, G_N_ELEMENTS (entries), self);
}

void
kin_window_clips_init (KinWindow *self)
{
  GtkDropTarget *drop = gtk_drop_target_new (G_TYPE_INVALID, GDK_ACTION_COPY);
  GType types[] = { GDK_TYPE_TEXTURE, G_TYPE_FILE };
  gtk_drop_target_set_gtypes (drop, types, G_N_ELEMENTS (types));
  g_signal_connect (drop, "drop", G_CALLBACK (on_drop), self);
  gtk_widget_add_controller (self->prompt_card, GTK_EVENT_CONTROLLER (drop));
}

void
kin_window_clips_dispose (KinWindow *self)
{
  self->playing = NULL;
  if (self->video != NULL)
    gtk_video_set_media_stream (self->video, NULL);
}
