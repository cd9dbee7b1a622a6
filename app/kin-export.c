/* kin-export.c — clip export through GStreamer (MP4, WebM, PNG) and giflib (GIF). */
#include "kin-export.h"
#include "kin-error.h"
#include <errno.h>
#include <gif_lib.h>
#include <glib/gstdio.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <string.h>

static const char *const format_names[] = { "mp4", "webm", "png", "gif" };

const char *
kin_export_format_name (KinExportFormat f)
{
  return (unsigned) f < G_N_ELEMENTS (format_names) ? format_names[f] : "mp4";
}

gboolean
kin_export_format_from_name (const char *name, KinExportFormat *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (format_names); i++)
    if (g_ascii_strcasecmp (name, format_names[i]) == 0) {
      *out = (KinExportFormat) i;
      return TRUE;
    }
  return FALSE;
}

KinExportFormat
kin_export_format_for_path (const char *path)
{
  const char *dot = strrchr (path, '.');
  const char *slash = strrchr (path, '/');
  KinExportFormat f;
  if (dot && (!slash || dot > slash) && kin_export_format_from_name (dot + 1, &f))
    return f;
  if (dot && (!slash || dot > slash) && g_ascii_strcasecmp (dot + 1, "mkv") == 0)
    return KIN_EXPORT_WEBM;
  return KIN_EXPORT_PNG;
}

static char *
request_json (const KinRequest *req, int frames, int height, int width, int fps)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "generator");
  json_builder_add_string_value (b, "Kinora");
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "frames");
  json_builder_add_int_value (b, frames);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, height);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, width);
  json_builder_set_member_name (b, "fps");
  json_builder_add_int_value (b, fps);
  if (req) {
    json_builder_set_member_name (b, "request");
    json_builder_add_value (b, kin_request_to_json (req));
  }
  json_builder_end_object (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

gboolean
kin_export_write_sidecar (const KinRequest *request, int frames, int height, int width, int fps,
                          const char *path, GError **error)
{
  g_autofree char *json = request_json (request, frames, height, width, fps);
  g_autofree char *side = g_strconcat (path, ".json", NULL);
  g_autoptr (GError) local = NULL;
  if (!g_file_set_contents (side, json, -1, &local)) { /* atomic: temp file + rename */
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot write %s: %s", side, local->message);
    return FALSE;
  }
  return TRUE;
}

/* --- GStreamer --- */

static gboolean
gst_ready (GError **error)
{
  static gsize once = 0;
  static gboolean ok = FALSE;
  if (g_once_init_enter (&once)) {
    ok = gst_init_check (NULL, NULL, NULL);
    g_once_init_leave (&once, 1);
  }
  if (!ok)
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED, "GStreamer could not be initialised");
  return ok;
}

static gboolean
have_elements (const char *const *names, GError **error)
{
  for (int i = 0; names[i]; i++) {
    g_autoptr (GstElementFactory) f = gst_element_factory_find (names[i]);
    if (f == NULL) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                   "the GStreamer element %s is not installed (Debian: gstreamer1.0-plugins-good/-bad/-ugly)",
                   names[i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* Runs until EOS or error; FALSE with @error on error. */
static gboolean
wait_bus (GstElement *pipe, GError **error)
{
  g_autoptr (GstBus) bus = gst_element_get_bus (pipe);
  for (;;) {
    g_autoptr (GstMessage) msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
                                                             GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    if (msg == NULL) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "GStreamer stalled for a minute");
      return FALSE;
    }
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS)
      return TRUE;
    g_autoptr (GError) gerr = NULL;
    g_autofree char *dbg = NULL;
    gst_message_parse_error (msg, &gerr, &dbg);
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "GStreamer: %s", gerr->message);
    return FALSE;
  }
}

static gboolean
encode_with_gst (const guint8 *rgb, int frames, int height, int width, int fps, const char *encoder,
                 const char *muxer, const char *location, gboolean multifile, const KinRequest *req,
                 GCancellable *cancellable, GError **error)
{
  g_autofree char *enc_name = g_strndup (encoder, strcspn (encoder, " !"));
  const char *needed[] = { "appsrc", "videoconvert", enc_name, muxer ? muxer : "multifilesink", NULL };
  if (!gst_ready (error) || !have_elements (needed, error))
    return FALSE;
  g_autofree char *loc = g_strescape (location, NULL);
  g_autofree char *desc = multifile
    ? g_strdup_printf ("appsrc name=src format=time ! videoconvert ! %s ! multifilesink location=\"%s\" index=1",
                       encoder, loc)
    : g_strdup_printf ("appsrc name=src format=time ! videoconvert ! %s ! %s name=mux ! filesink location=\"%s\"",
                       encoder, muxer, loc);
  g_autoptr (GError) perr = NULL;
  g_autoptr (GstElement) pipe = gst_parse_launch (desc, &perr);
  if (pipe == NULL || perr != NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED, "cannot build the export pipeline: %s",
                 perr->message);
    return FALSE;
  }
  g_autoptr (GstElement) src = gst_bin_get_by_name (GST_BIN (pipe), "src");
  g_autoptr (GstCaps) caps = gst_caps_new_simple ("video/x-raw", "format", G_TYPE_STRING, "RGB", "width",
                                                  G_TYPE_INT, width, "height", G_TYPE_INT, height,
                                                  "framerate", GST_TYPE_FRACTION, fps, 1, NULL);
  g_object_set (src, "caps", caps, NULL);
  g_autoptr (GstElement) mux = gst_bin_get_by_name (GST_BIN (pipe), "mux");
  if (mux && GST_IS_TAG_SETTER (mux) && req) {
    g_autofree char *json = request_json (req, frames, height, width, fps);
    gst_tag_setter_add_tags (GST_TAG_SETTER (mux), GST_TAG_MERGE_REPLACE, GST_TAG_TITLE,
                             req->prompt ? req->prompt : "", GST_TAG_COMMENT, json,
                             GST_TAG_ENCODER, "Kinora", NULL);
  }
  gst_element_set_state (pipe, GST_STATE_PLAYING);
  /* RGB rows in GStreamer are padded to 4 bytes */
  int stride = GST_ROUND_UP_4 (width * 3);
  gboolean ok = TRUE;
  for (int f = 0; f < frames && ok; f++) {
    if (g_cancellable_set_error_if_cancelled (cancellable, error)) {
      ok = FALSE;
      break;
    }
    GstBuffer *buf = gst_buffer_new_allocate (NULL, (gsize) stride * height, NULL);
    GstMapInfo map;
    gst_buffer_map (buf, &map, GST_MAP_WRITE);
    for (int y = 0; y < height; y++)
      memcpy (map.data + (gsize) y * stride, rgb + ((gsize) f * height + y) * width * 3, (gsize) width * 3);
    gst_buffer_unmap (buf, &map);
    GST_BUFFER_PTS (buf) = gst_util_uint64_scale (f, GST_SECOND, fps);
    GST_BUFFER_DURATION (buf) = gst_util_uint64_scale (1, GST_SECOND, fps);
    ok = gst_app_src_push_buffer (GST_APP_SRC (src), buf) == GST_FLOW_OK;
  }
  if (ok) {
    gst_app_src_end_of_stream (GST_APP_SRC (src));
    ok = wait_bus (pipe, error);
  } else if (error && *error == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "the encoder refused a frame");
  }
  gst_element_set_state (pipe, GST_STATE_NULL);
  return ok;
}

/* --- GIF --- */

/* A 256-colour palette by popularity over a 5-5-5 histogram, then nearest-colour mapping. */
static void
build_palette (const guint8 *rgb, size_t pixels, GifColorType *pal, int *n)
{
  g_autofree guint32 *hist = g_new0 (guint32, 32768);
  for (size_t i = 0; i < pixels; i++) {
    const guint8 *p = rgb + i * 3;
    hist[((p[0] >> 3) << 10) | ((p[1] >> 3) << 5) | (p[2] >> 3)]++;
  }
  *n = 0;
  for (int k = 0; k < 256; k++) {
    guint32 best = 0;
    int bi = -1;
    for (int i = 0; i < 32768; i++)
      if (hist[i] > best)
        best = hist[i], bi = i;
    if (bi < 0)
      break;
    hist[bi] = 0;
    pal[k].Red = (GifByteType) (((bi >> 10) & 31) * 255 / 31);
    pal[k].Green = (GifByteType) (((bi >> 5) & 31) * 255 / 31);
    pal[k].Blue = (GifByteType) ((bi & 31) * 255 / 31);
    (*n)++;
  }
  for (int k = *n; k < 256; k++)
    pal[k] = pal[0];
  if (*n == 0)
    *n = 1;
}

static gboolean
write_gif (const guint8 *rgb, int frames, int height, int width, int fps, const KinRequest *req,
           const char *path, GCancellable *cancellable, GError **error)
{
  int err = 0;
  GifFileType *gif = EGifOpenFileName (path, FALSE, &err);
  if (gif == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot write %s: %s", path, GifErrorString (err));
    return FALSE;
  }
  GifColorType pal[256];
  int ncol;
  build_palette (rgb, (size_t) frames * height * width, pal, &ncol);
  ColorMapObject *cmap = GifMakeMapObject (256, pal);
  g_autofree GifByteType *line = g_new (GifByteType, width);
  g_autofree gint16 *cache = g_new (gint16, 32768);
  for (int i = 0; i < 32768; i++)
    cache[i] = -1;
  gboolean ok = EGifPutScreenDesc (gif, width, height, 8, 0, cmap) == GIF_OK;
  EGifSetGifVersion (gif, TRUE);
  /* loop forever (NETSCAPE2.0) */
  GifByteType app[] = "NETSCAPE2.0", sub[] = { 1, 0, 0 };
  ok = ok && EGifPutExtensionLeader (gif, APPLICATION_EXT_FUNC_CODE) == GIF_OK &&
       EGifPutExtensionBlock (gif, 11, app) == GIF_OK && EGifPutExtensionBlock (gif, 3, sub) == GIF_OK &&
       EGifPutExtensionTrailer (gif) == GIF_OK;
  if (ok && req) {
    g_autofree char *json = request_json (req, frames, height, width, fps);
    size_t len = strlen (json);
    ok = EGifPutExtensionLeader (gif, COMMENT_EXT_FUNC_CODE) == GIF_OK;
    for (size_t off = 0; ok && off < len; off += 255)
      ok = EGifPutExtensionBlock (gif, (int) MIN (255, len - off), json + off) == GIF_OK;
    ok = ok && EGifPutExtensionTrailer (gif) == GIF_OK;
  }
  int delay = MAX (2, (100 + fps / 2) / MAX (fps, 1));
  for (int f = 0; ok && f < frames; f++) {
    if (g_cancellable_set_error_if_cancelled (cancellable, error)) {
      ok = FALSE;
      break;
    }
    GraphicsControlBlock gcb = { .DisposalMode = DISPOSE_DO_NOT, .DelayTime = delay, .TransparentColor = NO_TRANSPARENT_COLOR };
    GifByteType ext[4];
    EGifGCBToExtension (&gcb, ext);
    ok = EGifPutExtension (gif, GRAPHICS_EXT_FUNC_CODE, 4, ext) == GIF_OK &&
         EGifPutImageDesc (gif, 0, 0, width, height, FALSE, NULL) == GIF_OK;
    for (int y = 0; ok && y < height; y++) {
      for (int x = 0; x < width; x++) {
        const guint8 *p = rgb + (((size_t) f * height + y) * width + x) * 3;
        int key = ((p[0] >> 3) << 10) | ((p[1] >> 3) << 5) | (p[2] >> 3);
        if (cache[key] < 0) {
          int best = 0, bd = G_MAXINT;
          for (int k = 0; k < ncol; k++) {
            int dr = pal[k].Red - p[0], dg = pal[k].Green - p[1], db = pal[k].Blue - p[2];
            int d = dr * dr + dg * dg + db * db;
            if (d < bd)
              bd = d, best = k;
          }
          cache[key] = (gint16) best;
        }
        line[x] = (GifByteType) cache[key];
      }
      ok = EGifPutLine (gif, line, width) == GIF_OK;
    }
  }
  GifFreeMapObject (cmap);
  if (EGifCloseFile (gif, &err) != GIF_OK)
    ok = FALSE;
  if (!ok && error && *error == NULL)
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot write %s (disk full?)", path);
  return ok;
}

/* --- entry points --- */

static void
remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name (d)) != NULL) {
      g_autofree char *p = g_build_filename (path, name, NULL);
      g_unlink (p);
    }
    g_rmdir (path);
  } else {
    g_unlink (path);
  }
}

gboolean
kin_export_frames (const guint8 *rgb, int frames, int height, int width, int fps,
                   const KinRequest *request, const char *path, KinExportFormat format,
                   GCancellable *cancellable, GError **error)
{
  if (frames < 1 || height < 1 || width < 1 || fps < 1 || rgb == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "nothing to export (%d frames of %d×%d at %d fps)",
                 frames, width, height, fps);
    return FALSE;
  }
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *tmp = g_strdup_printf ("%s/.%s.partial-%08x", dir, base, g_random_int ());
  gboolean ok;
  switch (format) {
  case KIN_EXPORT_PNG: {
    if (g_mkdir (tmp, 0755) != 0) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot create a folder in %s", dir);
      return FALSE;
    }
    g_autofree char *pattern = g_build_filename (tmp, "frame-%04d.png", NULL);
    ok = encode_with_gst (rgb, frames, height, width, fps, "pngenc", NULL, pattern, TRUE, request,
                          cancellable, error);
    break;
  }
  case KIN_EXPORT_GIF:
    ok = write_gif (rgb, frames, height, width, fps, request, tmp, cancellable, error);
    break;
  case KIN_EXPORT_WEBM:
    ok = encode_with_gst (rgb, frames, height, width, fps, "vp9enc deadline=1 cpu-used=8 end-usage=cq cq-level=16 target-bitrate=4000000",
                          "webmmux", tmp, FALSE, request, cancellable, error);
    break;
  case KIN_EXPORT_MP4:
  default:
    ok = encode_with_gst (rgb, frames, height, width, fps,
                          "x264enc speed-preset=medium pass=quant quantizer=16 ! video/x-h264,profile=high",
                          "mp4mux", tmp, FALSE, request, cancellable, error);
    break;
  }
  if (ok && g_file_test (path, G_FILE_TEST_IS_DIR) && format == KIN_EXPORT_PNG)
    remove_tree (path); /* replace an earlier export of the same name */
  if (ok && g_rename (tmp, path) != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot move the export into place at %s: %s",
                 path, g_strerror (errno));
    ok = FALSE;
  }
  if (!ok) {
    remove_tree (tmp);
    return FALSE;
  }
  if (!kin_export_write_sidecar (request, frames, height, width, fps, path, error))
    return FALSE;
  return TRUE;
}

gboolean
kin_export_clip (const KinClip *clip, const char *path, KinExportFormat format, GCancellable *cancellable,
                 GError **error)
{
  return kin_export_frames (clip->rgb, clip->frames, clip->height, clip->width, clip->fps, &clip->request,
                            path, format, cancellable, error);
}

guint8 *
kin_import_frames (const char *path, int *frames, int *height, int *width, int *fps, GError **error)
{
  const char *needed[] = { "appsink", "videoconvert", NULL };
  if (!gst_ready (error) || !have_elements (needed, error))
    return NULL;
  g_autofree char *desc = NULL;
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_autofree char *pat = g_build_filename (path, "frame-%04d.png", NULL);
    g_autofree char *esc = g_strescape (pat, NULL);
    desc = g_strdup_printf ("multifilesrc location=\"%s\" index=1 caps=image/png,framerate=8/1 ! pngdec ! "
                            "videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false", esc);
  } else if (g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    g_autofree char *esc = g_strescape (path, NULL);
    desc = g_strdup_printf ("filesrc location=\"%s\" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! "
                            "appsink name=sink sync=false", esc);
  } else {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "%s does not exist", path);
    return NULL;
  }
  g_autoptr (GError) perr = NULL;
  g_autoptr (GstElement) pipe = gst_parse_launch (desc, &perr);
  if (pipe == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED, "cannot read %s: %s", path, perr->message);
    return NULL;
  }
  g_autoptr (GstElement) sink = gst_bin_get_by_name (GST_BIN (pipe), "sink");
  gst_element_set_state (pipe, GST_STATE_PLAYING);
  GByteArray *out = g_byte_array_new ();
  int n = 0, w = 0, h = 0, rate = 8;
  g_autoptr (GstBus) bus = gst_element_get_bus (pipe);
  g_autoptr (GstMessage) msg = NULL;
  gint64 deadline = g_get_monotonic_time () + 120 * G_USEC_PER_SEC;
  for (;;) {
    g_autoptr (GstSample) s = gst_app_sink_try_pull_sample (GST_APP_SINK (sink), GST_SECOND / 10);
    if (s == NULL) {
      if (gst_app_sink_is_eos (GST_APP_SINK (sink)) || g_get_monotonic_time () > deadline)
        break;
      if ((msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR)) != NULL)
        break;
      continue;
    }
    GstVideoInfo info;
    if (!gst_video_info_from_caps (&info, gst_sample_get_caps (s)))
      break;
    w = GST_VIDEO_INFO_WIDTH (&info), h = GST_VIDEO_INFO_HEIGHT (&info);
    if (GST_VIDEO_INFO_FPS_N (&info) > 0 && GST_VIDEO_INFO_FPS_D (&info) > 0)
      rate = GST_VIDEO_INFO_FPS_N (&info) / GST_VIDEO_INFO_FPS_D (&info);
    GstMapInfo map;
    GstBuffer *buf = gst_sample_get_buffer (s);
    if (!gst_buffer_map (buf, &map, GST_MAP_READ))
      break;
    int stride = GST_VIDEO_INFO_PLANE_STRIDE (&info, 0);
    for (int y = 0; y < h; y++)
      g_byte_array_append (out, map.data + (gsize) y * stride, (guint) w * 3);
    gst_buffer_unmap (buf, &map);
    n++;
  }
  if (msg == NULL)
    msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  gst_element_set_state (pipe, GST_STATE_NULL);
  if (n == 0) {
    g_byte_array_unref (out);
    if (msg) {
      g_autoptr (GError) gerr = NULL;
      gst_message_parse_error (msg, &gerr, NULL);
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "cannot decode %s: %s", path, gerr->message);
    } else {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "%s holds no video frames", path);
    }
    return NULL;
  }
  *frames = n, *height = h, *width = w;
  if (fps)
    *fps = rate;
  return g_byte_array_free (out, FALSE);
}
