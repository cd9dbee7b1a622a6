/* test-project.c — KinProject: save/load round trip, damaged files, clip add/delete/undo. */
#include "kin-project.h"
#include "kin-error.h"
#include <glib/gstdio.h>
#include <string.h>

typedef struct {
  char *tmp;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->tmp = g_dir_make_tmp ("kinora-test-project-XXXXXX", NULL);
  g_assert_nonnull (f->tmp);
}

static void
rm_rf (const char *path)
{
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  const char *e;
  while (d != NULL && (e = g_dir_read_name (d)) != NULL) {
    g_autofree char *c = g_build_filename (path, e, NULL);
    if (g_file_test (c, G_FILE_TEST_IS_DIR))
      rm_rf (c);
    else
      g_unlink (c);
  }
  g_rmdir (path);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  rm_rf (f->tmp);
  g_free (f->tmp);
}

/* A synthetic clip: a moving gradient, [frames, h, w, 3], with latents [4, T, h/8, w/8]. */
static KinClip *
make_clip (const char *prompt, int frames, int h, int w, guint64 seed)
{
  KinClip *c = g_new0 (KinClip, 1);
  c->frames = frames;
  c->height = h;
  c->width = w;
  c->fps = 8;
  c->rgb = g_malloc ((gsize) frames * h * w * 3);
  for (int f = 0; f < frames; f++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        guint8 *p = c->rgb + (((gsize) f * h + y) * w + x) * 3;
        p[0] = (guint8) (x * 255 / w);
        p[1] = (guint8) (y * 255 / h);
        p[2] = (guint8) (f * 40);
      }
  c->latent_channels = 4;
  c->latent_frames = MAX (1, frames / 4);
  c->latent_h = h / 8;
  c->latent_w = w / 8;
  gsize n = (gsize) c->latent_channels * c->latent_frames * c->latent_h * c->latent_w;
  c->latents = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    c->latents[i] = (float) i * 0.25f - 3.0f;
  c->request.prompt = g_strdup (prompt);
  c->request.height = h;
  c->request.width = w;
  c->request.frames = frames;
  c->request.fps = 8;
  c->request.seed = seed;
  c->request.steps = 20;
  c->request.guidance = 7.0f;
  c->request.sampler = KIN_SAMPLER_DPM_SOLVER;
  c->seconds = 1.5;
  return c;
}

static void
test_create_and_reopen (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->tmp, "Holiday", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) p = kin_project_create (path, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_suffix (kin_project_get_path (p), "Holiday.kinora"));
  g_assert_cmpstr (kin_project_get_name (p), ==, "Holiday");
  g_assert_false (kin_project_get_dirty (p));

  /* Creating over it again is refused. */
  g_autoptr (KinProject) again = kin_project_create (path, &error);
  g_assert_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_EXISTS);
  g_assert_null (again);
  g_clear_error (&error);

  g_autofree char *json = g_build_filename (kin_project_get_path (p), "project.json", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (json, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"version\" : 1"));

  g_autoptr (KinProject) q = kin_project_open (kin_project_get_path (p), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (kin_project_get_name (q), ==, "Holiday");
  g_assert_cmpuint (g_list_model_get_n_items (kin_project_get_clips (q)), ==, 0);
}

static void
test_clip_round_trip (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->tmp, "Trip.kinora", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) p = kin_project_create (path, &error);
  g_assert_no_error (error);

  g_autoptr (KinClip) c1 = make_clip ("a red ball bounces", 4, 24, 32, 42);
  g_autoptr (KinClip) c2 = make_clip ("a blue square “slides” 向左", 1, 16, 16, G_MAXUINT64 - 5);
  KinProjectClip *a = kin_project_add_clip (p, c1, NULL, NULL, &error);
  g_assert_no_error (error);
  KinProjectClip *b = kin_project_add_clip (p, c2, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (kin_project_clip_get_prompt (a), ==, "a red ball bounces");
  g_assert_false (kin_project_get_dirty (p));

  /* Everything is on disk the moment the clip is added. */
  g_autofree char *dir = kin_project_clip_dup_dir (a);
  g_autofree char *req = g_build_filename (dir, "request.json", NULL);
  g_autofree char *lat = kin_project_clip_dup_latents_path (a);
  g_autofree char *thumb = kin_project_clip_dup_thumbnail_path (a);
  g_assert_true (g_file_test (req, G_FILE_TEST_IS_REGULAR));
  g_assert_nonnull (lat);
  g_assert_nonnull (thumb);

  g_autoptr (KinProject) q = kin_project_open (path, &error);
  g_assert_no_error (error);
  GListModel *clips = kin_project_get_clips (q);
  g_assert_cmpuint (g_list_model_get_n_items (clips), ==, 2);
  g_autoptr (KinProjectClip) qa = g_list_model_get_item (clips, 0);
  g_autoptr (KinProjectClip) qb = g_list_model_get_item (clips, 1);
  g_assert_cmpstr (kin_project_clip_get_id (qa), ==, kin_project_clip_get_id (a));
  g_assert_cmpstr (kin_project_clip_get_prompt (qb), ==, "a blue square “slides” 向左");
  const KinRequest *r = kin_project_clip_get_request (qa);
  g_assert_cmpint (r->width, ==, 32);
  g_assert_cmpint (r->height, ==, 24);
  g_assert_cmpint (r->frames, ==, 4);
  g_assert_cmpint (r->steps, ==, 20);
  g_assert_cmpuint (r->seed, ==, 42);
  g_assert_cmpint (r->sampler, ==, KIN_SAMPLER_DPM_SOLVER);
  g_assert_cmpfloat_with_epsilon (r->guidance, 7.0, 1e-6);
  g_assert_cmpuint (kin_project_clip_get_request (qb)->seed, ==, G_MAXUINT64 - 5);
  g_assert_cmpint (kin_project_clip_get_frames (qa), ==, 4);
  g_assert_cmpfloat_with_epsilon (kin_project_clip_get_duration (qa), 0.5, 1e-9);

  /* Frames and latents come back bit for bit. */
  int nf, h, w;
  g_autofree guint8 *rgb = kin_project_clip_load_frames (qa, &nf, &h, &w, &error);
  g_assert_no_error (error);
  g_assert_cmpint (nf, ==, 4);
  g_assert_cmpint (h, ==, 24);
  g_assert_cmpint (w, ==, 32);
  g_assert_cmpmem (rgb, (gsize) nf * h * w * 3, c1->rgb, (gsize) nf * h * w * 3);
  int lc, lt, lh, lw;
  g_autofree float *latents = kin_project_clip_load_latents (qa, &lc, &lt, &lh, &lw, &error);
  g_assert_no_error (error);
  g_assert_cmpint (lc, ==, 4);
  g_assert_cmpint (lt, ==, 1);
  g_assert_cmpint (lh, ==, 3);
  g_assert_cmpint (lw, ==, 4);
  g_assert_cmpmem (latents, sizeof (float) * lc * lt * lh * lw, c1->latents,
                   sizeof (float) * lc * lt * lh * lw);
  (void) b;
}

static void
test_delete_and_undo (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->tmp, "Cut.kinora", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) p = kin_project_create (path, &error);
  g_autoptr (KinClip) c = make_clip ("one", 2, 8, 8, 1);
  g_autoptr (KinClip) d = make_clip ("two", 2, 8, 8, 2);
  kin_project_add_clip (p, c, NULL, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (KinProjectClip) second = g_object_ref (kin_project_add_clip (p, d, NULL, NULL, &error));
  g_assert_no_error (error);
  g_autoptr (KinProjectClip) first = g_list_model_get_item (kin_project_get_clips (p), 0);

  int pos = kin_project_remove_clip (p, first, &error);
  g_assert_no_error (error);
  g_assert_cmpint (pos, ==, 0);
  g_assert_cmpuint (g_list_model_get_n_items (kin_project_get_clips (p)), ==, 1);
  {
    g_autoptr (KinProject) q = kin_project_open (path, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (g_list_model_get_n_items (kin_project_get_clips (q)), ==, 1);
  }
  /* Undo puts it back where it was. */
  g_assert_true (kin_project_restore_clip (p, first, (guint) pos, &error));
  g_assert_no_error (error);
  g_autoptr (KinProjectClip) again = g_list_model_get_item (kin_project_get_clips (p), 0);
  g_assert_true (again == first);

  /* Deleting for good removes the folder. */
  g_autofree char *dir = kin_project_clip_dup_dir (second);
  g_assert_cmpint (kin_project_remove_clip (p, second, &error), ==, 1);
  g_assert_true (g_file_test (dir, G_FILE_TEST_IS_DIR));
  g_assert_true (kin_project_purge_clip (p, second, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (dir, G_FILE_TEST_EXISTS));
  /* A clip still in the timeline is not purged. */
  g_assert_false (kin_project_purge_clip (p, first, &error));
  g_assert_nonnull (error);
}

static void
test_corrupt (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->tmp, "Broken.kinora", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) p = kin_project_create (path, &error);
  g_autoptr (KinClip) c = make_clip ("survivor", 2, 8, 8, 7);
  kin_project_add_clip (p, c, NULL, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&p);

  g_autofree char *json = g_build_filename (path, "project.json", NULL);
  const char *junk = "{ \"version\": 1, \"clips\": [ {\"id\": ";
  g_assert_true (g_file_set_contents (json, junk, -1, NULL));

  KinProject *q = kin_project_open (path, &error);
  g_assert_null (q);
  g_assert_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, "project.json"));
  g_clear_error (&error);
  /* The damaged file is untouched by a failed open. */
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (json, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, junk);

  /* Not a project at all, a newer format, a bad clip id: each a clear error. */
  const char *cases[][2] = {
    { "[1, 2, 3]", "object" },
    { "{\"name\": \"x\"}", "version" },
    { "{\"version\": 1, \"clips\": [{\"id\": \"../../etc\"}]}", "id" },
    { "{\"version\": 1, \"clips\": {}}", "list" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_assert_true (g_file_set_contents (json, cases[i][0], -1, NULL));
    g_assert_null (kin_project_open (path, &error));
    g_assert_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_CORRUPT);
    g_assert_nonnull (strstr (error->message, cases[i][1]));
    g_clear_error (&error);
  }
  g_assert_true (g_file_set_contents (json, "{\"version\": 99}", -1, NULL));
  g_assert_null (kin_project_open (path, &error));
  g_assert_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_TOO_NEW);
  g_clear_error (&error);

  /* Recovery sets the damaged file aside and rebuilds the timeline from clips/. */
  g_assert_true (g_file_set_contents (json, junk, -1, NULL));
  g_autoptr (KinProject) r = kin_project_recover (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_list_model_get_n_items (kin_project_get_clips (r)), ==, 1);
  g_autoptr (KinProjectClip) rc = g_list_model_get_item (kin_project_get_clips (r), 0);
  g_assert_cmpstr (kin_project_clip_get_prompt (rc), ==, "survivor");
  gboolean kept = FALSE;
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  const char *e;
  while ((e = g_dir_read_name (d)) != NULL)
    kept |= g_str_has_prefix (e, "project.json.damaged-");
  g_assert_true (kept);

  /* Missing project: NOT_FOUND. */
  g_autofree char *none = g_build_filename (f->tmp, "Nothing.kinora", NULL);
  g_assert_null (kin_project_open (none, &error));
  g_assert_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_NOT_FOUND);
}

static void
test_save_as (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->tmp, "Draft.kinora", NULL);
  g_autofree char *copy = g_build_filename (f->tmp, "Final", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinProject) p = kin_project_create (path, &error);
  g_autoptr (KinClip) c = make_clip ("moving", 2, 8, 8, 3);
  KinProjectClip *clip = kin_project_add_clip (p, c, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (kin_project_save_as (p, copy, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (kin_project_get_name (p), ==, "Final");
  g_autofree char *thumb = kin_project_clip_dup_thumbnail_path (clip);
  g_assert_nonnull (strstr (thumb, "Final.kinora"));
  g_autoptr (KinProject) q = kin_project_open (copy, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_list_model_get_n_items (kin_project_get_clips (q)), ==, 1);

  g_autofree char *u1 = kin_project_make_unique_path (f->tmp, "Final");
  g_assert_true (g_str_has_suffix (u1, "Final 2.kinora"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/project/create-reopen", Fixture, NULL, fixture_setup, test_create_and_reopen,
              fixture_teardown);
  g_test_add ("/project/clip-round-trip", Fixture, NULL, fixture_setup, test_clip_round_trip,
              fixture_teardown);
  g_test_add ("/project/delete-undo", Fixture, NULL, fixture_setup, test_delete_and_undo,
              fixture_teardown);
  g_test_add ("/project/corrupt", Fixture, NULL, fixture_setup, test_corrupt, fixture_teardown);
  g_test_add ("/project/save-as", Fixture, NULL, fixture_setup, test_save_as, fixture_teardown);
  return g_test_run ();
}
