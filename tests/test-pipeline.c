/* test-pipeline.c — end to end on a tiny random pack: generation, determinism, progress,
 * cancellation, conditioning, samplers, the engine thread, and bad input. */
#include "kin-engine.h"
#include "kin-error.h"
#include "kin-pipeline.h"
#include "kin-test-pack.h"
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static char *packdir;

static KinPipeline *
open_pack (void)
{
  g_autofree char *t = g_build_filename (packdir, "transformer", NULL);
  g_autofree char *e = g_build_filename (packdir, "text_encoder", NULL);
  g_autofree char *v = g_build_filename (packdir, "vae", NULL);
  KinModelPaths paths = { t, e, v };
  g_autoptr (GError) error = NULL;
  KinPipeline *p = kin_pipeline_new (&paths, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error);
  g_assert_no_error (error);
  return p;
}

static KinRequest
small_request (const char *prompt, guint64 seed)
{
  KinRequest r = { .prompt = (char *) prompt, .height = 32, .width = 48, .frames = 4, .steps = 4,
                   .guidance = 4.0f, .seed = seed };
  return r;
}

typedef struct {
  int denoise_calls, last_step, total;
  int cancel_at;
  gboolean saw_preview;
} Counter;

static gboolean
count_progress (const char *stage, int step, int total, const guint8 *preview, int pf, int ph, int pw,
                gpointer user_data)
{
  Counter *c = user_data;
  if (g_strcmp0 (stage, "denoising") == 0) {
    c->denoise_calls++;
    c->last_step = step, c->total = total;
    if (preview && pf == 4 && ph == 4 && pw == 6)
      c->saw_preview = TRUE;
    if (c->cancel_at > 0 && step >= c->cancel_at)
      return FALSE;
  }
  return TRUE;
}

static void
test_generate (void)
{
  g_autoptr (KinPipeline) p = open_pack ();
  g_autoptr (GError) error = NULL;
  KinRequest r = small_request ("a red circle moving right", 7);
  Counter c = { 0 };
  g_autoptr (KinClip) a = kin_pipeline_generate (p, &r, count_progress, &c, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (a->frames, ==, 4);
  g_assert_cmpint (a->height, ==, 32);
  g_assert_cmpint (a->width, ==, 48);
  g_assert_cmpint (a->latent_h, ==, 4);
  g_assert_cmpint (a->latent_w, ==, 6);
  g_assert_cmpint (c.denoise_calls, ==, 4);
  g_assert_cmpint (c.last_step, ==, c.total);
  g_assert_true (c.saw_preview);
  g_assert_cmpstr (a->request.prompt, ==, "a red circle moving right");
  g_assert_cmpuint (a->request.seed, ==, 7);
  /* the frames are not constant */
  gsize n = (gsize) 4 * 32 * 48 * 3;
  guint8 lo = 255, hi = 0;
  for (gsize i = 0; i < n; i++)
    lo = MIN (lo, a->rgb[i]), hi = MAX (hi, a->rgb[i]);
  g_assert_cmpint (hi - lo, >, 10);
  /* the same seed gives the same clip; another seed or prompt another */
  g_autoptr (KinClip) b = kin_pipeline_generate (p, &r, NULL, NULL, NULL, &error);
  g_assert_cmpmem (a->rgb, n, b->rgb, n);
  r.seed = 8;
  g_autoptr (KinClip) d = kin_pipeline_generate (p, &r, NULL, NULL, NULL, &error);
  g_assert_false (memcmp (a->rgb, d->rgb, n) == 0);
  r.seed = 7;
  r.prompt = "a blue square moving up";
  g_autoptr (KinClip) e = kin_pipeline_generate (p, &r, NULL, NULL, NULL, &error);
  g_assert_false (memcmp (a->latents, e->latents, 4 * 4 * 4 * 6 * sizeof (float)) == 0);
  /* DPM-Solver++ works too */
  r.sampler = KIN_SAMPLER_DPM_SOLVER;
  r.steps = 3;
  g_autoptr (KinClip) f = kin_pipeline_generate (p, &r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (f->frames, ==, 4);
  /* a single image */
  r.sampler = KIN_SAMPLER_IDDPM;
  r.frames = 1;
  g_autoptr (KinClip) img = kin_pipeline_generate (p, &r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (img->frames, ==, 1);
}

static void
test_cancel_and_bad_input (void)
{
  g_autoptr (KinPipeline) p = open_pack ();
  g_autoptr (GError) error = NULL;
  KinRequest r = small_request ("x", 1);
  r.steps = 10;
  Counter c = { .cancel_at = 3 };
  KinClip *clip = kin_pipeline_generate (p, &r, count_progress, &c, NULL, &error);
  g_assert_null (clip);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED);
  g_assert_cmpint (c.last_step, ==, 3);
  g_clear_error (&error);
  g_autoptr (GCancellable) cancel = g_cancellable_new ();
  g_cancellable_cancel (cancel);
  g_assert_null (kin_pipeline_generate (p, &r, NULL, NULL, cancel, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED);
  g_clear_error (&error);

  KinRequest bad[] = { small_request ("x", 1), small_request ("x", 1), small_request ("x", 1),
                       small_request ("x", 1) };
  bad[0].height = 4;          /* smaller than the VAE factor */
  bad[1].frames = 100000;
  bad[2].steps = 5000;
  bad[3].cond = KIN_COND_EXTEND; /* no reference */
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_assert_null (kin_pipeline_generate (p, &bad[i], NULL, NULL, NULL, &error));
    g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
    g_clear_error (&error);
  }
  /* DPM-Solver has no frame conditioning */
  float lat[4 * 2 * 4 * 6] = { 0 };
  KinRequest dc = small_request ("x", 1);
  dc.sampler = KIN_SAMPLER_DPM_SOLVER;
  dc.cond = KIN_COND_EXTEND;
  dc.cond_latents = lat;
  dc.cond_latent_channels = 4, dc.cond_latent_frames = 2, dc.cond_latent_h = 4, dc.cond_latent_w = 6;
  dc.cond_length = 1;
  g_assert_null (kin_pipeline_generate (p, &dc, NULL, NULL, NULL, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED);
}

static void
test_conditioning (void)
{
  g_autoptr (KinPipeline) p = open_pack ();
  g_autoptr (GError) error = NULL;
  KinRequest r = small_request ("a scene", 3);
  r.frames = 6;
  g_autoptr (KinClip) src = kin_pipeline_generate (p, &r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  KinCondKind kinds[] = { KIN_COND_EXTEND, KIN_COND_LOOP, KIN_COND_EDIT };
  for (guint k = 0; k < G_N_ELEMENTS (kinds); k++) {
    KinRequest c = small_request ("a scene", 4);
    c.frames = 6;
    c.cond = kinds[k];
    c.cond_latents = src->latents;
    c.cond_latent_channels = 4, c.cond_latent_frames = 6, c.cond_latent_h = 4, c.cond_latent_w = 6;
    c.cond_length = 2;
    c.edit_strength = 0.5f;
    g_autoptr (KinClip) out = kin_pipeline_generate (p, &c, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (out->frames, ==, 6);
    /* Extension and looping hold frame 0 at the reference's frame R−L = 4 until the last step,
     * where upstream re-noises it by σ = sqrt(1 − ᾱ_0) = 0.01 and keeps the model's x̂0: so it
     * ends within about 0.01·|ε| of the reference. */
    if (kinds[k] != KIN_COND_EDIT) {
      size_t fr = 4 * 6;
      double md = 0;
      for (int ch = 0; ch < 4; ch++)
        for (size_t j = 0; j < fr; j++)
          md = MAX (md, fabs (out->latents[(size_t) ch * 6 * fr + j] - src->latents[(size_t) ch * 6 * fr + 4 * fr + j]));
      g_assert_cmpfloat (md, <, 0.5);
    }
  }
  /* a reference of the wrong size is refused */
  KinRequest w = small_request ("x", 1);
  w.cond = KIN_COND_EXTEND;
  w.cond_latents = src->latents;
  w.cond_latent_channels = 4, w.cond_latent_frames = 6, w.cond_latent_h = 8, w.cond_latent_w = 6;
  g_assert_null (kin_pipeline_generate (p, &w, NULL, NULL, NULL, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  /* image-to-video */
  guint8 img[20 * 30 * 3];
  for (guint i = 0; i < sizeof img; i++)
    img[i] = (guint8) (i * 7);
  KinRequest iv = small_request ("x", 2);
  iv.cond = KIN_COND_IMAGE;
  iv.cond_image = img, iv.cond_image_w = 30, iv.cond_image_h = 20;
  g_autoptr (KinClip) ic = kin_pipeline_generate (p, &iv, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
}

static void
test_bad_packs (void)
{
  g_autoptr (GError) error = NULL;
  KinModelPaths none = { "/nonexistent/t", "/nonexistent/e", "/nonexistent/v" };
  g_assert_null (kin_pipeline_new (&none, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error));
  g_assert_nonnull (strstr (error->message, "transformer"));
  g_clear_error (&error);
  /* half a configuration is an error, not a silent switch to the demo pack */
  KinModelPaths half = { "/nonexistent/t", NULL, "" };
  g_assert_null (kin_pipeline_new (&half, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "the text encoder and the VAE are not set"));
  g_clear_error (&error);
  KinModelPaths no_vae = { "/nonexistent/t", "/nonexistent/e", NULL };
  g_assert_null (kin_pipeline_new (&no_vae, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error));
  g_assert_nonnull (strstr (error->message, "the VAE is not set"));
  g_clear_error (&error);
  /* a text encoder that does not fit the transformer */
  g_autofree char *dir = g_dir_make_tmp ("kin-badpack-XXXXXX", NULL);
  g_assert_true (kin_test_pack_write (dir, 12, &error));
  g_autofree char *t = g_build_filename (dir, "transformer", NULL);
  g_autofree char *e = g_build_filename (dir, "text_encoder", NULL);
  g_autofree char *v = g_build_filename (dir, "vae", NULL);
  KinModelPaths mis = { t, e, v };
  g_assert_null (kin_pipeline_new (&mis, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS);
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
  (void) !system (cmd);
}

static void
on_engine_progress (const char *stage, int step, int total, double eta, const guint8 *preview, int pf,
                    int ph, int pw, gpointer user_data)
{
  int *n = user_data;
  (*n)++;
}

static void
on_engine_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  KinClip **out = user_data;
  g_autoptr (GError) error = NULL;
  *out = kin_engine_generate_finish (KIN_ENGINE (source), res, &error);
  g_assert_no_error (error);
}

static void
test_engine_thread (void)
{
  g_autoptr (KinEngine) engine = kin_engine_new ();
  g_autofree char *t = g_build_filename (packdir, "transformer", NULL);
  g_autofree char *e = g_build_filename (packdir, "text_encoder", NULL);
  g_autofree char *v = g_build_filename (packdir, "vae", NULL);
  KinModelPaths paths = { t, e, v };
  kin_engine_set_models (engine, &paths, KIN_MEMORY_LOW);
  KinRequest r = small_request ("engine", 5);
  int progress = 0;
  KinClip *clip = NULL;
  kin_engine_generate_async (engine, &r, on_engine_progress, &progress, NULL, NULL, on_engine_done, &clip);
  while (clip == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (clip->frames, ==, 4);
  g_assert_cmpint (progress, >, 0);
  kin_clip_free (clip);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  packdir = g_dir_make_tmp ("kin-pack-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;
  if (!kin_test_pack_write (packdir, 0, &error))
    g_error ("cannot write the test pack: %s", error->message);
  g_test_add_func ("/pipeline/generate", test_generate);
  g_test_add_func ("/pipeline/cancel-and-bad-input", test_cancel_and_bad_input);
  g_test_add_func ("/pipeline/conditioning", test_conditioning);
  g_test_add_func ("/pipeline/bad-packs", test_bad_packs);
  g_test_add_func ("/pipeline/engine-thread", test_engine_thread);
  int rc = g_test_run ();
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", packdir);
  (void) !system (cmd);
  g_free (packdir);
  return rc;
}
