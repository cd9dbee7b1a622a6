/* kin-bench-t5.c — `kinora-cli bench t5`: a T5-XXL-shaped encoder (d_model 4096, d_ff 10240,
 * 64 heads × 64, 24 layers) with random bf16 weights built layer by layer in memory, encoding one
 * prompt of 120 tokens on the CPU backend.  Prints seconds, GFLOP/s beside raw OpenBLAS sgemm at
 * the encoder's projection shapes (measured in the same run), their ratio, and peak RSS. */
#include "kin-bench.h"
#include "kin-backend.h"
#include "kin-error.h"
#include "kin-t5.h"
#include "kin-weights.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* Uniform values with standard deviation @std, stored as bf16; parallel and seeded per chunk so
 * the weights do not depend on the thread count. */
static void
fill_bf16 (uint16_t *dst, size_t n, double mean, double std, guint64 seed)
{
  const size_t chunk = 1 << 16;
  float a = (float) (std * sqrt (3.0));
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < (n + chunk - 1) / chunk; c++) {
    guint64 s = seed * 0x9E3779B97F4A7C15ull + c + 1;
    size_t end = MIN (n, (c + 1) * chunk);
    for (size_t i = c * chunk; i < end; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;                  /* xorshift64 */
      float u = (float) (s >> 40) * (1.0f / 16777216.0f);      /* [0, 1) */
      dst[i] = kin_f32_to_bf16 ((float) mean + a * (2.0f * u - 1.0f));
    }
  }
}

static gboolean
add_tensor (KinWeights *ws, const char *name, KinDType dtype, int ndim, const int64_t *shape,
            double mean, double std, guint64 seed, GError **error)
{
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  size_t bytes = (size_t) n * kin_dtype_size (dtype);
  void *data = g_try_malloc (bytes);
  if (data == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "no memory for %s (%zu bytes)", name, bytes);
    return FALSE;
  }
  if (dtype == KIN_DTYPE_BF16) {
    fill_bf16 (data, n, mean, std, seed);
  } else {
    g_autoptr (GRand) r = g_rand_new_with_seed ((guint32) seed);
    for (int64_t i = 0; i < n; i++)
      ((float *) data)[i] = (float) (mean + std * g_rand_double_range (r, -1.7, 1.7));
  }
  g_autoptr (GBytes) b = g_bytes_new_take (data, bytes);
  kin_weights_keep_bytes (ws, b);
  return kin_weights_add_entry (ws, name, dtype, ndim, shape, data, bytes, "(random, in memory)",
                                error);
}

/* The weights of one encoder.block.N, in bf16 (norms F32). */
static gboolean
add_block (KinWeights *ws, const KinT5Config *c, int l, GError **error)
{
  int64_t d = c->d_model, inner = (int64_t) c->num_heads * c->d_kv, ff = c->d_ff;
  const struct { const char *key; int64_t rows, cols; } mats[] = {
    { "layer.0.SelfAttention.q.weight", inner, d }, { "layer.0.SelfAttention.k.weight", inner, d },
    { "layer.0.SelfAttention.v.weight", inner, d }, { "layer.0.SelfAttention.o.weight", d, inner },
    { "layer.1.DenseReluDense.wi_0.weight", ff, d }, { "layer.1.DenseReluDense.wi_1.weight", ff, d },
    { "layer.1.DenseReluDense.wo.weight", d, ff },
  };
  for (guint i = 0; i < G_N_ELEMENTS (mats); i++) {
    g_autofree char *name = g_strdup_printf ("encoder.block.%d.%s", l, mats[i].key);
    int64_t shape[2] = { mats[i].rows, mats[i].cols };
    if (!add_tensor (ws, name, KIN_DTYPE_BF16, 2, shape, 0, 1.0 / sqrt ((double) mats[i].cols),
                     (guint64) l * 16 + i + 100, error))
      return FALSE;
  }
  for (int k = 0; k < 2; k++) {
    g_autofree char *name = g_strdup_printf ("encoder.block.%d.layer.%d.layer_norm.weight", l, k);
    if (!add_tensor (ws, name, KIN_DTYPE_F32, 1, &d, 1, 0.1, (guint64) l * 16 + 10 + k, error))
      return FALSE;
  }
  return TRUE;
}

static KinWeights *
build_weights (const KinT5Config *c, GError **error)
{
  g_autoptr (KinWeights) ws = kin_weights_new ();
  int64_t emb[2] = { c->vocab_size, c->d_model };
  int64_t rb[2] = { c->relative_attention_num_buckets, c->num_heads };
  int64_t d = c->d_model;
  if (!add_tensor (ws, "shared.weight", KIN_DTYPE_BF16, 2, emb, 0, 0.5, 1, error) ||
      !add_tensor (ws, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                   KIN_DTYPE_F32, 2, rb, 0, 0.5, 2, error) ||
      !add_tensor (ws, "encoder.final_layer_norm.weight", KIN_DTYPE_F32, 1, &d, 1, 0.1, 3, error))
    return NULL;
  for (int l = 0; l < c->num_layers; l++)
    if (!add_block (ws, c, l, error))
      return NULL;
  return g_steal_pointer (&ws);
}

typedef struct {
  KinT5 *m;
  int64_t *ids, *mask;
  int tokens;
  float *out;
  GError *error;
} EncodeJob;

static void
run_encode (void *data)
{
  EncodeJob *j = data;
  if (j->error == NULL)
    kin_t5_encode (j->m, j->ids, j->mask, 1, j->tokens, j->out, &j->error);
}

/* Raw sgemm at the projection shapes of one block, combined by FLOP weight: the rate the encoder
 * would reach if every projection ran at the speed of a plain f32 sgemm. */
static double
sgemm_baseline (const KinT5Config *c, int tokens, int reps)
{
  int d = c->d_model, inner = c->num_heads * c->d_kv, ff = c->d_ff;
  const struct { int n, k, count; } shapes[] = { { inner, d, 3 }, { d, inner, 1 }, { ff, d, 2 }, { d, ff, 1 } };
  double flops = 0, seconds = 0;
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++) {
    double f = 2.0 * tokens * shapes[i].n * shapes[i].k * shapes[i].count;
    double rate = kin_bench_sgemm_gflops (tokens, shapes[i].n, shapes[i].k, reps);
    printf ("  sgemm [%d × %d] · [%d × %d]ᵀ   %7.1f GFLOP/s  (×%d per block)\n", tokens,
            shapes[i].k, shapes[i].n, shapes[i].k, rate, shapes[i].count);
    flops += f;
    seconds += f / (rate * 1e9);
  }
  return flops / seconds / 1e9;
}

int
kin_bench_t5 (int argc, char **argv)
{
  int layers = 24, tokens = 120, reps = 1;
  GOptionEntry entries[] = {
    { "layers", 'l', 0, G_OPTION_ARG_INT, &layers, "Encoder blocks (default 24)", "N" },
    { "tokens", 't', 0, G_OPTION_ARG_INT, &tokens, "Tokens per prompt (default 120)", "N" },
    { "reps", 'r', 0, G_OPTION_ARG_INT, &reps, "Timed encodes after the warm-up (default 1)", "N" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— T5-XXL-shaped encoder throughput");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || layers < 1 || layers > 1000 ||
      tokens < 1 || tokens > 4096 || reps < 1) {
    fprintf (stderr, "kinora-cli bench t5: %s\n",
             error ? error->message : "--layers 1..1000, --tokens 1..4096, --reps ≥ 1");
    return 2;
  }
  KinT5Config cfg;
  kin_t5_config_init_xxl (&cfg);
  cfg.num_layers = layers;
  KinBackend *be = kin_backend_cpu ();
  printf ("bench t5 — T5-XXL-shaped encoder: d_model %d, d_ff %d, %d heads × %d, %d layers, "
          "%d tokens, bf16 weights, f32 compute, backend %s, %d threads\n",
          cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.d_kv, layers, tokens, be->name,
          omp_get_max_threads ());

  /* Baseline first, so its buffers are gone before the model is built. */
  double base = sgemm_baseline (&cfg, tokens, 3);

  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (KinWeights) ws = build_weights (&cfg, &error);
  g_autoptr (KinT5) m = ws ? kin_t5_load_weights (ws, &cfg, be, &error) : NULL;
  if (m == NULL) {
    fprintf (stderr, "kinora-cli bench t5: %s\n", error->message);
    return 1;
  }
  double build_s = (g_get_monotonic_time () - t0) / 1e6;

  EncodeJob job = { m, g_new (int64_t, tokens), g_new (int64_t, tokens), tokens,
                    g_new (float, (size_t) tokens * cfg.d_model), NULL };
  g_autoptr (GRand) r = g_rand_new_with_seed (7);
  for (int i = 0; i < tokens; i++) {
    job.ids[i] = i == tokens - 1 ? 1 : g_rand_int_range (r, 2, 32100);
    job.mask[i] = 1;
  }
  double s = kin_bench_time (run_encode, &job, reps);
  double flops = kin_t5_encode_flops (&cfg, 1, tokens);
  gboolean finite = TRUE;
  for (size_t i = 0; i < (size_t) tokens * cfg.d_model; i++)
    finite = finite && isfinite (job.out[i]);
  g_free (job.ids);
  g_free (job.mask);
  g_free (job.out);
  if (job.error != NULL) {
    fprintf (stderr, "kinora-cli bench t5: %s\n", job.error->message);
    g_error_free (job.error);
    return 1;
  }
  double rate = flops / s / 1e9;
  double rss = kin_bench_peak_rss_mib ();
  printf ("  weights built          %8.2f s    (%.2f GiB bf16 block matrices, resident)\n", build_s,
          (double) layers * 2 * (4.0 * cfg.d_model * cfg.d_model + 3.0 * cfg.d_model * cfg.d_ff) /
            (1 << 30));
  printf ("  encode                 %8.3f s    %.1f GFLOP (%.3f s per block)\n", s, flops / 1e9,
          s / layers);
  printf ("  encoder                %8.1f GFLOP/s\n", rate);
  printf ("  sgemm (same shapes)    %8.1f GFLOP/s\n", base);
  printf ("  ratio                  %8.2f        (target ≥ 0.70)\n", rate / base);
  printf ("  peak RSS               %8.0f MiB    (target for 24 layers ≤ 12288 MiB)\n", rss);
  printf ("  output finite          %s\n", finite ? "yes" : "NO");
  return finite ? 0 : 1;
}
