/* test-demo.c — the demo model pack: the C engine against the trainer's PyTorch outputs
 * (tests/data/demo, recorded by tools/demo-model/fixtures.py), and how well the clips the default
 * pipeline makes follow their prompts (colour, shape, direction measured on the pixels). */
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

/* ------------------------------------------------------------------ prompt following
 * Measured on the RGB8 frames of the default pipeline (100 IDDPM steps, guidance 7), with the
 * analysis tools/demo-model/sample.py uses on the trainer side: foreground = pixels that differ
 * from the frame's border colour by more than 0.3 in some channel; colour = the dataset colour
 * nearest to the foreground's mean; shape = how much of its bounding box the foreground fills
 * (square ≈ 1, circle ≈ π/4, triangle ≈ 1/2); direction = how the centroid moves from the first to
 * the last quarter of the clip (at least 4 pixels along the dominant axis). */

static const char *const colour_names[] = { "red", "green", "blue", "yellow", "white", "purple", "orange", "cyan" };
static const double colour_rgb[][3] = { { 0.92, 0.12, 0.10 }, { 0.10, 0.80, 0.15 }, { 0.12, 0.25, 0.95 },
                                        { 0.95, 0.90, 0.10 }, { 0.97, 0.97, 0.97 }, { 0.60, 0.15, 0.85 },
                                        { 1.00, 0.55, 0.05 }, { 0.10, 0.85, 0.90 } };

typedef struct {
  const char *colour, *shape, *direction; /* NULL when not measurable */
  double fill;
  double dx, dy;                          /* centroid motion, first → last quarter */
} Analysis;

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* The background of an RGB8 frame: the per-channel median of its 2-pixel border, in [0, 1]. */
static void
frame_background (const guint8 *f, int H, int W, double bg[3])
{
  g_autofree double *border = g_new (double, (size_t) 8 * (H + W));
  for (int k = 0; k < 3; k++) {
    int n = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        if (y < 2 || y >= H - 2 || x < 2 || x >= W - 2)
          border[n++] = f[((size_t) y * W + x) * 3 + k] / 255.0;
    qsort (border, n, sizeof *border, cmp_double);
    bg[k] = border[n / 2];
  }
}

static Analysis
analyse (const KinClip *c)
{
  Analysis r = { 0 };
  int T = c->frames, H = c->height, W = c->width;
  g_autofree guint8 *fg = g_new0 (guint8, (size_t) T * H * W);
  g_autofree double *fills = g_new0 (double, T);
  double sum[3] = { 0 }, count = 0, q0[3] = { 0 }, q1[3] = { 0 };
  int nfill = 0;
  for (int t = 0; t < T; t++) {
    const guint8 *f = c->rgb + (size_t) t * H * W * 3;
    double bg[3];
    frame_background (f, H, W, bg);
    int n = 0, x0 = W, x1 = -1, y0 = H, y1 = -1;
    double cx = 0, cy = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const guint8 *p = f + ((size_t) y * W + x) * 3;
        double d = 0;
        for (int k = 0; k < 3; k++)
          d = MAX (d, fabs (p[k] / 255.0 - bg[k]));
        if (d <= 0.3)
          continue;
        fg[((size_t) t * H + y) * W + x] = 1;
        for (int k = 0; k < 3; k++)
          sum[k] += p[k] / 255.0;
        count++, n++, cx += x, cy += y;
        x0 = MIN (x0, x), x1 = MAX (x1, x), y0 = MIN (y0, y), y1 = MAX (y1, y);
      }
    if (n >= 6) {
      fills[nfill++] = (double) n / ((double) (x1 - x0 + 1) * (y1 - y0 + 1));
      double *q = t < T / 4 ? q0 : t >= T - T / 4 ? q1 : NULL;
      if (q)
        q[0] += cx / n, q[1] += cy / n, q[2] += 1;
    }
  }
  if (count < 8)
    return r;
  double best = 1e30;
  for (guint i = 0; i < G_N_ELEMENTS (colour_names); i++) {
    double d = 0;
    for (int k = 0; k < 3; k++)
      d += pow (sum[k] / count - colour_rgb[i][k], 2);
    if (d < best)
      best = d, r.colour = colour_names[i];
  }
  if (nfill > 0) {
    qsort (fills, nfill, sizeof *fills, cmp_double);
    r.fill = nfill % 2 ? fills[nfill / 2] : 0.5 * (fills[nfill / 2 - 1] + fills[nfill / 2]);
    r.shape = r.fill > 0.88 ? "square" : r.fill > 0.64 ? "circle" : "triangle";
  }
  if (q0[2] > 0 && q1[2] > 0) {
    r.dx = q1[0] / q1[2] - q0[0] / q0[2];
    r.dy = q1[1] / q1[2] - q0[1] / q0[2];
    if (MAX (fabs (r.dx), fabs (r.dy)) < 4)
      r.direction = "still";
    else if (fabs (r.dx) > fabs (r.dy))
      r.direction = r.dx > 0 ? "right" : "left";
    else
      r.direction = r.dy > 0 ? "down" : "up";
  }
  return r;
}

/* The centroid of one colour's pixels over the clip: foreground pixels (as in analyse ()) whose
 * nearest dataset colour is @colour; per frame with at least 6 of them, the centroid; then the
 * least-squares slope of x and y against the frame index, in pixels per frame.  Returns the number
 * of frames that had the colour. */
static int
colour_track (const KinClip *c, const char *colour, double *slope_x, double *slope_y)
{
  int T = c->frames, H = c->height, W = c->width, want = -1, nf = 0;
  for (guint i = 0; i < G_N_ELEMENTS (colour_names); i++)
    if (strcmp (colour_names[i], colour) == 0)
      want = (int) i;
  g_assert_cmpint (want, >=, 0);
  double st = 0, stt = 0, sx = 0, sy = 0, stx = 0, sty = 0;
  for (int t = 0; t < T; t++) {
    const guint8 *f = c->rgb + (size_t) t * H * W * 3;
    double bg[3];
    frame_background (f, H, W, bg);
    int n = 0;
    double cx = 0, cy = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const guint8 *p = f + ((size_t) y * W + x) * 3;
        double d = 0, best = 1e30;
        int nearest = -1;
        for (int k = 0; k < 3; k++)
          d = MAX (d, fabs (p[k] / 255.0 - bg[k]));
        if (d <= 0.3)
          continue;
        for (guint i = 0; i < G_N_ELEMENTS (colour_names); i++) {
          double e = 0;
          for (int k = 0; k < 3; k++)
            e += pow (p[k] / 255.0 - colour_rgb[i][k], 2);
          if (e < best)
            best = e, nearest = (int) i;
        }
        if (nearest == want)
          n++, cx += x, cy += y;
      }
    if (n < 6)
      continue;
    nf++, st += t, stt += (double) t * t, sx += cx / n, sy += cy / n;
    stx += t * cx / n, sty += t * cy / n;
  }
  double den = nf * stt - st * st;
  *slope_x = den > 0 ? (nf * stx - st * sx) / den : 0;
  *slope_y = den > 0 ? (nf * sty - st * sy) / den : 0;
  return nf;
}

static KinClip *
generate (const char *prompt, guint64 seed)
{
  KinRequest r = { .prompt = (char *) prompt, .seed = seed }; /* everything else: the defaults */
  g_autoptr (GError) error = NULL;
  KinClip *c = kin_pipeline_generate (pipe_, &r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (c->height, ==, 64);
  g_assert_cmpint (c->frames, ==, 16);
  return c;
}

/* Ten fixed prompts (the same as tools/demo-model/sample.py --eval), each at its own seed with the
 * default request: colour, shape and direction must each be right for a majority (≥ 6 of 10). */
static void
test_ten_prompts (void)
{
  static const char *const cases[][3] = {
    { "red", "circle", "right" },     { "green", "square", "left" },   { "blue", "triangle", "up" },
    { "yellow", "circle", "down" },   { "white", "square", "right" },  { "purple", "triangle", "left" },
    { "orange", "circle", "up" },     { "cyan", "square", "down" },    { "red", "triangle", "right" },
    { "blue", "circle", "left" },
  };
  int ok[3] = { 0 };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    const char *col = cases[i][0], *shape = cases[i][1], *dir = cases[i][2];
    g_autofree char *prompt = g_strdup_printf ("%s %s %s moving %s on a black background",
                                               strchr ("aeiou", col[0]) ? "an" : "a", col, shape, dir);
    g_autoptr (KinClip) c = generate (prompt, 100 + i);
    Analysis a = analyse (c);
    ok[0] += g_strcmp0 (a.colour, col) == 0;
    ok[1] += g_strcmp0 (a.shape, shape) == 0;
    ok[2] += g_strcmp0 (a.direction, dir) == 0;
    g_test_message ("%-52s → %s %s (fill %.2f) %s (%+.1f, %+.1f)", prompt, a.colour ? a.colour : "-",
                    a.shape ? a.shape : "-", a.fill, a.direction ? a.direction : "-", a.dx, a.dy);
  }
  g_test_message ("prompt following over 10 prompts: colour %d/10, shape %d/10, direction %d/10",
                  ok[0], ok[1], ok[2]);
  g_assert_cmpint (ok[0], >=, 6);
  g_assert_cmpint (ok[1], >=, 6);
  g_assert_cmpint (ok[2], >=, 6);
}

/* The two named prompts, each at seeds 1, 2 and 3 with the default request: the colour's
 * centroid must move the asked way for at least 2 of the 3 seeds — seen in at least 8 of the 16
 * frames, at least 0.5 px per frame along the asked axis (the dataset's shapes move 1.6–2.4), and
 * less than half of that across it.  (Thresholds fixed before the pack was measured against them.) */
static void
check_motion (const char *prompt, const char *colour, double ax, double ay)
{
  int good = 0;
  for (guint64 seed = 1; seed <= 3; seed++) {
    g_autoptr (KinClip) c = generate (prompt, seed);
    double sx, sy;
    int nf = colour_track (c, colour, &sx, &sy);
    double along = sx * ax + sy * ay, across = fabs (sx * ay - sy * ax);
    gboolean ok = nf >= 8 && along >= 0.5 && across < 0.5 * along;
    g_test_message ("%s, seed %" G_GUINT64_FORMAT ": %s in %d frames, centroid %+.2f, %+.2f px/frame → %s",
                    prompt, seed, colour, nf, sx, sy, ok ? "ok" : "wrong");
    good += ok;
  }
  g_assert_cmpint (good, >=, 2);
}

static void
test_red_circle_right (void)
{
  check_motion ("a red circle moving right on a black background", "red", 1, 0);
}

static void
test_blue_square_up (void)
{
  check_motion ("a blue square moving up", "blue", 0, -1);
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
  g_test_add_func ("/demo/ten-prompts", test_ten_prompts);
  g_test_add_func ("/demo/red-circle-moves-right", test_red_circle_right);
  g_test_add_func ("/demo/blue-square-moves-up", test_blue_square_up);
  int rc = g_test_run ();
  kin_pipeline_free (pipe_);
  kin_model_paths_clear (&paths);
  g_free (pack);
  return rc;
}
