/* kin-bench-stdit.c — `kinora-cli bench stdit`: an Open-Sora 1.1 STDiT-XL/2-shaped STDiT2 (depth
 * 28, hidden 1152, 16 heads × 72, patch 1×2×2, 4 latent channels, pred_sigma, caption 4096 ×
 * 200 rows, qk_norm) with random weights built in memory (bf16 by default, as the checkpoints are
 * run on a GPU), one forward of the CFG batch (2) at 16 frames × 512² (latent 16×64×64) on any
 * backend.  Prints the median ms per forward, the analytic FLOP count of that forward, TFLOP/s,
 * the backend's own linear at the dominant MLP shape as the baseline (same run, same weight
 * type), their ratio, and peak memory.
 *
 * Also the shared pieces of `bench generate`: the config, the random weights, the FLOP formula. */
#include "kin-bench.h"
#include "kin-backend-cuda.h"
#include "kin-error.h"
#include "kin-weights.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The model runs its MLP in row chunks of this many tokens (MLP_CHUNK_ROWS in kin-stdit.c);
 * the baseline linear uses the same row count. */
#define MLP_CHUNK_ROWS 16384

gboolean
kin_bench_stdit_config (KinStditConfig *cfg, int depth, GError **error)
{
  kin_stdit_config_init (cfg);
  cfg->version = KIN_STDIT_V2;
  cfg->depth = depth;
  cfg->hidden_size = 1152;
  cfg->num_heads = 16;
  cfg->patch_size[0] = 1;
  cfg->patch_size[1] = cfg->patch_size[2] = 2;
  cfg->in_channels = 4;
  cfg->out_channels = 8;             /* pred_sigma */
  cfg->caption_channels = 4096;
  cfg->model_max_length = 200;
  cfg->mlp_hidden = 4 * 1152;
  cfg->freq_dim = 256;
  cfg->input_sq_size = 512;
  /* qk_norm is true by default for v1.1 when neither a config nor weights say otherwise */
  return kin_stdit_config_derive (cfg, NULL, NULL, error);
}

/* ---------------------------------------------------------------------------------------------
 * The FLOP count.
 *
 * One forward as kin-stdit.c runs it (without x_mask), multiply-adds counted as 2 FLOPs,
 * element-wise work (norms, modulation, softmax, GELU/SiLU, RoPE, adds, permutes) ignored.
 * B batch, T frames, H×W latent, p patch, S = ⌈H/p⌉·⌈W/p⌉ tokens per frame, N = T·S tokens per
 * sample, M = B·N, C hidden, F MLP hidden, Cin/Cout latent channels in/out, Ccap caption
 * channels, L caption rows (y is [B, L, Ccap]), Lv valid caption tokens per sample, D = C/3
 * size-embedding width, f = 256 frequency features.  A linear on R rows, K inputs, N outputs:
 * 2·R·K·N.  Attention of Q queries over K keys with h heads of hd = C/h: QKᵀ 2·Q·K·hd and AV
 * 2·Q·K·hd per head, 4·Q·K·C over all heads.
 *
 *   patch embedding (a stride-p conv, i.e. a linear on patches)  2·M·(Cin·p²)·C
 *   timestep embedder (f → C → C)                                2·B·(f·C + C·C)
 *   v1.1 size embedders: csize (2 values per sample) and ar      2·(2B + B)·(f·D + D·D)
 *                        fl and fps                              2·2B·(f·C + C·C)
 *   t_block C → 6C, v1.1 t_block_temp C → 3C                     2·B·C·6C + 2·B·C·3C
 *   caption embedder on every row (masked afterwards)            2·B·L·(Ccap·C + C·C)
 *   per block:
 *     spatial self-attention   qkv, proj    2·M·C·3C + 2·M·C·C   QKᵀ+AV  4·(B·T)·S²·C
 *     temporal self-attention  qkv, proj    2·M·C·3C + 2·M·C·C   QKᵀ+AV  4·(B·S)·T²·C
 *     cross-attention  q, proj on M rows    2·M·C·C · 2
 *                      kv on B·L rows       2·B·L·C·2C           QKᵀ+AV  4·M·Lv·C
 *     MLP  fc1, fc2                         2·M·C·F · 2
 *   final layer                                                  2·M·C·(p²·Cout)
 * For the default bench (B 2, T 16, 64×64 latent, depth 28, L 200, Lv 120) this is
 * 48 806 736 887 808 FLOP (≈ 48.8 TFLOP), 90 % of it in the linear layers and 8.9 % in spatial
 * attention; tests/test-bench.c checks it against hand-computed values and against the FLOPs of
 * the ops a forward actually issues. */

void
kin_bench_stdit_flops (const KinStditConfig *cfg, int64_t batch, int64_t frames, int64_t h,
                       int64_t w, int64_t caption_rows, int64_t caption_tokens,
                       KinBenchStditFlops *out)
{
  int64_t B = batch, T = frames, p = cfg->patch_size[1];
  int64_t S = ((h + p - 1) / p) * ((w + p - 1) / p), N = T * S, M = B * N;
  int64_t C = cfg->hidden_size, F = cfg->mlp_hidden, f = cfg->freq_dim, D = cfg->size_dim;
  int64_t L = caption_rows, Lv = caption_tokens;
  int64_t lin = 0;
  lin += 2 * M * (cfg->in_channels * p * p) * C;                  /* patch embedding */
  lin += 2 * B * (f * C + C * C);                                 /* t_embedder */
  lin += 2 * B * C * 6 * C;                                       /* t_block */
  if (cfg->version == KIN_STDIT_V2) {
    lin += 2 * (2 * B + B) * (f * D + D * D);                     /* csize, ar */
    lin += 2 * (2 * B) * (f * C + C * C);                         /* fl, fps */
    lin += 2 * B * C * 3 * C;                                     /* t_block_temp */
  }
  lin += 2 * B * L * (cfg->caption_channels * C + C * C);         /* y_embedder */
  int64_t per_block = 2 * M * C * 3 * C + 2 * M * C * C           /* spatial qkv, proj */
                      + 2 * M * C * 3 * C + 2 * M * C * C         /* temporal qkv, proj */
                      + 2 * M * C * C * 2 + 2 * B * L * C * 2 * C /* cross q, proj; kv */
                      + 2 * M * C * F * 2;                        /* MLP */
  lin += cfg->depth * per_block;
  lin += 2 * M * C * (p * p * cfg->out_channels);                 /* final layer */
  out->linear = lin;
  out->attn_spatial = cfg->depth * 4 * (B * T) * S * S * C;
  out->attn_temporal = cfg->depth * 4 * (B * S) * T * T * C;
  out->attn_cross = cfg->depth * 4 * M * Lv * C;
  out->total = out->linear + out->attn_spatial + out->attn_temporal + out->attn_cross;
}

static double
stdit_params (const KinStditConfig *cfg)
{
  double C = cfg->hidden_size, F = cfg->mlp_hidden, f = cfg->freq_dim, D = cfg->size_dim;
  double p2 = (double) cfg->patch_size[1] * cfg->patch_size[2];
  double block = 2 * (4 * C * C + 4 * C) + (4 * C * C + 4 * C) + (2 * C * F + F + C) + 9 * C;
  return C * cfg->in_channels * p2 + C + (f * C + C * C + 2 * C) + 9 * C * C + 9 * C +
         (cfg->caption_channels * C + C * C + 2 * C) +
         (double) cfg->model_max_length * cfg->caption_channels +
         2 * (f * D + D * D + 2 * D) + 2 * (f * C + C * C + 2 * C) + cfg->depth * block +
         2 * C + C * p2 * cfg->out_channels;
}

double
kin_bench_stdit_bytes (const KinStditConfig *cfg, KinDType dtype, int64_t batch, int64_t frames,
                       int64_t h, int64_t w)
{
  int64_t p = cfg->patch_size[1];
  double S = (double) ((h + p - 1) / p) * ((w + p - 1) / p), M = batch * frames * S;
  double C = cfg->hidden_size, L = cfg->model_max_length;
  /* the work buffers of kin-stdit.c: x, xn, att, h, xp, conv [M, C], qkv [M, 3C], the q/k/v
   * split [3M, C], one MLP chunk, the final tokens, caption buffers; plus x, out and y */
  double act = M * C * 12 + MIN (M, MLP_CHUNK_ROWS) * (double) cfg->mlp_hidden +
               M * p * p * cfg->out_channels * 2 + batch * L * (C * 5 + cfg->caption_channels);
  return stdit_params (cfg) * kin_dtype_size (dtype) + act * sizeof (float);
}

/* ---------------------------------------------------------------------------------------------
 * Random weights under the checkpoint's key names (see kin-stdit-load.c). */

typedef struct {
  KinWeights *ws;
  KinDType dtype;
  guint64 seed;
  double bytes;
  GError *error;
} Builder;

/* Adds @name [d0(, d1)] with values uniform in mean ± half; sticky errors. */
static void
add (Builder *b, KinDType dtype, const char *name, int ndim, const int64_t *shape, double mean,
     double half)
{
  if (b->error != NULL)
    return;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  size_t bytes = (size_t) n * kin_dtype_size (dtype);
  void *data = g_try_malloc (MAX (bytes, 1));
  if (data == NULL) {
    g_set_error (&b->error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "out of host memory building the random weight %s (%.1f MiB)", name,
                 bytes / (1024.0 * 1024.0));
    return;
  }
  kin_bench_fill (data, dtype, n, mean, half, ++b->seed);
  g_autoptr (GBytes) keep = g_bytes_new_take (data, bytes);
  kin_weights_keep_bytes (b->ws, keep);
  b->bytes += bytes;
  kin_weights_add_entry (b->ws, name, dtype, ndim, shape, data, bytes, "(random, in memory)",
                         &b->error);
}

static void
add1 (Builder *b, const char *name, int64_t d0, double mean, double half)
{
  add (b, b->dtype, name, 1, &d0, mean, half);
}

static void
add2 (Builder *b, const char *name, int64_t d0, int64_t d1, double mean, double half)
{
  int64_t shape[2] = { d0, d1 };
  add (b, b->dtype, name, 2, shape, mean, half);
}

/* A torch Linear: weight [out, in] uniform ±1/√in (variance-preserving), bias ±0.02. */
static void
add_linear (Builder *b, const char *prefix, int64_t out, int64_t in, double gain)
{
  g_autofree char *w = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *bias = g_strconcat (prefix, ".bias", NULL);
  add2 (b, w, out, in, 0, gain * sqrt (3.0 / (double) in));
  add1 (b, bias, out, 0, 0.02);
}

static void
add_mlp (Builder *b, const char *prefix, int64_t out, int64_t freq)
{
  g_autofree char *m0 = g_strconcat (prefix, ".mlp.0", NULL);
  g_autofree char *m2 = g_strconcat (prefix, ".mlp.2", NULL);
  add_linear (b, m0, out, freq, 1);
  add_linear (b, m2, out, out, 1);
}

static void
add_block (Builder *b, const KinStditConfig *cfg, int i)
{
  int64_t C = cfg->hidden_size, hd = C / cfg->num_heads;
  const char *attn[2] = { "attn", "attn_temp" };
  char name[128];
  /* DiT-style tables: small, so the residual stream stays in range over many blocks */
  g_snprintf (name, sizeof name, "blocks.%d.scale_shift_table", i);
  add2 (b, name, 6, C, 0, 0.1);
  g_snprintf (name, sizeof name, "blocks.%d.scale_shift_table_temporal", i);
  add2 (b, name, 3, C, 0, 0.1);
  for (int a = 0; a < 2; a++) {
    g_snprintf (name, sizeof name, "blocks.%d.%s.qkv", i, attn[a]);
    add_linear (b, name, 3 * C, C, 1);
    g_snprintf (name, sizeof name, "blocks.%d.%s.proj", i, attn[a]);
    add_linear (b, name, C, C, 0.5);
    if (cfg->qk_norm) {
      g_snprintf (name, sizeof name, "blocks.%d.%s.q_norm.weight", i, attn[a]);
      add1 (b, name, hd, 1, 0.1);
      g_snprintf (name, sizeof name, "blocks.%d.%s.k_norm.weight", i, attn[a]);
      add1 (b, name, hd, 1, 0.1);
    }
  }
  g_snprintf (name, sizeof name, "blocks.%d.cross_attn.q_linear", i);
  add_linear (b, name, C, C, 1);
  g_snprintf (name, sizeof name, "blocks.%d.cross_attn.kv_linear", i);
  add_linear (b, name, 2 * C, C, 1);
  g_snprintf (name, sizeof name, "blocks.%d.cross_attn.proj", i);
  add_linear (b, name, C, C, 0.5);
  g_snprintf (name, sizeof name, "blocks.%d.mlp.fc1", i);
  add_linear (b, name, cfg->mlp_hidden, C, 1);
  g_snprintf (name, sizeof name, "blocks.%d.mlp.fc2", i);
  add_linear (b, name, C, cfg->mlp_hidden, 0.5);
}

static KinWeights *
random_weights (const KinStditConfig *cfg, KinDType dtype, double *bytes, GError **error)
{
  g_autoptr (KinWeights) ws = kin_weights_new ();
  Builder b = { ws, dtype, 0, 0, NULL };
  int64_t C = cfg->hidden_size, hd = C / cfg->num_heads, p = cfg->patch_size[1];
  int64_t pe[5] = { C, cfg->in_channels, 1, p, p };
  add (&b, dtype, "x_embedder.proj.weight", 5, pe, 0, sqrt (3.0 / (double) (cfg->in_channels * p * p)));
  add1 (&b, "x_embedder.proj.bias", C, 0, 0.02);
  add_mlp (&b, "t_embedder", C, cfg->freq_dim);
  add_linear (&b, "t_block.1", 6 * C, C, 1);
  add_linear (&b, "t_block_temp.1", 3 * C, C, 1);
  add_linear (&b, "y_embedder.y_proj.fc1", C, cfg->caption_channels, 1);
  add_linear (&b, "y_embedder.y_proj.fc2", C, C, 1);
  add2 (&b, "y_embedder.y_embedding", cfg->model_max_length, cfg->caption_channels, 0, 0.2);
  add_mlp (&b, "csize_embedder", cfg->size_dim, cfg->freq_dim);
  add_mlp (&b, "ar_embedder", cfg->size_dim, cfg->freq_dim);
  add_mlp (&b, "fl_embedder", C, cfg->freq_dim);
  add_mlp (&b, "fps_embedder", C, cfg->freq_dim);
  /* the rotary frequencies are a fixed buffer: exact values, F32 */
  int64_t half = hd / 2;
  add (&b, KIN_DTYPE_F32, "rope.freqs", 1, &half, 0, 0);
  if (b.error == NULL) {
    float *freqs = (float *) kin_weights_lookup (ws, "rope.freqs")->data;
    for (int64_t i = 0; i < half; i++)
      freqs[i] = (float) pow (10000.0, -2.0 * (double) i / (double) hd);
  }
  for (int i = 0; i < cfg->depth; i++)
    add_block (&b, cfg, i);
  add2 (&b, "final_layer.scale_shift_table", 2, C, 0, 0.1);
  /* a small final projection (DiT zero-initialises it): the output stays in the range of a
   * trained model's ε / variance predictions, so a sampling chain on it stays finite */
  add_linear (&b, "final_layer.linear", p * p * cfg->out_channels, C, 0.05);
  if (b.error != NULL) {
    g_propagate_error (error, b.error);
    return NULL;
  }
  /* lookups above marked rope.freqs used; the loader marks everything else */
  if (bytes)
    *bytes = b.bytes;
  return g_steal_pointer (&ws);
}

KinStdit *
kin_bench_stdit_random (const KinStditConfig *cfg, KinDType dtype, KinBackend *be,
                        double *weight_bytes, GError **error)
{
  g_autoptr (KinWeights) ws = random_weights (cfg, dtype, weight_bytes, error);
  if (ws == NULL)
    return NULL;
  return kin_stdit_load (ws, cfg, be, error);
}

/* ---------------------------------------------------------------------------------------------
 * bench stdit */

typedef struct {
  KinStdit *m;
  KinBackend *be;
  KinStditInput in;
  KinTensor *out;
  GError *error;
} ForwardJob;

static void
run_forward (void *data)
{
  ForwardJob *j = data;
  if (j->error == NULL)
    kin_stdit_forward (j->m, &j->in, j->out, &j->error);
  j->be->synchronize (j->be);
}

typedef struct {
  const char *backend, *dtype, *size;
  int depth, frames, height, width, batch, iters, warmup, tokens;
} StditOptions;

static int
fail (const char *what, const char *message)
{
  fprintf (stderr, "kinora-cli bench %s: %s\n", what, message);
  return 1;
}

static gboolean
parse_options (StditOptions *o, int *argc, char ***argv, GError **error)
{
  g_autofree char *backend = NULL, *dtype = NULL, *size = NULL;
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend, "cpu, cuda or auto (default auto)", "NAME" },
    { "dtype", 0, 0, G_OPTION_ARG_STRING, &dtype, "Weight type: bf16 (default) or f32", "TYPE" },
    { "depth", 'd', 0, G_OPTION_ARG_INT, &o->depth, "Transformer blocks (default 28)", "N" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &o->frames, "Frames (default 16)", "N" },
    { "size", 's', 0, G_OPTION_ARG_STRING, &size, "Frame size in pixels: 512 (default), WxH, 480p, 720p (multiples of 16)", "SIZE" },
    { "height", 0, 0, G_OPTION_ARG_INT, &o->height, "Frame height in pixels (overrides --size)", "PX" },
    { "width", 0, 0, G_OPTION_ARG_INT, &o->width, "Frame width in pixels (overrides --size)", "PX" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &o->batch, "Samples per forward (default 2: the CFG pair)", "N" },
    { "tokens", 0, 0, G_OPTION_ARG_INT, &o->tokens, "Valid caption tokens of the 200 (default 120)", "N" },
    { "iters", 'i', 0, G_OPTION_ARG_INT, &o->iters, "Timed forwards (default 3; the median is reported)", "N" },
    { "warmup", 'w', 0, G_OPTION_ARG_INT, &o->warmup, "Untimed forwards first (default 1)", "N" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— STDiT-XL/2 (Open-Sora 1.1) forward throughput and memory");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, error))
    return FALSE;
  o->backend = g_intern_string (backend);
  o->dtype = g_intern_string (dtype);
  o->size = g_intern_string (size);
  return TRUE;
}

/* Checks the numeric options and resolves --size / --height / --width; a message when wrong. */
static const char *
check_options (StditOptions *o)
{
  const char *size_problem = kin_bench_frame_size (o->size, &o->height, &o->width);
  if (size_problem != NULL)
    return size_problem;
  if (o->depth < 1 || o->depth > 1000)
    return "--depth takes 1 to 1000";
  if (o->frames < 1 || o->frames > 1024)
    return "--frames takes 1 to 1024";
  if (o->batch < 1 || o->batch > 64)
    return "--batch takes 1 to 64";
  if (o->tokens < 1 || o->tokens > 200)
    return "--tokens takes 1 to 200 (the model's caption length)";
  if (o->iters < 1 || o->iters > 10000 || o->warmup < 0 || o->warmup > 1000)
    return "--iters takes 1 to 10000, --warmup 0 to 1000";
  return NULL;
}

/* Uploads random x [B, 4, T, h, w], caption embeddings y [B, L, Ccap] (every sample's first
 * @tokens rows valid) and allocates out; fills the conditioning of @j->in. */
typedef struct {
  float height, width, frames, ar, fps;
  float *timesteps;
  int32_t *mask;
} StditConds;

static gboolean
make_inputs (ForwardJob *j, StditConds *c, const KinStditConfig *cfg, int B, int T, int h, int w,
             int tokens, GError **error)
{
  int64_t xs[5] = { B, cfg->in_channels, T, h, w }, os[5] = { B, cfg->out_channels, T, h, w };
  int64_t ys[3] = { B, cfg->model_max_length, cfg->caption_channels };
  size_t nx = (size_t) B * cfg->in_channels * T * h * w;
  size_t ny = (size_t) B * cfg->model_max_length * cfg->caption_channels;
  g_autofree float *hx = g_try_new (float, nx), *hy = g_try_new (float, ny);
  if (hx == NULL || hy == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "out of host memory for the inputs");
    return FALSE;
  }
  kin_bench_fill (hx, KIN_DTYPE_F32, nx, 0, 1.7, 101);     /* ~unit variance, like noise */
  kin_bench_fill (hy, KIN_DTYPE_F32, ny, 0, 0.3, 102);     /* ~T5 output spread */
  KinTensor *x = kin_tensor_from_host_f32 (j->be, hx, 5, xs, error);
  KinTensor *y = x ? kin_tensor_from_host_f32 (j->be, hy, 3, ys, error) : NULL;
  j->out = y ? kin_tensor_new (j->be, KIN_DTYPE_F32, 5, os, error) : NULL;
  if (j->out == NULL) {
    kin_tensor_free (x);
    kin_tensor_free (y);
    return FALSE;
  }
  c->timesteps = g_new (float, B);
  for (int b = 0; b < B; b++)
    c->timesteps[b] = 500.0f;
  c->mask = g_new0 (int32_t, cfg->model_max_length);
  for (int i = 0; i < tokens; i++)
    c->mask[i] = 1;
  c->height = (float) (h * 8), c->width = (float) (w * 8), c->frames = (float) T;
  c->ar = c->height / c->width;
  c->fps = T == 1 ? 120.0f : 24.0f;
  j->in = (KinStditInput) { .x = x, .timestep = c->timesteps, .y = y, .mask = c->mask,
                            .mask_rows = 1, .height = &c->height, .width = &c->width,
                            .num_frames = &c->frames, .ar = &c->ar, .fps = &c->fps,
                            .cond_rows = 1 };
  return TRUE;
}

static gboolean
output_finite (const KinTensor *t)
{
  g_autofree float *v = kin_tensor_to_host_f32 (t);
  if (v == NULL)
    return FALSE;
  for (int64_t i = 0; i < kin_tensor_numel (t); i++)
    if (!isfinite (v[i]))
      return FALSE;
  return TRUE;
}

static void
print_header (const StditOptions *o, const KinStditConfig *cfg, KinDType dtype, KinBackend *be)
{
  int h = o->height / 8, w = o->width / 8;
  int64_t tokens = (int64_t) o->batch * o->frames * (h / 2) * (w / 2);
  g_autofree char *label = kin_bench_backend_label (be, o->backend);
  printf ("bench stdit — STDiT2 (Open-Sora 1.1 STDiT-XL/2 shape): depth %d, hidden %d, %d heads × %d, "
          "patch 1×2×2, mlp %d, caption %d ch × %d rows (%d tokens valid), qk_norm, pred_sigma; "
          "random %s weights, f32 activations\n",
          cfg->depth, cfg->hidden_size, cfg->num_heads, cfg->hidden_size / cfg->num_heads,
          cfg->mlp_hidden, cfg->caption_channels, cfg->model_max_length, o->tokens,
          kin_dtype_name (dtype));
  printf ("  input                  batch %d × latent %d×%d×%d×%d (%d frame%s %d×%d px) = %" G_GINT64_FORMAT
          " tokens%s\n", o->batch, cfg->in_channels, o->frames, h, w, o->frames,
          o->frames == 1 ? "" : "s", o->width, o->height, tokens, o->batch == 2 ? " (the CFG pair)" : "");
  printf ("  backend                %s\n", label);
  KinBenchStditFlops fl;
  kin_bench_stdit_flops (cfg, o->batch, o->frames, h, w, cfg->model_max_length, o->tokens, &fl);
  double work = (double) fl.total * (o->iters + o->warmup);
  if (g_strcmp0 (be->name, "cpu") == 0 && work > 5e12)
    printf ("  note                   %.0f TFLOP to run on the CPU: expect a long wait (a small run: "
            "--depth 1 --frames 2 --size 64)\n", work / 1e12);
}

int
kin_bench_stdit (int argc, char **argv)
{
  StditOptions o = { NULL, NULL, NULL, 28, 16, 0, 0, 2, 3, 1, 120 };
  g_autoptr (GError) error = NULL;
  if (!parse_options (&o, &argc, &argv, &error)) {
    fprintf (stderr, "kinora-cli bench stdit: %s\n", error->message);
    return 2;
  }
  const char *bad = check_options (&o);
  KinDType dtype = KIN_DTYPE_BF16;
  if (bad == NULL && o.dtype != NULL && !kin_bench_parse_dtype (o.dtype, &dtype))
    bad = "--dtype takes bf16, f16 or f32";
  if (bad != NULL) {
    fprintf (stderr, "kinora-cli bench stdit: %s\n", bad);
    return 2;
  }
  int status = 0;
  KinBackend *be = kin_bench_backend ("stdit", o.backend, &status);
  if (be == NULL)
    return status;
  KinStditConfig cfg;
  if (!kin_bench_stdit_config (&cfg, o.depth, &error))
    return fail ("stdit", error->message);
  int h = o.height / 8, w = o.width / 8;
  print_header (&o, &cfg, dtype, be);
  double need = kin_bench_stdit_bytes (&cfg, dtype, o.batch, o.frames, h, w);
  /* the CPU holds the host copy of the weights and the loaded one for a moment (batch 0: the
   * weights alone) */
  if (g_strcmp0 (be->name, "cpu") == 0)
    need += kin_bench_stdit_bytes (&cfg, dtype, 0, 0, 0, 0);
  g_autofree char *fit = kin_bench_fit_problem (be, need, "use fewer --frames, a smaller --size or "
                                                "--depth, or --dtype bf16");
  if (fit != NULL)
    return fail ("stdit", fit);
  fflush (stdout);

  kin_bench_reset_peak_memory (be);
  gint64 t0 = g_get_monotonic_time ();
  double wbytes = 0;
  g_autoptr (KinStdit) m = kin_bench_stdit_random (&cfg, dtype, be, &wbytes, &error);
  if (m == NULL)
    return fail ("stdit", error->message);
  double build_s = (g_get_monotonic_time () - t0) / 1e6;
  printf ("  weights built          %8.2f s     %.2f GiB %s on the backend\n", build_s,
          wbytes / (1 << 30), kin_dtype_name (dtype));
  fflush (stdout);
  ForwardJob job = { m, be, { 0 }, NULL, NULL };
  StditConds conds = { 0 };
  if (!make_inputs (&job, &conds, &cfg, o.batch, o.frames, h, w, o.tokens, &error))
    return fail ("stdit", error->message);
  double tmin = 0, tmax = 0;
  /* under KIN_CUDA_PROFILE=1 the op table covers the timed forwards only (per forward) */
  for (int i = 0; i < o.warmup; i++)
    run_forward (&job);
  kin_backend_cuda_profile_reset ();
  double s = kin_bench_time_full (run_forward, &job, 0, o.iters, &tmin, &tmax);
  kin_backend_cuda_profile_print (o.iters, "per timed forward");
  int rc = 0;
  if (job.error != NULL) {
    rc = fail ("stdit", job.error->message);
  } else {
    KinBenchStditFlops fl;
    kin_bench_stdit_flops (&cfg, o.batch, o.frames, h, w, cfg.model_max_length, o.tokens, &fl);
    double tflops = fl.total / s / 1e12;
    gboolean finite = output_finite (job.out);
    printf ("  forward                %10.2f ms  median of %d (min %.2f, max %.2f) after %d warm-up\n",
            s * 1e3, o.iters, tmin * 1e3, tmax * 1e3, o.warmup);
    printf ("  FLOP per forward       %" G_GINT64_FORMAT "  (%.3f TFLOP: linear %.1f %%, attention spatial "
            "%.1f %%, temporal %.1f %%, cross %.1f %%)\n", fl.total, fl.total / 1e12,
            100.0 * fl.linear / fl.total, 100.0 * fl.attn_spatial / fl.total,
            100.0 * fl.attn_temporal / fl.total, 100.0 * fl.attn_cross / fl.total);
    printf ("  forward rate           %10.4f TFLOP/s\n", tflops);
    kin_bench_print_peak_memory (be, NULL);
    /* baseline after the peak is read, so that its buffers do not count */
    int64_t rows = MIN ((int64_t) o.batch * o.frames * (h / 2) * (w / 2), MLP_CHUNK_ROWS);
    g_clear_pointer (&job.out, kin_tensor_free);
    double base = kin_bench_linear_tflops (be, dtype, rows, cfg.hidden_size, cfg.mlp_hidden,
                                           MIN (o.warmup, 1), o.iters, &error);
    if (base <= 0) {
      rc = fail ("stdit", error ? error->message : "the baseline linear failed");
    } else {
      printf ("  baseline linear        %10.4f TFLOP/s  backend linear [%" G_GINT64_FORMAT " × %d]·[%d × %d]ᵀ "
              "%s (mlp.fc1), same run\n", base, rows, cfg.hidden_size, cfg.mlp_hidden,
              cfg.hidden_size, kin_dtype_name (dtype));
      printf ("  ratio                  %10.2f  forward TFLOP/s ÷ baseline\n", tflops / base);
    }
    printf ("  output finite          %s\n", finite ? "yes" : "NO");
    if (!finite)
      rc = 1;
  }
  g_clear_error (&job.error);
  kin_tensor_free ((KinTensor *) job.in.x);
  kin_tensor_free ((KinTensor *) job.in.y);
  kin_tensor_free (job.out);
  g_free (conds.timesteps);
  g_free (conds.mask);
  return rc;
}
