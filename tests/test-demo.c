/* test-demo.c — the demo model pack: the C engine against the trainer's PyTorch outputs
 * (tests/data/demo, recorded by tools/demo-model/fixtures.py), and clips that follow the prompt. */
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

/* --- does it follow the prompt? --- */

typedef struct {
  const char *prompt;
  double r, g, b;          /* expected colour */
  int dx, dy;              /* expected direction of motion */
} Case;

/* Foreground = pixels far from the frame's median (the background); returns the mean colour
 * of the foreground over the clip and the centroid in the first and last quarter. */
static void
analyse (const KinClip *c, double col[3], double c0[2], double c1[2])
{
  int F = c->frames, H = c->height, W = c->width;
  double sum[3] = { 0 }, cnt = 0, s0[3] = { 0 }, s1[3] = { 0 };
  for (int f = 0; f < F; f++) {
    const guint8 *fr = c->rgb + (size_t) f * H * W * 3;
    /* background = the colour of the border */
    double bg[3] = { 0 };
    int nb = 0;
    for (int x = 0; x < W; x++)
      for (int k = 0; k < 3; k++)
        bg[k] += fr[x * 3 + k] + fr[((size_t) (H - 1) * W + x) * 3 + k], nb += k == 0 ? 2 : 0;
    for (int k = 0; k < 3; k++)
      bg[k] /= nb;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const guint8 *p = fr + ((size_t) y * W + x) * 3;
        double d = fabs (p[0] - bg[0]) + fabs (p[1] - bg[1]) + fabs (p[2] - bg[2]);
        if (d < 120)
          continue;
        for (int k = 0; k < 3; k++)
          sum[k] += p[k];
        cnt++;
        double *s = f < F / 4 ? s0 : f >= F - F / 4 ? s1 : NULL;
        if (s)
          s[0] += x, s[1] += y, s[2] += 1;
      }
  }
  for (int k = 0; k < 3; k++)
    col[k] = cnt > 0 ? sum[k] / cnt : 0;
  c0[0] = s0[2] ? s0[0] / s0[2] : NAN, c0[1] = s0[2] ? s0[1] / s0[2] : NAN;
  c1[0] = s1[2] ? s1[0] / s1[2] : NAN, c1[1] = s1[2] ? s1[1] / s1[2] : NAN;
}

static gboolean
colour_right (const double col[3], const Case *k)
{
  /* the expected colour must be the nearest of the palette */
  static const double pal[][3] = { { 255, 0, 0 }, { 0, 200, 0 }, { 0, 0, 255 }, { 255, 255, 0 },
                                   { 255, 255, 255 }, { 160, 32, 240 }, { 255, 140, 0 }, { 0, 255, 255 } };
  int best = -1;
  double bd = 1e30;
  for (guint i = 0; i < G_N_ELEMENTS (pal); i++) {
    double d = pow (col[0] - pal[i][0], 2) + pow (col[1] - pal[i][1], 2) + pow (col[2] - pal[i][2], 2);
    if (d < bd)
      bd = d, best = (int) i;
  }
  return pal[best][0] == k->r && pal[best][1] == k->g && pal[best][2] == k->b;
}

static gboolean
direction_right (const double c0[2], const double c1[2], const Case *k)
{
  if (isnan (c0[0]) || isnan (c1[0]))
    return FALSE;
  double dx = c1[0] - c0[0], dy = c1[1] - c0[1];
  if (k->dx != 0)
    return dx * k->dx > 4 && fabs (dx) > fabs (dy);
  return dy * k->dy > 4 && fabs (dy) > fabs (dx);
}

static KinPipeline *pipe_;

static KinClip *
make (const char *prompt, guint64 seed)
{
  KinRequest r = { .prompt = (char *) prompt, .height = 64, .width = 64, .frames = 16, .steps = 50,
                   .guidance = 7.0f, .seed = seed };
  g_autoptr (GError) error = NULL;
  KinClip *c = kin_pipeline_generate (pipe_, &r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  return c;
}

static void
test_follows_prompt (void)
{
  static const Case cases[] = {
    { "a red circle moving right on a black background", 255, 0, 0, 1, 0 },
    { "a blue square moving up on a black background", 0, 0, 255, 0, -1 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (KinClip) c = make (cases[i].prompt, 42);
    double col[3], c0[2], c1[2];
    analyse (c, col, c0, c1);
    g_test_message ("%s: colour (%.0f, %.0f, %.0f), centroid (%.1f, %.1f) → (%.1f, %.1f)", cases[i].prompt,
                    col[0], col[1], col[2], c0[0], c0[1], c1[0], c1[1]);
    g_assert_true (colour_right (col, &cases[i]));
    g_assert_true (direction_right (c0, c1, &cases[i]));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  KinModelPaths paths = { 0 };
  if (!kin_pipeline_default_paths (&paths)) {
    g_test_skip ("the demo pack is not in data/models/kinora-demo");
    return 77;
  }
  pack = g_path_get_dirname (paths.transformer);
  g_autoptr (GError) error = NULL;
  pipe_ = kin_pipeline_new (&paths, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error);
  g_assert_no_error (error);
  g_test_add_func ("/demo/t5-matches-pytorch", test_t5);
  g_test_add_func ("/demo/step-matches-pytorch", test_step);
  g_test_add_func ("/demo/vae-matches-pytorch", test_vae);
  /* FOLLOWS_PROMPT */
  int rc = g_test_run ();
  kin_pipeline_free (pipe_);
  kin_model_paths_clear (&paths);
  g_free (pack);
  return rc;
}
