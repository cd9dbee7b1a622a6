/* kin-bench.c — shared timing helpers and `kinora-cli bench ops`. */
#include "kin-bench.h"
#include "kin-backend.h"
#include "kin-backend-cuda.h"
#include "kin-error.h"
#include <cblas.h>
#include <omp.h>
#include <sys/resource.h>
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
kin_bench_time_full (void (*fn) (void *data), void *data, int warmup, int iters, double *min,
                     double *max)
{
  for (int i = 0; i < warmup; i++)
    fn (data);
  iters = MAX (iters, 1);
  double *t = g_new (double, iters);
  for (int i = 0; i < iters; i++) {
    gint64 t0 = g_get_monotonic_time ();
    fn (data);
    t[i] = (g_get_monotonic_time () - t0) / 1e6;
  }
  qsort (t, iters, sizeof (double), cmp_double);
  double med = t[iters / 2];
  if (min)
    *min = t[0];
  if (max)
    *max = t[iters - 1];
  g_free (t);
  return med;
}

double
kin_bench_time (void (*fn) (void *data), void *data, int reps)
{
  return kin_bench_time_full (fn, data, 1, reps, NULL, NULL);
}

typedef struct {
  void (*fn) (void *data);
  void *data;
  int repeat;
} Repeat;

static void
run_repeat (void *data)
{
  Repeat *r = data;
  for (int i = 0; i < r->repeat; i++)
    r->fn (r->data);
}

/* Median seconds of one call for the baselines: calls shorter than 2 ms are repeated inside
 * each timing so that the microsecond clock sees them (a 4×4 product takes nanoseconds). */
static double
time_short (void (*fn) (void *data), void *data, int warmup, int iters)
{
  for (int i = 0; i < MAX (warmup, 1); i++)
    fn (data);
  gint64 t0 = g_get_monotonic_time ();
  fn (data);
  double once = (g_get_monotonic_time () - t0) / 1e6;
  Repeat r = { fn, data, 1 };
  if (once < 2e-3)
    r.repeat = (int) MIN (100000.0, ceil (2e-3 / MAX (once, 1e-7)));
  return kin_bench_time_full (run_repeat, &r, 0, iters, NULL, NULL) / r.repeat;
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
  double s = time_short (run_sgemm, &j, 1, reps);
  g_free (j.a);
  g_free (j.b);
  g_free (j.c);
  return 2.0 * m * n * k / s / 1e9;
}

/* --- shared by the benches that take --backend --- */

KinBackend *
kin_bench_backend (const char *bench, const char *choice, int *status)
{
  const char *c = choice != NULL ? choice : "auto";
  if (g_ascii_strcasecmp (c, "cpu") != 0 && g_ascii_strcasecmp (c, "cuda") != 0 &&
      g_ascii_strcasecmp (c, "auto") != 0) {
    fprintf (stderr, "kinora-cli bench %s: --backend takes cpu, cuda or auto, not '%s'\n", bench, c);
    *status = 2;
    return NULL;
  }
  KinBackend *be = kin_backend_for_device (c);
  if (g_ascii_strcasecmp (c, "cuda") == 0 && !kin_backend_is_cuda (be)) {
    fprintf (stderr, "kinora-cli bench %s: --backend cuda was requested, but CUDA is not available "
             "(the reason is in the warning above), so only the CPU backend could run. Nothing was "
             "measured; use --backend cpu (or auto) to benchmark the CPU.\n", bench);
    *status = 1;
    return NULL;
  }
  return be;
}

char *
kin_bench_backend_label (KinBackend *be, const char *choice)
{
  const char *asked = choice != NULL ? choice : "auto";
  if (kin_backend_is_cuda (be))
    return g_strdup_printf ("cuda — %s (asked for %s)", kin_backend_cuda_describe (be), asked);
  return g_strdup_printf ("%s (%d threads, OpenBLAS %s; asked for %s%s)", be->name,
                          omp_get_max_threads (), openblas_get_corename (), asked,
                          g_ascii_strcasecmp (asked, "auto") == 0 ? ", CUDA not available" : "");
}

void
kin_bench_reset_peak_memory (KinBackend *be)
{
  kin_backend_reset_peak_memory (be);
}

static double
getrusage_peak_mib (void)
{
  struct rusage ru;
  if (getrusage (RUSAGE_SELF, &ru) != 0)
    return -1;
  return ru.ru_maxrss / 1024.0;    /* KiB on Linux */
}

double
kin_bench_print_peak_memory (KinBackend *be, const char *target_note)
{
  uint64_t in_use, peak, total;
  double mib;
  if (kin_backend_memory_stats (be, &in_use, &peak, &total)) {
    mib = peak / (1024.0 * 1024.0);
    printf ("  peak memory            %8.0f MiB    peak %s backend allocations", mib, be->name);
    if (total > 0)
      printf (" (of %.0f MiB on the device)", total / (1024.0 * 1024.0));
  } else {
    mib = getrusage_peak_mib ();
    printf ("  peak memory            %8.0f MiB    process peak RSS (getrusage; the %s backend does "
            "not track its allocations)", mib, be->name);
  }
  if (target_note != NULL)
    printf ("  %s", target_note);
  printf ("\n");
  return mib;
}

static double
meminfo_available_bytes (void)
{
  g_autofree char *info = NULL;
  if (!g_file_get_contents ("/proc/meminfo", &info, NULL, NULL))
    return -1;
  const char *p = strstr (info, "MemAvailable:");
  return p ? g_ascii_strtod (p + 13, NULL) * 1024.0 : -1;
}

double
kin_bench_available_bytes (KinBackend *be)
{
  uint64_t in_use, peak, total;
  if (kin_backend_memory_stats (be, &in_use, &peak, &total) && total > 0)
    return total > in_use ? (double) (total - in_use) : 0;
  if (g_strcmp0 (be->name, "cpu") == 0)
    return meminfo_available_bytes ();
  return -1;
}

char *
kin_bench_fit_problem (KinBackend *be, double need, const char *advice)
{
  double avail = kin_bench_available_bytes (be);
  if (avail < 0 || need <= avail)
    return NULL;
  return g_strdup_printf ("this run needs about %.1f GiB of %s memory and %.1f GiB are available; %s",
                          need / (1 << 30), be->name, avail / (1 << 30), advice);
}

const char *
kin_bench_frame_size (const char *size, int *height, int *width)
{
  int w = 512, h = 512;
  if (size != NULL && !kin_bench_parse_size (size, 16, &w, &h))
    return "--size takes N or WxH in pixels, multiples of 16 from 16 to 8192 (the VAE divides by 8, "
           "the patch by 2), or 480p/720p";
  if (*height != 0)
    h = *height;
  if (*width != 0)
    w = *width;
  if (h < 16 || w < 16 || h > 8192 || w > 8192 || h % 16 != 0 || w % 16 != 0)
    return "the frame height and width must be multiples of 16 from 16 to 8192 (the VAE divides "
           "by 8, the patch by 2)";
  *height = h, *width = w;
  return NULL;
}

void
kin_bench_fill (void *dst, KinDType dtype, size_t n, double mean, double half, guint64 seed)
{
  const size_t chunk = 1 << 16;
  size_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    guint64 s = seed * 0x9E3779B97F4A7C15ull + c + 1;
    size_t end = MIN (n, (c + 1) * chunk);
    for (size_t i = c * chunk; i < end; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;                  /* xorshift64 */
      float u = (float) (s >> 40) * (1.0f / 16777216.0f);      /* [0, 1) */
      float v = (float) mean + (float) half * (2.0f * u - 1.0f);
      if (dtype == KIN_DTYPE_BF16)
        ((uint16_t *) dst)[i] = kin_f32_to_bf16 (v);
      else if (dtype == KIN_DTYPE_F16)
        ((uint16_t *) dst)[i] = kin_f32_to_f16 (v);
      else
        ((float *) dst)[i] = v;
    }
  }
}

gboolean
kin_bench_parse_dtype (const char *s, KinDType *out)
{
  if (g_ascii_strcasecmp (s, "bf16") == 0)
    *out = KIN_DTYPE_BF16;
  else if (g_ascii_strcasecmp (s, "f16") == 0 || g_ascii_strcasecmp (s, "fp16") == 0)
    *out = KIN_DTYPE_F16;
  else if (g_ascii_strcasecmp (s, "f32") == 0 || g_ascii_strcasecmp (s, "fp32") == 0)
    *out = KIN_DTYPE_F32;
  else
    return FALSE;
  return TRUE;
}

gboolean
kin_bench_parse_size (const char *s, int multiple, int *w, int *h)
{
  char *end = NULL;
  if (g_strcmp0 (s, "720p") == 0)
    *w = 1280, *h = 720;
  else if (g_strcmp0 (s, "1080p") == 0)
    *w = 1920, *h = 1080;
  else if (g_strcmp0 (s, "480p") == 0)
    *w = 848, *h = 480;
  else {
    gint64 a = g_ascii_strtoll (s, &end, 10), b = a;
    if (end == s)
      return FALSE;
    if (*end == 'x' || *end == 'X') {
      const char *rest = end + 1;
      b = g_ascii_strtoll (rest, &end, 10);
      if (end == rest)
        return FALSE;
    }
    if (*end != '\0' || a <= 0 || b <= 0 || a > 8192 || b > 8192)
      return FALSE;
    *w = (int) a, *h = (int) b;
  }
  return *w >= multiple && *h >= multiple && *w <= 8192 && *h <= 8192 && *w % multiple == 0 &&
         *h % multiple == 0;
}

/* A backend tensor of @n values of @dtype, random in [−1, 1]. */
static KinTensor *
backend_random (KinBackend *be, KinDType dtype, int64_t n, guint64 seed, GError **error)
{
  int64_t shape[1] = { n };
  KinTensor *t = kin_tensor_new (be, dtype, 1, shape, error);
  size_t bytes = (size_t) n * kin_dtype_size (dtype);
  void *host = t ? g_try_malloc (bytes) : NULL;
  if (t != NULL && host == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "out of host memory for a %.1f MiB buffer", bytes / (1024.0 * 1024.0));
    g_clear_pointer (&t, kin_tensor_free);
  }
  if (t == NULL)
    return NULL;
  kin_bench_fill (host, dtype, n, 0.0, 1.0, seed);
  be->upload (be, t->data, host, bytes);
  g_free (host);
  return t;
}

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
  j->be->synchronize (j->be);
}

double
kin_bench_linear_tflops (KinBackend *be, KinDType wdtype, int64_t rows, int64_t in, int64_t out,
                         int warmup, int iters, GError **error)
{
  LinearJob j = { be, NULL, NULL, NULL, NULL, rows, in, out };
  double rate = -1;
  if ((j.x = backend_random (be, KIN_DTYPE_F32, rows * in, 3, error)) != NULL &&
      (j.w = backend_random (be, wdtype, out * in, 4, error)) != NULL &&
      (j.bias = backend_random (be, KIN_DTYPE_F32, out, 5, error)) != NULL &&
      (j.y = backend_random (be, KIN_DTYPE_F32, rows * out, 6, error)) != NULL) {
    double s = time_short (run_linear, &j, warmup, iters);
    if (kin_backend_take_error (be, error))
      rate = 2.0 * rows * in * out / s / 1e12;
  }
  g_clear_pointer (&j.x, kin_tensor_free);
  g_clear_pointer (&j.w, kin_tensor_free);
  g_clear_pointer (&j.bias, kin_tensor_free);
  g_clear_pointer (&j.y, kin_tensor_free);
  return rate;
}

typedef struct {
  KinBackend *be;
  KinTensor *a, *b, *c;
  int m, n, k;
} MatmulJob;

static void
run_matmul (void *data)
{
  MatmulJob *j = data;
  j->be->matmul (j->be, j->c, j->a, j->b, 1, j->m, j->n, j->k, FALSE, TRUE, 1.0f, 0, 0, 0);
  j->be->synchronize (j->be);
}

double
kin_bench_matmul_gflops (KinBackend *be, int m, int n, int k, int reps)
{
  g_autoptr (GError) error = NULL;
  MatmulJob j = { be, NULL, NULL, NULL, m, n, k };
  double rate = -1;
  if ((j.a = backend_random (be, KIN_DTYPE_F32, (int64_t) m * k, 7, &error)) != NULL &&
      (j.b = backend_random (be, KIN_DTYPE_F32, (int64_t) n * k, 8, &error)) != NULL &&
      (j.c = backend_random (be, KIN_DTYPE_F32, (int64_t) m * n, 9, &error)) != NULL) {
    double s = time_short (run_matmul, &j, 1, reps);
    if (kin_backend_take_error (be, &error))
      rate = 2.0 * m * (double) n * k / s / 1e9;
  }
  g_clear_pointer (&j.a, kin_tensor_free);
  g_clear_pointer (&j.b, kin_tensor_free);
  g_clear_pointer (&j.c, kin_tensor_free);
  return rate;
}

/* --- bench ops --- */


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
