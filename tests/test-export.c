/* test-export.c — exports decode back to the frames written; sidecars and tags carry the request;
 * cancellation and failures leave nothing behind. */
#include "kin-error.h"
#include "kin-export.h"
#include <gif_lib.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <gst/pbutils/pbutils.h>
#include <string.h>

static char *tmpdir;

static guint8 *
moving_square (int frames, int h, int w)
{
  guint8 *rgb = g_new0 (guint8, (gsize) frames * h * w * 3);
  for (int f = 0; f < frames; f++)
    for (int y = 10; y < 26; y++)
      for (int x = 4 + 4 * f; x < 20 + 4 * f && x < w; x++) {
        guint8 *p = rgb + (((gsize) f * h + y) * w + x) * 3;
        p[0] = 230, p[1] = 30, p[2] = 20;
      }
  return rgb;
}

static KinRequest
request (void)
{
  KinRequest r = { .prompt = "a red square moving right", .height = 48, .width = 64, .frames = 8, .fps = 8,
                   .seed = 1234567890123ULL, .steps = 50, .guidance = 7.0f };
  return r;
}

/* Red centroid x of a frame. */
static double
centroid_x (const guint8 *frame, int h, int w)
{
  double sx = 0, n = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const guint8 *p = frame + ((gsize) y * w + x) * 3;
      if (p[0] > 150 && p[1] < 100)
        sx += x, n++;
    }
  return n > 0 ? sx / n : -1;
}

static void
check_roundtrip (KinExportFormat fmt, const char *name)
{
  int F = 8, H = 48, W = 64;
  g_autofree guint8 *rgb = moving_square (F, H, W);
  KinRequest r = request ();
  g_autofree char *path = g_build_filename (tmpdir, name, NULL);
  g_autoptr (GError) error = NULL;
  gboolean ok = kin_export_frames (rgb, F, H, W, 8, &r, path, fmt, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  /* sidecar with the exact request */
  g_autofree char *side = g_strconcat (path, ".json", NULL);
  g_autofree char *json = NULL;
  g_assert_true (g_file_get_contents (side, &json, NULL, NULL));
  g_assert_nonnull (strstr (json, "a red square moving right"));
  g_assert_nonnull (strstr (json, "1234567890123"));
  /* decode and count */
  int n = 0, h = 0, w = 0, fps = 0;
  g_autofree guint8 *back = NULL;
  if (fmt == KIN_EXPORT_GIF) {
    int err = 0;
    GifFileType *gif = DGifOpenFileName (path, &err);
    g_assert_nonnull (gif);
    g_assert_cmpint (DGifSlurp (gif), ==, GIF_OK);
    n = gif->ImageCount, w = gif->SWidth, h = gif->SHeight;
    gboolean comment = FALSE;
    /* giflib attaches extensions to the image that follows them */
    for (int i = 0; i < gif->ExtensionBlockCount; i++)
      if (gif->ExtensionBlocks[i].Function == COMMENT_EXT_FUNC_CODE)
        comment = TRUE;
    for (int i = 0; n > 0 && i < gif->SavedImages[0].ExtensionBlockCount; i++)
      if (gif->SavedImages[0].ExtensionBlocks[i].Function == COMMENT_EXT_FUNC_CODE &&
          g_strstr_len ((const char *) gif->SavedImages[0].ExtensionBlocks[i].Bytes,
                        gif->SavedImages[0].ExtensionBlocks[i].ByteCount, "a red square") != NULL)
        comment = TRUE;
    g_assert_true (comment);
    DGifCloseFile (gif, &err);
  } else {
    back = kin_import_frames (path, &n, &h, &w, &fps, &error);
    g_assert_no_error (error);
    /* the square still moves right after the lossy round trip */
    g_assert_cmpfloat (centroid_x (back + (gsize) (n - 1) * h * w * 3, h, w), >, centroid_x (back, h, w) + 10);
  }
  g_assert_cmpint (n, ==, F);
  g_assert_cmpint (h, ==, H);
  g_assert_cmpint (w, ==, W);
  /* no partial files left beside it */
  g_autoptr (GDir) d = g_dir_open (tmpdir, 0, NULL);
  const char *e;
  while ((e = g_dir_read_name (d)) != NULL)
    g_assert_null (strstr (e, ".partial-"));
}

static void test_mp4 (void) { check_roundtrip (KIN_EXPORT_MP4, "clip.mp4"); }
static void test_webm (void) { check_roundtrip (KIN_EXPORT_WEBM, "clip.webm"); }
static void test_png (void) { check_roundtrip (KIN_EXPORT_PNG, "frames"); }
static void test_gif (void) { check_roundtrip (KIN_EXPORT_GIF, "clip.gif"); }

static void
test_mp4_tags (void)
{
  g_autofree char *path = g_build_filename (tmpdir, "clip.mp4", NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    check_roundtrip (KIN_EXPORT_MP4, "clip.mp4");
  g_autoptr (GError) error = NULL;
  g_autoptr (GstDiscoverer) disc = gst_discoverer_new (10 * GST_SECOND, &error);
  g_assert_no_error (error);
  g_autofree char *uri = g_filename_to_uri (path, NULL, NULL);
  g_autoptr (GstDiscovererInfo) info = gst_discoverer_discover_uri (disc, uri, &error);
  g_assert_no_error (error);
  const GstTagList *tags = gst_discoverer_info_get_tags (info);
  g_assert_nonnull (tags);
  g_autofree char *title = NULL;
  g_assert_true (gst_tag_list_get_string (tags, GST_TAG_TITLE, &title));
  g_assert_cmpstr (title, ==, "a red square moving right");
}

static void
test_failures (void)
{
  g_autofree guint8 *rgb = moving_square (2, 48, 64);
  KinRequest r = request ();
  g_autoptr (GError) error = NULL;
  g_assert_false (kin_export_frames (rgb, 2, 48, 64, 8, &r, "/nonexistent-dir/x.mp4", KIN_EXPORT_MP4, NULL, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_false (kin_export_frames (rgb, 0, 48, 64, 8, &r, "/tmp/x.mp4", KIN_EXPORT_MP4, NULL, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  g_autoptr (GCancellable) c = g_cancellable_new ();
  g_cancellable_cancel (c);
  g_autofree char *path = g_build_filename (tmpdir, "cancelled.webm", NULL);
  g_assert_false (kin_export_frames (rgb, 2, 48, 64, 8, &r, path, KIN_EXPORT_WEBM, c, &error));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_clear_error (&error);
  g_assert_null (kin_import_frames ("/nonexistent.mp4", NULL, NULL, NULL, NULL, &error));
  g_clear_error (&error);
  g_autofree char *junk = g_build_filename (tmpdir, "junk.mp4", NULL);
  g_file_set_contents (junk, "not a video at all", -1, NULL);
  int n, h, w;
  g_assert_null (kin_import_frames (junk, &n, &h, &w, NULL, &error));
  g_assert_nonnull (error);
}

static void
test_format_names (void)
{
  g_assert_cmpint (kin_export_format_for_path ("a/b.webm"), ==, KIN_EXPORT_WEBM);
  g_assert_cmpint (kin_export_format_for_path ("b.GIF"), ==, KIN_EXPORT_GIF);
  g_assert_cmpint (kin_export_format_for_path ("dir.v1/frames"), ==, KIN_EXPORT_PNG);
  KinExportFormat f;
  g_assert_false (kin_export_format_from_name ("avi", &f));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gst_init (NULL, NULL);
  tmpdir = g_dir_make_tmp ("kin-export-XXXXXX", NULL);
  g_test_add_func ("/export/mp4", test_mp4);
  g_test_add_func ("/export/mp4-tags", test_mp4_tags);
  g_test_add_func ("/export/webm", test_webm);
  g_test_add_func ("/export/png", test_png);
  g_test_add_func ("/export/gif", test_gif);
  g_test_add_func ("/export/failures", test_failures);
  g_test_add_func ("/export/format-names", test_format_names);
  int rc = g_test_run ();
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  (void) !system (cmd);
  g_free (tmpdir);
  return rc;
}
