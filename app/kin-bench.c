/* kin-bench.c — shared timing helpers and `kinora-cli bench ops`. */
#include "kin-bench.h"
#include "kin-backend.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

double
kin_bench_time (void (*fn) (void *data), void *data, int reps)
{
  fn (data); /* warm-up */
  reps = MAX (reps, 1);
  double *t = g_new (double, reps);
  for (int i = 0; i < reps; i++) {
    gint64 t0 = g_get_monotonic_time ();
    fn (data);
    t[i] = (g_get_monotonic_time () - t0) / 1e6;
  }
  qsort (t, reps, sizeof (double), cmp_double);
  double med = t[reps / 2];
  g_free (t);
  return med;
}

double
kin_bench_peak_rss_mib (void)
{
  g_autofree char *status = NULL;
  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return -1;
  const char *p = strstr (status, "VmHWM:");
  return p ? g_ascii_strtod (p + 6, NULL) / 1024.0 : -1;
}

static void
fill_random (float *x, size_t n, guint32 seed)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (r, -1, 1);
}

typedef struct {
  int m, n, k;
  float *a, *b, *c;
} SgemmJob;

static void
run_sgemm (void *data)
{
  SgemmJob *j = data;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, j->m, j->n, j->k, 1.0f, j->a, j->k, j->b,
               j->k, 0.0f, j->c, j->n);
}

double
kin_bench_sgemm_gflops (int m, int n, int k, int reps)
{
  SgemmJob j = { m, n, k, g_new (float, (size_t) m * k), g_new (float, (size_t) n * k),
                 g_new (float, (size_t) m * n) };
  fill_random (j.a, (size_t) m * k, 1);
  fill_random (j.b, (size_t) n * k, 2);
  double s = kin_bench_time (run_sgemm, &j, reps);
  g_free (j.a);
  g_free (j.b);
  g_free (j.c);
  return 2.0 * m * n * k / s / 1e9;
}

/* --- bench ops --- */

typedef struct {
  KinBackend *be;
  KinTensor *x, *w, *bias, *y;
  int64_t rows, in, out;
} LinearJob;

static void
run_linear (void *data)
{
  LinearJob *j = data;
  j->be->linear (j->be, j->y, j->x, j->w, j->bias, j->rows, j->in, j->out);
}

typedef struct {
  KinBackend *be;
  KinTensor *qkv, *out;
  KinAttention desc;
} AttnJob;

static void
run_attention (void *data)
{
  AttnJob *j = data;
  j->be->attention (j->be, j->out, j->qkv, j->qkv, j->qkv, &j->desc);
}

static KinTensor *
random_tensor (KinBackend *be, int64_t n, guint32 seed)
{
  int64_t shape[1] = { n };
  KinTensor *t = kin_tensor_new (be, KIN_DTYPE_F32, 1, shape, NULL);
  if (t)
    fill_random (t->data, n, seed);
  return t;
}

static void
bench_linear_row (KinBackend *be, const char *label, int64_t rows, int64_t in, int64_t out, int reps)
{
  LinearJob j = { be, random_tensor (be, rows * in, 3), random_tensor (be, out * in, 4),
                  random_tensor (be, out, 5), random_tensor (be, rows * out, 6), rows, in, out };
  double s = kin_bench_time (run_linear, &j, reps);
  double gf = 2.0 * rows * in * out / s / 1e9;
  double base = kin_bench_sgemm_gflops ((int) rows, (int) out, (int) in, reps);
  printf ("%-34s %5" G_GINT64_FORMAT "×%-5" G_GINT64_FORMAT "·%5" G_GINT64_FORMAT "  %8.2f ms  %7.1f GFLOP/s  sgemm %7.1f  ratio %.2f\n",
          label, rows, in, out, s * 1e3, gf, base, gf / base);
  kin_tensor_free (j.x);
  kin_tensor_free (j.w);
  kin_tensor_free (j.bias);
  kin_tensor_free (j.y);
}

static void
bench_attention_row (KinBackend *be, const char *label, int batch, int heads, int len, int hd, int reps)
{
  int64_t c = (int64_t) heads * hd;
  AttnJob j = { be, random_tensor (be, (int64_t) batch * len * 3 * c, 7),
                random_tensor (be, (int64_t) batch * len * c, 8) };
  j.desc = (KinAttention) { .batch = batch, .heads = heads, .lq = len, .lk = len, .head_dim = hd,
                            .q_offset = 0, .k_offset = c, .v_offset = 2 * c, .q_stride = 3 * c,
                            .kv_stride = 3 * c, .out_stride = c, .scale = 1.0f / sqrtf ((float) hd) };
  double s = kin_bench_time (run_attention, &j, reps);
  double flops = 4.0 * batch * heads * (double) len * len * hd;
  /* Baseline: the same two products as plain sgemm calls per (sequence, head). */
  double base = kin_bench_sgemm_gflops (len, len, hd, reps);
  printf ("%-34s %3d seq × %2d heads × %5d tok × %d  %8.2f ms  %7.1f GFLOP/s  sgemm %7.1f  ratio %.2f\n",
          label, batch, heads, len, hd, s * 1e3, flops / s / 1e9, base, flops / s / 1e9 / base);
  kin_tensor_free (j.qkv);
  kin_tensor_free (j.out);
}

int
kin_bench_ops (int argc, char **argv)
{
  int reps = 3;
  gboolean quick = FALSE;
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--quick") == 0)
      quick = TRUE;
    else if (strcmp (argv[i], "--reps") == 0 && i + 1 < argc)
      reps = atoi (argv[++i]);
  }
  KinBackend *be = kin_backend_cpu ();
  printf ("bench ops — backend %s, %d threads, OpenBLAS kernel %s; ratio = op GFLOP/s ÷ raw OpenBLAS sgemm at the same shape, same run\n",
          be->name, g_get_num_processors (), openblas_get_corename ());
  int64_t tok = quick ? 512 : 4096;
  bench_linear_row (be, "linear mlp.fc1 (STDiT-XL)", tok, 1152, 4608, reps);
  bench_linear_row (be, "linear mlp.fc2 (STDiT-XL)", tok, 4608, 1152, reps);
  bench_linear_row (be, "linear attn.qkv (STDiT-XL)", tok, 1152, 3456, reps);
  bench_linear_row (be, "linear y_proj.fc1 (T5 → 1152)", 240, 4096, 1152, reps);
  bench_attention_row (be, "attention spatial (256² frame)", quick ? 2 : 16, 16, 256, 72, reps);
  bench_attention_row (be, "attention spatial (512² frame)", quick ? 1 : 4, 16, 1024, 72, reps);
  bench_attention_row (be, "attention temporal (16 frames)", quick ? 64 : 1024, 16, 16, 72, reps);
  printf ("peak RSS %.0f MiB\n", kin_bench_peak_rss_mib ());
  return kin_backend_failed (be) ? 1 : 0;
}
