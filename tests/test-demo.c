/* test-demo.c — the demo model pack: the C engine against the trainer's PyTorch outputs
 * (tests/data/demo, recorded by tools/demo-model/fixtures.py).  Whether clips follow their prompts is
 * not tested yet: the pack does not (see data/models/kinora-demo/README.md). */
#include "kin-error.h"
#include "kin-pipeline.h"
#include "kin-stdit.h"
#include "kin-t5.h"
#include "kin-tokenizer.h"
#include "kin-caption.h"
#include "kin-vae.h"
#include <math.h>
#include <string.h>

static char *pack;

static char *
pack_path (const char *sub)
{
  return g_build_filename (pack, sub, NULL);
}

static KinWeights *
fixture (const char *name)
{
  g_autofree char *p = g_build_filename (KIN_TEST_DATADIR, "demo", name, NULL);
  g_autoptr (GError) error = NULL;
  KinWeights *ws = kin_weights_open (p, &error);
  g_assert_no_error (error);
  return ws;
}

static float *
f32 (KinWeights *ws, const char *name, size_t *n)
{
  const KinWeightEntry *e = kin_weights_lookup (ws, name);
  g_assert_nonnull (e);
  if (n)
    *n = e->nbytes / kin_dtype_size (e->dtype);
  return kin_weight_entry_to_f32 (e);
}

/* max |a − b| (absolute: the fixtures' values are of order 1) */
static double
max_abs_diff (const float *a, const float *b, size_t n)
{
  double m = 0;
  for (size_t i = 0; i < n; i++)
    m = MAX (m, fabs ((double) a[i] - b[i]));
  return m;
}

static void
test_t5 (void)
{
  g_autoptr (KinWeights) fx = fixture ("t5.safetensors");
  g_autofree char *dir = pack_path ("text_encoder");
  g_autoptr (GError) error = NULL;
  g_autoptr (KinT5) t5 = kin_t5_load (dir, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  const KinWeightEntry *ids = kin_weights_lookup (fx, "ids"), *mask = kin_weights_lookup (fx, "mask");
  int B = (int) ids->shape[0], L = (int) ids->shape[1];
  size_t n;
  g_autofree float *want = f32 (fx, "hidden", &n);
  g_autofree float *got = g_new (float, n);
  g_assert_true (kin_t5_encode (t5, ids->data, mask->data, B, L, got, &error));
  double d = max_abs_diff (got, want, n);
  g_test_message ("T5 max |diff| %.3e", d);
  g_assert_cmpfloat (d, <, 1e-4);
  /* and our tokenizer produces the trainer's ids for the fixture prompts */
  g_autofree char *spm = g_build_filename (dir, "spiece.model", NULL);
  g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_file (spm, &error);
  g_assert_no_error (error);
  const char *prompts[2] = { "a red circle moving right on a black background",
                             "a blue square moving up on a gray background" };
  for (int b = 0; b < 2; b++) {
    g_autofree int64_t *ti = g_new0 (int64_t, L), *tm = g_new0 (int64_t, L);
    g_autofree char *clean = kin_caption_preprocess (prompts[b], TRUE);
    kin_tokenizer_encode_padded (tok, clean, L, ti, tm);
    g_assert_cmpmem (ti, L * 8, (const int64_t *) ids->data + (size_t) b * L, L * 8);
  }
}

static void
run_step (KinStdit *m, KinWeights *fx, const char *ts_name, const char *xmask_name, gboolean null_y,
          const char *out_name)
{
  KinBackend *be = kin_backend_cpu ();
  g_autoptr (GError) error = NULL;
  const KinWeightEntry *xe = kin_weights_lookup (fx, "x"), *me = kin_weights_lookup (fx, "mask");
  const KinWeightEntry *ye = kin_weights_lookup (fx, "y");
  g_autofree float *x = f32 (fx, "x", NULL), *ts = f32 (fx, ts_name, NULL);
  g_autofree float *h = f32 (fx, "height", NULL), *w = f32 (fx, "width", NULL), *nf = f32 (fx, "num_frames", NULL);
  g_autofree float *ar = f32 (fx, "ar", NULL), *fps = f32 (fx, "fps", NULL);
  int B = (int) xe->shape[0], L = (int) me->shape[1], T = (int) xe->shape[2];
  g_autoptr (KinTensor) xt = kin_tensor_from_host_f32 (be, x, 5, xe->shape, &error);
  g_autoptr (KinTensor) yt = NULL;
  if (null_y) {
    g_autofree float *null = kin_tensor_to_host_f32 (kin_stdit_get_null_caption (m));
    int C = (int) ye->shape[3];
    g_autofree float *yy = g_new (float, (size_t) B * L * C);
    for (int b = 0; b < B; b++)
      memcpy (yy + (size_t) b * L * C, null, sizeof (float) * L * C);
    yt = kin_tensor_from_host_f32 (be, yy, 4, ye->shape, &error);
  } else {
    g_autofree float *y = f32 (fx, "y", NULL);
    yt = kin_tensor_from_host_f32 (be, y, 4, ye->shape, &error);
  }
  g_autofree int32_t *mask = g_new (int32_t, (size_t) B * L);
  for (int i = 0; i < B * L; i++)
    mask[i] = (int32_t) ((const int64_t *) me->data)[i];
  g_autofree guint8 *xm = NULL;
  if (xmask_name) {
    const KinWeightEntry *xme = kin_weights_lookup (fx, xmask_name);
    xm = g_new (guint8, (size_t) B * T);
    for (int i = 0; i < B * T; i++)
      xm[i] = ((const int64_t *) xme->data)[i] != 0;
  }
  int64_t os[5] = { B, 8, xe->shape[2], xe->shape[3], xe->shape[4] };
  g_autoptr (KinTensor) out = kin_tensor_new (be, KIN_DTYPE_F32, 5, os, &error);
  KinStditInput in = { .x = xt, .timestep = ts, .y = yt, .mask = mask, .mask_rows = B, .height = h,
                       .width = w, .num_frames = nf, .ar = ar, .fps = fps, .cond_rows = B, .x_mask = xm };
  g_assert_true (kin_stdit_forward (m, &in, out, &error));
  size_t n;
  g_autofree float *want = f32 (fx, out_name, &n);
  double d = max_abs_diff (out->data, want, n);
  g_test_message ("STDiT2 %s max |diff| %.3e", out_name, d);
  g_assert_cmpfloat (d, <, 1e-4);
}

static void
test_step (void)
{
  g_autoptr (KinWeights) fx = fixture ("step.safetensors");
  g_autofree char *dir = pack_path ("transformer");
  g_autoptr (GError) error = NULL;
  g_autoptr (KinStdit) m = kin_stdit_open (dir, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  run_step (m, fx, "timestep", NULL, FALSE, "out");
  run_step (m, fx, "timestep_masked", "x_mask", FALSE, "out_masked");
  run_step (m, fx, "timestep", NULL, TRUE, "out_null");
}

static void
test_vae (void)
{
  g_autoptr (KinWeights) fx = fixture ("vae.safetensors");
  g_autofree char *dir = pack_path ("vae");
  g_autoptr (GError) error = NULL;
  g_autoptr (KinVae) vae = kin_vae_load (kin_backend_cpu (), dir, KIN_VAE_BOTH, &error);
  g_assert_no_error (error);
  const KinWeightEntry *le = kin_weights_lookup (fx, "latent");
  g_autofree float *lat = f32 (fx, "latent", NULL);
  float sf = kin_vae_get_config (vae)->scaling_factor;
  size_t nl = le->nbytes / 4;
  for (size_t i = 0; i < nl; i++)
    lat[i] /= sf;
  g_autoptr (KinTensor) lt = kin_tensor_from_host_f32 (kin_backend_cpu (), lat, 4, le->shape, &error);
  g_autoptr (KinTensor) dec = kin_vae_decode_frames (vae, lt, &error);
  g_assert_no_error (error);
  size_t n;
  g_autofree float *want = f32 (fx, "decoded", &n);
  double d = max_abs_diff (dec->data, want, n);
  g_test_message ("VAE decoded max |diff| %.3e", d);
  g_assert_cmpfloat (d, <, 1e-4);
}

static KinPipeline *pipe_;

/* The README's first command: the default (demo) pipeline makes a 16-frame 64×64 clip. */
static void
test_default_pipeline (void)
{
  KinRequest r = { .prompt = "a red circle moving right on a black background", .seed = 42, .steps = 10 };
  g_autoptr (GError) error = NULL;
  g_autoptr (KinClip) c = kin_pipeline_generate (pipe_, &r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (c->frames, ==, 16);
  g_assert_cmpint (c->height, ==, 64);
  g_assert_cmpint (c->width, ==, 64);
  g_assert_cmpint (c->latent_h, ==, 8);
  g_assert_cmpint (c->request.steps, ==, 10);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  KinModelPaths paths = { 0 };
  /* the pack is part of the repository: not finding it is a failure, not a skip */
  if (!kin_pipeline_default_paths (&paths))
    g_error ("the demo pack was not found in data/models/kinora-demo");
  pack = g_path_get_dirname (paths.transformer);
  g_autoptr (GError) error = NULL;
  pipe_ = kin_pipeline_new (&paths, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error);
  g_assert_no_error (error);
  g_test_add_func ("/demo/t5-matches-pytorch", test_t5);
  g_test_add_func ("/demo/step-matches-pytorch", test_step);
  g_test_add_func ("/demo/vae-matches-pytorch", test_vae);
  g_test_add_func ("/demo/default-pipeline", test_default_pipeline);
  int rc = g_test_run ();
  kin_pipeline_free (pipe_);
  kin_model_paths_clear (&paths);
  g_free (pack);
  return rc;
}
