/* test-bench.c — the benches of `kinora-cli bench` (stdit, generate, vae) on the CPU at tiny
 * sizes: the STDiT FLOP formula against hand-computed values and against the FLOPs of the ops a
 * forward really issues (a counting wrapper around the CPU backend), and the CLI output: fields
 * present, numbers positive, clear errors with a non-zero exit for bad input.
 * Usage: test-bench KINORA_CLI [--tap] */
#include "kin-bench.h"
#include "kin-backend.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>
#include <sys/wait.h>

static const char *cli_path;

/* ---------------------------------------------------------------------------------------------
 * The formula by hand */

static void
tiny_config (KinStditConfig *cfg, int depth, int hidden, int heads, int caption, int rows)
{
  g_autoptr (GError) error = NULL;
  kin_stdit_config_init (cfg);
  cfg->version = KIN_STDIT_V2;
  cfg->depth = depth;
  cfg->hidden_size = hidden;
  cfg->num_heads = heads;
  cfg->patch_size[0] = 1;
  cfg->patch_size[1] = cfg->patch_size[2] = 2;
  cfg->in_channels = 4;
  cfg->out_channels = 8;
  cfg->caption_channels = caption;
  cfg->model_max_length = rows;
  cfg->mlp_hidden = 4 * hidden;
  cfg->freq_dim = 256;
  g_assert_true (kin_stdit_config_derive (cfg, NULL, NULL, &error));
  g_assert_no_error (error);
}

/* depth 1, C 24, 2 heads, F 96, Cin 4, Cout 8, p 2, Ccap 16, L 8 rows with 5 valid tokens,
 * D = C/3 = 8; B 2, T 3, latent 8×8 → S = 4·4 = 16, N = 48, M = 96.  Every linear is 2·rows·in·out,
 * written out one by one. */
static void
test_flops_by_hand (void)
{
  KinStditConfig cfg;
  tiny_config (&cfg, 1, 24, 2, 16, 8);
  g_assert_cmpint (cfg.size_dim, ==, 8);
  const int64_t linear[] = {
    2 * 96 * 16 * 24,   /* patch embedding: M rows, Cin·p² = 16 in, C out        73728 */
    2 * 2 * 256 * 24,   /* t_embedder.mlp.0: B rows, 256 → 24                    24576 */
    2 * 2 * 24 * 24,    /* t_embedder.mlp.2                                        2304 */
    2 * 4 * 256 * 8,    /* csize_embedder.mlp.0: 2 values per sample → 4 rows    16384 */
    2 * 4 * 8 * 8,      /* csize_embedder.mlp.2                                     512 */
    2 * 2 * 256 * 8,    /* ar_embedder.mlp.0                                       8192 */
    2 * 2 * 8 * 8,      /* ar_embedder.mlp.2                                        256 */
    2 * 2 * 256 * 24,   /* fl_embedder.mlp.0                                      24576 */
    2 * 2 * 24 * 24,    /* fl_embedder.mlp.2                                       2304 */
    2 * 2 * 256 * 24,   /* fps_embedder.mlp.0                                     24576 */
    2 * 2 * 24 * 24,    /* fps_embedder.mlp.2                                      2304 */
    2 * 2 * 24 * 144,   /* t_block.1: 24 → 6·24                                   13824 */
    2 * 2 * 24 * 72,    /* t_block_temp.1: 24 → 3·24                               6912 */
    2 * 16 * 16 * 24,   /* y_proj.fc1 on B·L = 16 rows: 16 → 24                   12288 */
    2 * 16 * 24 * 24,   /* y_proj.fc2                                             18432 */
    2 * 96 * 24 * 72,   /* block 0 attn.qkv                                      331776 */
    2 * 96 * 24 * 24,   /* attn.proj                                             110592 */
    2 * 96 * 24 * 72,   /* attn_temp.qkv                                         331776 */
    2 * 96 * 24 * 24,   /* attn_temp.proj                                        110592 */
    2 * 96 * 24 * 24,   /* cross_attn.q_linear                                   110592 */
    2 * 16 * 24 * 48,   /* cross_attn.kv_linear on the 16 caption rows            36864 */
    2 * 96 * 24 * 24,   /* cross_attn.proj                                       110592 */
    2 * 96 * 24 * 96,   /* mlp.fc1                                               442368 */
    2 * 96 * 96 * 24,   /* mlp.fc2                                               442368 */
    2 * 96 * 24 * 32,   /* final_layer.linear: 24 → p²·Cout = 32                 147456 */
  };
  int64_t lin = 0;
  for (guint i = 0; i < G_N_ELEMENTS (linear); i++)
    lin += linear[i];
  g_assert_cmpint (lin, ==, 2406144);
  /* attention, per head QKᵀ 2·q·k·hd + AV 2·q·k·hd with hd 12, 2 heads:
   * spatial  B·T = 6 sequences of 16 tokens:  6 · 2 · 4·16·16·12 = 147456
   * temporal B·S = 32 sequences of 3 frames:  32 · 2 · 4·3·3·12  =  27648
   * cross    B = 2 samples, 48 queries × 5 valid keys: 2 · 2 · 4·48·5·12 = 46080 */
  KinBenchStditFlops f;
  kin_bench_stdit_flops (&cfg, 2, 3, 8, 8, 8, 5, &f);
  g_assert_cmpint (f.linear, ==, lin);
  g_assert_cmpint (f.attn_spatial, ==, 147456);
  g_assert_cmpint (f.attn_temporal, ==, 27648);
  g_assert_cmpint (f.attn_cross, ==, 46080);
  g_assert_cmpint (f.total, ==, 2627328);

  /* The STDiT-XL/2 shape of the CLI run below (depth 1, 2 frames at 32² px = 4×4 latent, 2×2
   * patches: M = 2·2·4 = 16 tokens; caption 200 rows, 120 valid), and the default bench (depth
   * 28, 16 frames at 512²), both summed layer by layer as above in a separate script. */
  KinStditConfig xl;
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_bench_stdit_config (&xl, 1, &error));
  kin_bench_stdit_flops (&xl, 2, 2, 4, 4, 200, 120, &f);
  g_assert_cmpint (f.total, ==, G_GINT64_CONSTANT (7805583360));
  g_assert_true (kin_bench_stdit_config (&xl, 28, &error));
  kin_bench_stdit_flops (&xl, 2, 16, 64, 64, 200, 120, &f);
  g_assert_cmpint (f.linear, ==, G_GINT64_CONSTANT (43902421106688));
  g_assert_cmpint (f.attn_spatial, ==, G_GINT64_CONSTANT (4329327034368));
  g_assert_cmpint (f.total, ==, G_GINT64_CONSTANT (48806736887808));
}

/* ---------------------------------------------------------------------------------------------
 * The formula against the ops a forward issues */

static KinBackend counting;
static double counted;

static void
count_linear (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
              const KinTensor *bias, int64_t rows, int64_t in, int64_t out)
{
  counted += 2.0 * rows * in * out;
  kin_backend_cpu ()->linear (be, y, x, w, bias, rows, in, out);
}

static void
count_matmul (KinBackend *be, KinTensor *c, const KinTensor *a, const KinTensor *b, int batch,
              int m, int n, int k, gboolean ta, gboolean tb, float alpha, int64_t sa, int64_t sb,
              int64_t sc)
{
  counted += 2.0 * batch * m * n * k;
  kin_backend_cpu ()->matmul (be, c, a, b, batch, m, n, k, ta, tb, alpha, sa, sb, sc);
}

static void
count_attention (KinBackend *be, KinTensor *out, const KinTensor *q, const KinTensor *k,
                 const KinTensor *v, const KinAttention *d)
{
  for (int b = 0; b < d->batch; b++) {
    int keys = d->kv_lens ? d->kv_lens[b] : d->lk;
    counted += 4.0 * d->heads * d->lq * (double) keys * d->head_dim;
  }
  kin_backend_cpu ()->attention (be, out, q, k, v, d);
}

static void
count_conv2d (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
              const KinTensor *bias, const KinConv2d *d)
{
  int oh = (d->h + d->pad_t + d->pad_b - d->kh) / d->stride + 1;
  int ow = (d->w + d->pad_l + d->pad_r - d->kw) / d->stride + 1;
  counted += 2.0 * d->n * d->cout * oh * ow * (double) d->cin * d->kh * d->kw;
  kin_backend_cpu ()->conv2d (be, y, x, w, bias, d);
}

/* One forward of a random STDiT2 on the counting backend; returns the FLOPs it issued. */
static double
counted_forward (const KinStditConfig *cfg, int B, int T, int h, int w, int tokens)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KinStdit) m = kin_bench_stdit_random (cfg, KIN_DTYPE_BF16, &counting, NULL, &error);
  g_assert_no_error (error);
  int64_t xs[5] = { B, 4, T, h, w }, os[5] = { B, 8, T, h, w };
  int64_t ys[3] = { B, cfg->model_max_length, cfg->caption_channels };
  size_t nx = (size_t) B * 4 * T * h * w, ny = (size_t) B * ys[1] * ys[2];
  g_autofree float *hx = g_new (float, nx), *hy = g_new (float, ny);
  kin_bench_fill (hx, KIN_DTYPE_F32, nx, 0, 1.7, 1);
  kin_bench_fill (hy, KIN_DTYPE_F32, ny, 0, 0.3, 2);
  g_autoptr (KinTensor) x = kin_tensor_from_host_f32 (&counting, hx, 5, xs, &error);
  g_autoptr (KinTensor) y = kin_tensor_from_host_f32 (&counting, hy, 3, ys, &error);
  g_autoptr (KinTensor) out = kin_tensor_new (&counting, KIN_DTYPE_F32, 5, os, &error);
  g_assert_no_error (error);
  g_autofree int32_t *mask = g_new0 (int32_t, cfg->model_max_length);
  for (int i = 0; i < tokens; i++)
    mask[i] = 1;
  float ts[8] = { 900, 37, 500, 1, 2, 3, 4, 5 };
  float height = h * 8.0f, width = w * 8.0f, frames = (float) T, ar = height / width, fps = 24;
  KinStditInput in = { .x = x, .timestep = ts, .y = y, .mask = mask, .mask_rows = 1,
                       .height = &height, .width = &width, .num_frames = &frames, .ar = &ar,
                       .fps = &fps, .cond_rows = 1 };
  counted = 0;
  g_assert_true (kin_stdit_forward (m, &in, out, &error));
  g_assert_no_error (error);
  g_autofree float *o = kin_tensor_to_host_f32 (out);
  for (int64_t i = 0; i < kin_tensor_numel (out); i++)
    g_assert_true (isfinite (o[i]));
  return counted;
}

static void
test_flops_counted (void)
{
  counting = *kin_backend_cpu ();
  counting.error = NULL;
  counting.linear = count_linear;
  counting.matmul = count_matmul;
  counting.attention = count_attention;
  counting.conv2d = count_conv2d;
  KinStditConfig cfg;
  tiny_config (&cfg, 2, 48, 4, 32, 10);
  /* even sizes, then odd ones (padded to whole patches) and a batch without CFG */
  const int cases[][5] = { { 2, 3, 6, 10, 7 }, { 1, 2, 5, 7, 10 }, { 3, 1, 4, 4, 1 } };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    const int *c = cases[i];
    double issued = counted_forward (&cfg, c[0], c[1], c[2], c[3], c[4]);
    KinBenchStditFlops f;
    kin_bench_stdit_flops (&cfg, c[0], c[1], c[2], c[3], cfg.model_max_length, c[4], &f);
    g_test_message ("case %u: issued %.0f, formula %" G_GINT64_FORMAT, i, issued, f.total);
    g_assert_cmpfloat (issued, ==, (double) f.total);
  }
  g_assert_null (counting.error);
}

/* ---------------------------------------------------------------------------------------------
 * The CLI */

typedef struct {
  int status;
  char *out, *err;
} Run;

static void
run_clear (Run *r)
{
  g_free (r->out);
  g_free (r->err);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Run, run_clear)

static void
run_cli (Run *r, const char *args)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) extra = g_strsplit (args, " ", -1);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) cli_path);
  g_ptr_array_add (argv, (gpointer) "bench");
  for (guint i = 0; extra[i] != NULL; i++)
    g_ptr_array_add (argv, extra[i]);
  g_ptr_array_add (argv, NULL);
  int wait = 0;
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &r->out, &r->err, &wait, &error));
  g_assert_no_error (error);
  g_assert_true (WIFEXITED (wait));     /* an error is an exit status, never a crash */
  r->status = WEXITSTATUS (wait);
  g_test_message ("bench %s → %d\n%s%s", args, r->status, r->out, r->err);
}

/* The number captured by @pattern's first group in @text; fails the test when absent. */
static double
field (const char *text, const char *pattern)
{
  g_autoptr (GRegex) re = g_regex_new (pattern, G_REGEX_MULTILINE, 0, NULL);
  g_autoptr (GMatchInfo) mi = NULL;
  g_assert_nonnull (re);
  if (!g_regex_match (re, text, 0, &mi))
    g_error ("no match for /%s/ in:\n%s", pattern, text);
  g_autofree char *s = g_match_info_fetch (mi, 1);
  return g_ascii_strtod (s, NULL);
}

static void
assert_positive (const char *text, const char *pattern)
{
  double v = field (text, pattern);
  if (!(v > 0 && isfinite (v)))
    g_error ("/%s/ gave %g, expected a positive number", pattern, v);
}

static void
test_cli_stdit (void)
{
  g_auto (Run) r = { 0 };
  run_cli (&r, "stdit --backend cpu --depth 1 --frames 2 --size 32 --iters 2 --warmup 0");
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, "depth 1, hidden 1152, 16 heads × 72"));
  g_assert_nonnull (strstr (r.out, "batch 2 × latent 4×2×4×4"));
  g_assert_true (g_regex_match_simple ("^  backend +cpu ", r.out, G_REGEX_MULTILINE, 0));
  assert_positive (r.out, "^  forward +([0-9.]+) ms +median of 2");
  /* the hand-computed count of test_flops_by_hand for exactly this run */
  g_assert_cmpfloat (field (r.out, "^  FLOP per forward +([0-9]+)"), ==, 7805583360.0);
  assert_positive (r.out, "^  forward rate +([0-9.]+) TFLOP/s");
  assert_positive (r.out, "^  baseline linear +([0-9.]+) TFLOP/s +backend linear \\[16 × 1152\\]");
  assert_positive (r.out, "^  ratio +([0-9.]+)");
  assert_positive (r.out, "^  peak memory +([0-9.]+) MiB +process peak RSS \\(getrusage");
  g_assert_true (g_regex_match_simple ("^  output finite +yes", r.out, G_REGEX_MULTILINE, 0));
}

static void
test_cli_generate (void)
{
  g_auto (Run) r = { 0 };
  run_cli (&r, "generate --backend cpu --depth 1 --frames 2 --size 16 --steps 3 --dtype f32");
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, "IDDPM 3 steps, cfg 7"));
  g_assert_nonnull (strstr (r.out, "random caption embeddings of 120 tokens"));
  g_assert_true (g_regex_match_simple ("^  text encoder +not run", r.out, G_REGEX_MULTILINE, 0));
  assert_positive (r.out, "^  sampling +([0-9.]+) s +3 steps");
  assert_positive (r.out, "^  sampling .* ([0-9.]+) s per step");
  assert_positive (r.out, "^  sampling rate +([0-9.]+) TFLOP/s");
  assert_positive (r.out, "^  VAE decode +([0-9.]+) s +2 frames");
  assert_positive (r.out, "^  VAE decode .* ([0-9.]+) ms per frame");
  double total = field (r.out, "^  total +([0-9.]+) s");
  double sampling = field (r.out, "^  sampling +([0-9.]+) s");
  g_assert_cmpfloat (total, >=, sampling);
  assert_positive (r.out, "^  peak memory +([0-9.]+) MiB");
  assert_positive (r.out, "^  ratio +([0-9.]+)");
  g_assert_true (g_regex_match_simple ("^  output finite +yes", r.out, G_REGEX_MULTILINE, 0));
}

static void
test_cli_vae (void)
{
  g_auto (Run) r = { 0 };
  run_cli (&r, "vae --backend cpu --frames 3 --size 16 --micro-batch 2");
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, "3 frames 16×16 (one pass, micro-batch 2)"));
  assert_positive (r.out, "^  decode +([0-9.]+) s");
  assert_positive (r.out, "^  decode .* ([0-9.]+) ms per frame");
  assert_positive (r.out, "^  decoder +([0-9.]+) GFLOP/s");
  assert_positive (r.out, "^  peak memory +([0-9.]+) MiB");
  assert_positive (r.out, "^  ratio +([0-9.]+)");
  g_assert_null (strstr (r.out, "inf GFLOP/s"));
  g_assert_true (g_regex_match_simple ("^  output finite +yes", r.out, G_REGEX_MULTILINE, 0));
}

static void
expect_error (const char *args, int status, const char *message)
{
  g_auto (Run) r = { 0 };
  run_cli (&r, args);
  if (status >= 0)
    g_assert_cmpint (r.status, ==, status);
  else
    g_assert_cmpint (r.status, !=, 0);
  if (strstr (r.err, message) == NULL)
    g_error ("bench %s: expected '%s' in stderr:\n%s", args, message, r.err);
}

static void
test_cli_errors (void)
{
  expect_error ("stdit --backend cpu --size 100", 2, "multiples of 16");
  expect_error ("stdit --backend cpu --height 64 --width 40", 2, "multiples of 16");
  expect_error ("stdit --backend cpu --frames 0", 2, "--frames takes 1 to 1024");
  expect_error ("stdit --backend cpu --depth -3", 2, "--depth takes");
  expect_error ("stdit --backend cpu --iters 0", 2, "--iters takes");
  expect_error ("stdit --backend cpu --dtype int8", 2, "--dtype takes bf16");
  expect_error ("stdit --backend tpu", 2, "--backend takes cpu, cuda or auto");
  expect_error ("stdit --frames abc", 2, "abc");
  expect_error ("generate --backend cpu --steps 0", 2, "--steps takes");
  expect_error ("generate --backend cpu --size 24", 2, "multiples of 16");
  expect_error ("vae --backend cpu --size 12", 2, "multiples of 8");
  expect_error ("vae --backend cpu --frames -1", 2, "--frames takes");
  /* impossible memory: refused before anything is allocated */
  expect_error ("stdit --backend cpu --size 8192 --frames 1024", 1, "needs about");
  expect_error ("generate --backend cpu --size 8192 --frames 1024", 1, "needs about");

  /* cuda asked for: either it is there and runs, or the bench refuses to measure the CPU */
  g_auto (Run) r = { 0 };
  run_cli (&r, "stdit --backend cuda --depth 1 --frames 1 --size 16 --iters 1 --warmup 0");
  if (r.status == 0) {
    g_assert_true (g_regex_match_simple ("^  backend +cuda", r.out, G_REGEX_MULTILINE, 0));
  } else {
    g_assert_cmpint (r.status, ==, 1);
    g_assert_nonnull (strstr (r.err, "--backend cuda was requested, but CUDA is not available"));
    g_assert_null (strstr (r.out, "forward rate"));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (int i = 1; i < argc; i++)
    if (argv[i][0] != '-')
      cli_path = argv[i];
  g_test_add_func ("/bench/stdit-flops/by-hand", test_flops_by_hand);
  g_test_add_func ("/bench/stdit-flops/counted", test_flops_counted);
  if (cli_path != NULL) {
    g_test_add_func ("/bench/cli/stdit", test_cli_stdit);
    g_test_add_func ("/bench/cli/generate", test_cli_generate);
    g_test_add_func ("/bench/cli/vae", test_cli_vae);
    g_test_add_func ("/bench/cli/errors", test_cli_errors);
  }
  return g_test_run ();
}
