/* test-ui.c — runs the real `kinora` under the X server that xvfb-run started.
 *
 *   test-ui KINORA SCREENSHOT_DIR
 *
 * Makes a project with two clips through kinora-app-core (so the timeline has something to
 * restore) and a tiny random model pack (so a generation runs to the end), starts `kinora --self-test=SCREENSHOT_DIR PROJECT` with GDK_BACKEND=x11 and
 * GSK_RENDERER=cairo, and checks its verdict and the screenshots it saved: PNG files of a
 * window's size that are not blank. */
#include "kin-project.h"
#include "kin-test-pack.h"
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <math.h>

static char *kinora_path;
static char *shots_dir;

/* A ball rolling over a sky-to-grass gradient: [frames, h, w, 3]. */
static KinClip *
make_clip (const char *prompt, int frames, int h, int w, guint8 ball_r, guint8 ball_g, guint8 ball_b)
{
  KinClip *c = g_new0 (KinClip, 1);
  c->frames = frames;
  c->height = h;
  c->width = w;
  c->fps = 8;
  c->rgb = g_malloc ((gsize) frames * h * w * 3);
  for (int f = 0; f < frames; f++) {
    double cx = w * (0.15 + 0.7 * f / MAX (1, frames - 1));
    double cy = h * (0.55 - 0.25 * sin (M_PI * f / MAX (1, frames - 1)));
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        guint8 *p = c->rgb + (((gsize) f * h + y) * w + x) * 3;
        gboolean grass = y > h * 0.7;
        p[0] = grass ? 40 : (guint8) (90 + 100 * y / h);
        p[1] = grass ? 150 : (guint8) (150 + 60 * y / h);
        p[2] = grass ? 60 : 235;
        if (hypot (x - cx, y - cy) < h * 0.12) {
          p[0] = ball_r;
          p[1] = ball_g;
          p[2] = ball_b;
        }
      }
  }
  c->latent_channels = 4;
  c->latent_frames = frames;
  c->latent_h = h / 8;
  c->latent_w = w / 8;
  c->latents = g_new0 (float, (gsize) 4 * frames * (h / 8) * (w / 8));
  c->request.prompt = g_strdup (prompt);
  c->request.height = h;
  c->request.width = w;
  c->request.frames = frames;
  c->request.fps = 8;
  c->request.seed = 1234;
  c->request.steps = 30;
  c->request.guidance = 7.0f;
  c->seconds = 12;
  return c;
}

static void
rm_rf (const char *path)
{
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  const char *e;
  while (d != NULL && (e = g_dir_read_name (d)) != NULL) {
    g_autofree char *c = g_build_filename (path, e, NULL);
    if (g_file_test (c, G_FILE_TEST_IS_DIR) && !g_file_test (c, G_FILE_TEST_IS_SYMLINK))
      rm_rf (c);
    else
      g_unlink (c);
  }
  g_rmdir (path);
}

static void
check_screenshot (const char *name, int min_w, int min_h)
{
  g_autofree char *path = g_build_filename (shots_dir, name, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new_from_file (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gdk_pixbuf_get_width (pb), >=, min_w);
  g_assert_cmpint (gdk_pixbuf_get_height (pb), >=, min_h);
  /* Not blank: many distinct colours. */
  int w = gdk_pixbuf_get_width (pb), h = gdk_pixbuf_get_height (pb);
  int nch = gdk_pixbuf_get_n_channels (pb), stride = gdk_pixbuf_get_rowstride (pb);
  const guint8 *px = gdk_pixbuf_read_pixels (pb);
  g_autoptr (GHashTable) colours = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (int y = 0; y < h; y += 3)
    for (int x = 0; x < w; x += 3) {
      const guint8 *p = px + (gsize) y * stride + x * nch;
      g_hash_table_add (colours, GUINT_TO_POINTER ((p[0] << 16) | (p[1] << 8) | p[2]));
    }
  g_test_message ("%s: %d × %d, %u colours", path, w, h, g_hash_table_size (colours));
  g_assert_cmpuint (g_hash_table_size (colours), >, 50);
}

static void
test_self_test (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("kinora-test-ui-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (tmp, "Garden Ball", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) p = kin_project_create (path, &error);
  g_assert_no_error (error);
  g_autoptr (KinClip) a = make_clip ("a red ball rolls over the grass", 16, 144, 256, 220, 40, 40);
  g_autoptr (KinClip) b = make_clip ("a yellow ball bounces under a blue sky", 16, 144, 256, 250, 210, 40);
  g_assert_nonnull (kin_project_add_clip (p, a, NULL, NULL, &error));
  g_assert_nonnull (kin_project_add_clip (p, b, NULL, NULL, &error));
  g_assert_no_error (error);

  g_autofree char *pack = g_build_filename (tmp, "pack", NULL);
  g_assert_true (kin_test_pack_write (pack, 0, &error));
  g_assert_no_error (error);

  g_mkdir_with_parents (shots_dir, 0755);
  g_autofree char *self_test = g_strdup_printf ("--self-test=%s", shots_dir);
  const char *argv[] = { kinora_path, self_test, kin_project_get_path (p), NULL };
  g_auto (GStrv) env = g_get_environ ();
  env = g_environ_setenv (env, "GDK_BACKEND", "x11", TRUE);
  env = g_environ_setenv (env, "GSK_RENDERER", "cairo", TRUE);
  env = g_environ_setenv (env, "GSETTINGS_BACKEND", "memory", TRUE);
  env = g_environ_setenv (env, "KINORA_PROJECTS_DIR", tmp, TRUE);
  env = g_environ_setenv (env, "KINORA_DEMO_PACK", pack, TRUE);
  env = g_environ_setenv (env, "GTK_A11Y", "none", TRUE);
  env = g_environ_setenv (env, "NO_AT_BRIDGE", "1", TRUE);
  env = g_environ_setenv (env, "LANGUAGE", "C", TRUE);
  env = g_environ_unsetenv (env, "G_DEBUG");
  g_autofree char *out = NULL, *err = NULL;
  int status = 0;
  gboolean ran = g_spawn_sync (NULL, (char **) argv, env, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, &error);
  g_assert_no_error (error);
  g_assert_true (ran);
  g_test_message ("kinora said:\n%s", out);
  if (err != NULL && *err)
    g_test_message ("stderr:\n%s", err);
  g_assert_true (g_spawn_check_wait_status (status, &error));
  g_assert_no_error (error);
  g_assert_nonnull (strstr (out, "0 check(s) failed"));

  check_screenshot ("main-window.png", 900, 600);
  check_screenshot ("preferences.png", 400, 400);
  check_screenshot ("after-job.png", 900, 600);

  /* The project on disk is still whole after the app closed it. */
  g_autoptr (KinProject) again = kin_project_open (kin_project_get_path (p), &error);
  g_assert_no_error (error);
  /* Two clips made here and the one the app generated, on disk with its request. */
  g_assert_cmpuint (g_list_model_get_n_items (kin_project_get_clips (again)), ==, 3);
  g_autoptr (KinProjectClip) made = g_list_model_get_item (kin_project_get_clips (again), 2);
  g_assert_cmpstr (kin_project_clip_get_prompt (made), ==, "a red ball bouncing on green grass, sunny day");
  g_autofree char *latents = kin_project_clip_dup_latents_path (made);
  g_assert_nonnull (latents);
  g_autofree char *video = kin_project_clip_dup_video_path (made);
  g_test_message ("video file of the new clip: %s", video ? video : "(none: PNG frames only)");
  g_clear_object (&again);
  g_clear_object (&p);
  rm_rf (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (argc < 3) {
    g_printerr ("usage: test-ui KINORA SCREENSHOT_DIR\n");
    return 2;
  }
  kinora_path = argv[1];
  shots_dir = argv[2];
  if (g_getenv ("DISPLAY") == NULL) {
    g_print ("1..0 # SKIP no X display (run under xvfb-run)\n");
    return 77;
  }
  g_test_add_func ("/ui/self-test", test_self_test);
  return g_test_run ();
}
