/* kin-backend-cpu.c — the reference backend: plain C, OpenMP over outer loops, OpenBLAS sgemm.
 *
 * Everything computes in f32; reductions (norm statistics, softmax sums) accumulate in double so
 * that results stay within ~1e-6 of a float64 reference.  Weights given to linear() may be F16 or
 * BF16: they are widened into a scratch buffer before the sgemm. */
#include "kin-backend.h"
#include "kin-error.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

/* Below this many elements (or multiply-adds) an op runs on one thread: waking the team costs
 * more than it saves, and on a busy machine idle threads spin. */
#define KIN_OMP_MIN_WORK 32768

#define F(t) ((float *) (t)->data)
#define CF(t) ((const float *) (t)->data)

static gboolean
check_f32 (KinBackend *be, const char *op, const KinTensor *t, int64_t need)
{
  if (t == NULL)
    return TRUE;
  if (t->dtype != KIN_DTYPE_F32) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "%s: tensor is %s, expected F32", op,
                           kin_dtype_name (t->dtype));
    return FALSE;
  }
  if (need >= 0 && kin_tensor_numel (t) < need) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT,
                           "%s: tensor has %" G_GINT64_FORMAT " elements, needs %" G_GINT64_FORMAT,
                           op, kin_tensor_numel (t), need);
    return FALSE;
  }
  return TRUE;
}

/* --- memory --- */

static void *
cpu_alloc (KinBackend *be, size_t bytes)
{
  /* 64-byte alignment for SIMD; zeroed so that uninitialised reads are deterministic. */
  void *p = NULL;
  if (posix_memalign (&p, 64, bytes) != 0)
    return NULL;
  memset (p, 0, bytes);
  return p;
}

static void cpu_free (KinBackend *be, void *p) { free (p); }
static void cpu_upload (KinBackend *be, void *dst, const void *src, size_t n) { memmove (dst, src, n); }
static void cpu_download (KinBackend *be, void *dst, const void *src, size_t n) { memmove (dst, src, n); }
static void cpu_synchronize (KinBackend *be) { }

/* --- matrices --- */

static void
cpu_linear (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
            const KinTensor *bias, int64_t rows, int64_t in, int64_t out)
{
  if (be->error || !check_f32 (be, "linear", x, rows * in) || !check_f32 (be, "linear", y, rows * out) ||
      !check_f32 (be, "linear", bias, out))
    return;
  if (kin_tensor_numel (w) != in * out) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT,
                           "linear: weight has %" G_GINT64_FORMAT " elements, expected %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT,
                           kin_tensor_numel (w), out, in);
    return;
  }
  const float *wf = CF (w);
  if (w->dtype != KIN_DTYPE_F32) {
    /* widen into a per-thread scratch that only grows: no page faults and zeroing per call */
    static __thread float *scratch = NULL;
    static __thread size_t scratch_n = 0;
    size_t n = (size_t) in * out;
    if (n > scratch_n) {
      free (scratch);
      scratch = malloc (n * sizeof (float));
      scratch_n = scratch ? n : 0;
    }
    if (scratch == NULL) {
      kin_backend_set_error (be, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "linear: out of memory widening weights");
      return;
    }
    if (w->dtype != KIN_DTYPE_F16 && w->dtype != KIN_DTYPE_BF16) {
      kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "linear: weight dtype %s unsupported",
                             kin_dtype_name (w->dtype));
      return;
    }
    const size_t chunk = 1 << 16;
    float *dst = scratch; /* the caller's buffer: inside the team, `scratch` is each thread's own */
#pragma omp parallel for schedule(static) if (n > KIN_OMP_MIN_WORK)
    for (size_t c = 0; c < (n + chunk - 1) / chunk; c++) {
      size_t off = c * chunk, len = MIN (chunk, n - off);
      kin_convert_to_f32 (dst + off, (const uint16_t *) w->data + off, w->dtype, len);
    }
    wf = dst;
  }
  float *yf = F (y);
  float beta = 0.0f;
  if (bias != NULL) {
    const float *b = CF (bias);
#pragma omp parallel for schedule(static) if (rows * out > KIN_OMP_MIN_WORK)
    for (int64_t r = 0; r < rows; r++)
      memcpy (yf + r * out, b, out * sizeof (float));
    beta = 1.0f;
  }
  if (rows > 0 && out > 0)
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (blasint) rows, (blasint) out, (blasint) in,
                 1.0f, CF (x), (blasint) in, wf, (blasint) in, beta, yf, (blasint) out);
}

static void
cpu_matmul (KinBackend *be, KinTensor *c, const KinTensor *a, const KinTensor *b, int batch,
            int m, int n, int k, gboolean trans_a, gboolean trans_b, float alpha,
            int64_t stride_a, int64_t stride_b, int64_t stride_c)
{
  if (be->error || !check_f32 (be, "matmul", a, (int64_t) (batch - 1) * stride_a + (int64_t) m * k) ||
      !check_f32 (be, "matmul", b, (int64_t) (batch - 1) * stride_b + (int64_t) k * n) ||
      !check_f32 (be, "matmul", c, (int64_t) (batch - 1) * stride_c + (int64_t) m * n))
    return;
  int lda = trans_a ? m : k, ldb = trans_b ? k : n;
  if (batch == 1) {
    cblas_sgemm (CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                 m, n, k, alpha, CF (a), lda, CF (b), ldb, 0.0f, F (c), n);
    return;
  }
#pragma omp parallel for schedule(dynamic) if ((int64_t) batch * m * n * k > KIN_OMP_MIN_WORK)
  for (int i = 0; i < batch; i++)
    cblas_sgemm (CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                 m, n, k, alpha, CF (a) + i * stride_a, lda, CF (b) + i * stride_b, ldb, 0.0f,
                 F (c) + i * stride_c, n);
}

/* --- normalisations --- */

static void
cpu_layer_norm (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
                const KinTensor *b, int64_t rows, int64_t dim, float eps)
{
  if (be->error || !check_f32 (be, "layer_norm", x, rows * dim) || !check_f32 (be, "layer_norm", y, rows * dim) ||
      !check_f32 (be, "layer_norm", w, dim) || !check_f32 (be, "layer_norm", b, dim))
    return;
  const float *wf = w ? CF (w) : NULL, *bf = b ? CF (b) : NULL;
#pragma omp parallel for schedule(static) if (rows * dim > KIN_OMP_MIN_WORK)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = CF (x) + r * dim;
    float *yr = F (y) + r * dim;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; i++)
      mean += xr[i];
    mean /= dim;
    for (int64_t i = 0; i < dim; i++) {
      double d = xr[i] - mean;
      var += d * d;
    }
    var /= dim;
    float inv = (float) (1.0 / sqrt (var + eps));
    float fm = (float) mean;
    for (int64_t i = 0; i < dim; i++) {
      float v = (xr[i] - fm) * inv;
      if (wf)
        v *= wf[i];
      if (bf)
        v += bf[i];
      yr[i] = v;
    }
  }
}

static void
cpu_rms_norm (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w, int64_t rows,
              int64_t dim, float eps)
{
  if (be->error || !check_f32 (be, "rms_norm", x, rows * dim) || !check_f32 (be, "rms_norm", y, rows * dim) ||
      !check_f32 (be, "rms_norm", w, dim))
    return;
  const float *wf = w ? CF (w) : NULL;
#pragma omp parallel for schedule(static) if (rows * dim > KIN_OMP_MIN_WORK)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = CF (x) + r * dim;
    float *yr = F (y) + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; i++)
      ss += (double) xr[i] * xr[i];
    float inv = (float) (1.0 / sqrt (ss / dim + eps));
    for (int64_t i = 0; i < dim; i++) {
      float v = xr[i] * inv;
      yr[i] = wf ? wf[i] * v : v;
    }
  }
}

static void
cpu_modulate (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *shift,
              int64_t shift_offset, const KinTensor *scale, int64_t scale_offset, int64_t sstride,
              int64_t groups, int64_t rows, int64_t dim)
{
  int64_t n = groups * rows * dim;
  if (be->error || !check_f32 (be, "modulate", x, n) || !check_f32 (be, "modulate", y, n) ||
      !check_f32 (be, "modulate", shift, shift_offset + (groups - 1) * sstride + dim) ||
      !check_f32 (be, "modulate", scale, scale_offset + (groups - 1) * sstride + dim))
    return;
#pragma omp parallel for collapse(2) schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t g = 0; g < groups; g++)
    for (int64_t r = 0; r < rows; r++) {
      const float *sh = CF (shift) + shift_offset + g * sstride;
      const float *sc = CF (scale) + scale_offset + g * sstride;
      const float *xr = CF (x) + (g * rows + r) * dim;
      float *yr = F (y) + (g * rows + r) * dim;
      for (int64_t i = 0; i < dim; i++)
        yr[i] = xr[i] * (1.0f + sc[i]) + sh[i];
    }
}

static void
cpu_gate_add (KinBackend *be, KinTensor *x, const KinTensor *y, const KinTensor *gate,
              int64_t gate_offset, int64_t gstride, int64_t groups, int64_t rows, int64_t dim)
{
  int64_t n = groups * rows * dim;
  if (be->error || !check_f32 (be, "gate_add", x, n) || !check_f32 (be, "gate_add", y, n) ||
      !check_f32 (be, "gate_add", gate, gate ? gate_offset + (groups - 1) * gstride + dim : 0))
    return;
#pragma omp parallel for collapse(2) schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t g = 0; g < groups; g++)
    for (int64_t r = 0; r < rows; r++) {
      const float *gt = gate ? CF (gate) + gate_offset + g * gstride : NULL;
      float *xr = F (x) + (g * rows + r) * dim;
      const float *yr = CF (y) + (g * rows + r) * dim;
      if (gt)
        for (int64_t i = 0; i < dim; i++)
          xr[i] += gt[i] * yr[i];
      else
        for (int64_t i = 0; i < dim; i++)
          xr[i] += yr[i];
    }
}

/* --- element-wise --- */

static gboolean
check_unary (KinBackend *be, const char *op, KinTensor *y, const KinTensor *x)
{
  if (be->error || !check_f32 (be, op, x, -1) || !check_f32 (be, op, y, kin_tensor_numel (x)))
    return FALSE;
  return TRUE;
}

static void
cpu_gelu_tanh (KinBackend *be, KinTensor *y, const KinTensor *x)
{
  if (!check_unary (be, "gelu_tanh", y, x))
    return;
  const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
  int64_t n = kin_tensor_numel (x);
#pragma omp parallel for schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) {
    float v = CF (x)[i];
    F (y)[i] = 0.5f * v * (1.0f + tanhf (k0 * (v + 0.044715f * v * v * v)));
  }
}

static void
cpu_silu (KinBackend *be, KinTensor *y, const KinTensor *x)
{
  if (!check_unary (be, "silu", y, x))
    return;
  int64_t n = kin_tensor_numel (x);
#pragma omp parallel for schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) {
    float v = CF (x)[i];
    F (y)[i] = v / (1.0f + expf (-v));
  }
}

static void
softmax_row (float *y, const float *x, int64_t dim)
{
  float mx = -INFINITY;
  for (int64_t i = 0; i < dim; i++)
    mx = x[i] > mx ? x[i] : mx;
  if (mx == -INFINITY) { /* fully masked row: define as zeros rather than NaN */
    memset (y, 0, dim * sizeof (float));
    return;
  }
  double sum = 0;
  for (int64_t i = 0; i < dim; i++) {
    float e = expf (x[i] - mx);
    y[i] = e;
    sum += e;
  }
  float inv = (float) (1.0 / sum);
  for (int64_t i = 0; i < dim; i++)
    y[i] *= inv;
}

static void
cpu_softmax (KinBackend *be, KinTensor *y, const KinTensor *x, int64_t rows, int64_t dim)
{
  if (be->error || !check_f32 (be, "softmax", x, rows * dim) || !check_f32 (be, "softmax", y, rows * dim))
    return;
#pragma omp parallel for schedule(static) if (rows * dim > KIN_OMP_MIN_WORK)
  for (int64_t r = 0; r < rows; r++)
    softmax_row (F (y) + r * dim, CF (x) + r * dim, dim);
}

static gboolean
check_binary (KinBackend *be, const char *op, KinTensor *y, const KinTensor *a, const KinTensor *b)
{
  if (be->error || !check_f32 (be, op, a, -1) || !check_f32 (be, op, b, 1) ||
      !check_f32 (be, op, y, kin_tensor_numel (a)))
    return FALSE;
  if (kin_tensor_numel (a) % kin_tensor_numel (b) != 0) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT,
                           "%s: %" G_GINT64_FORMAT " elements do not repeat %" G_GINT64_FORMAT, op,
                           kin_tensor_numel (a), kin_tensor_numel (b));
    return FALSE;
  }
  return TRUE;
}

static void
cpu_add (KinBackend *be, KinTensor *y, const KinTensor *a, const KinTensor *b)
{
  if (!check_binary (be, "add", y, a, b))
    return;
  int64_t n = kin_tensor_numel (a), nb = kin_tensor_numel (b);
#pragma omp parallel for schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t r = 0; r < n / nb; r++)
    for (int64_t i = 0; i < nb; i++)
      F (y)[r * nb + i] = CF (a)[r * nb + i] + CF (b)[i];
}

static void
cpu_mul (KinBackend *be, KinTensor *y, const KinTensor *a, const KinTensor *b)
{
  if (!check_binary (be, "mul", y, a, b))
    return;
  int64_t n = kin_tensor_numel (a), nb = kin_tensor_numel (b);
#pragma omp parallel for schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t r = 0; r < n / nb; r++)
    for (int64_t i = 0; i < nb; i++)
      F (y)[r * nb + i] = CF (a)[r * nb + i] * CF (b)[i];
}

static void
cpu_scale (KinBackend *be, KinTensor *y, const KinTensor *x, float alpha, float beta)
{
  if (!check_unary (be, "scale", y, x))
    return;
  int64_t n = kin_tensor_numel (x);
#pragma omp parallel for schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++)
    F (y)[i] = alpha * CF (x)[i] + beta;
}

/* --- attention --- */

#define ATTN_QBLOCK 128

static void
cpu_attention (KinBackend *be, KinTensor *out, const KinTensor *q, const KinTensor *k,
               const KinTensor *v, const KinAttention *d)
{
  if (be->error)
    return;
  int64_t B = d->batch, H = d->heads, LQ = d->lq, LK = d->lk, D = d->head_dim;
  int64_t q_need = d->q_offset + ((B * LQ) - 1) * d->q_stride + H * D;
  int64_t kv_need_k = d->k_offset + ((B * LK) - 1) * d->kv_stride + H * D;
  int64_t kv_need_v = d->v_offset + ((B * LK) - 1) * d->kv_stride + H * D;
  int64_t o_need = d->out_offset + ((B * LQ) - 1) * d->out_stride + H * D;
  if (B <= 0 || H <= 0 || LQ <= 0 || LK <= 0 || D <= 0) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "attention: empty dimensions");
    return;
  }
  if (!check_f32 (be, "attention q", q, q_need) || !check_f32 (be, "attention k", k, kv_need_k) ||
      !check_f32 (be, "attention v", v, kv_need_v) || !check_f32 (be, "attention out", out, o_need) ||
      !check_f32 (be, "attention bias", d->bias, d->bias ? H * LQ * LK : 0))
    return;
  int64_t nqb = (LQ + ATTN_QBLOCK - 1) / ATTN_QBLOCK;
  int64_t jobs = B * H * nqb;
  gboolean failed = FALSE;
#pragma omp parallel if (B * H * LQ * LK * D > KIN_OMP_MIN_WORK)
  {
    float *scores = malloc ((size_t) ATTN_QBLOCK * LK * sizeof (float));
    if (scores == NULL) {
#pragma omp atomic write
      failed = TRUE;
    }
#pragma omp for schedule(dynamic)
    for (int64_t job = 0; job < jobs; job++) {
      if (scores == NULL)
        continue;
      int64_t qb = job % nqb, h = (job / nqb) % H, b = job / (nqb * H);
      int64_t r0 = qb * ATTN_QBLOCK, nr = MIN (ATTN_QBLOCK, LQ - r0);
      int64_t lk = d->kv_lens ? CLAMP (d->kv_lens[b], 0, LK) : LK;
      const float *qp = CF (q) + d->q_offset + (b * LQ + r0) * d->q_stride + h * D;
      const float *kp = CF (k) + d->k_offset + (b * LK) * d->kv_stride + h * D;
      const float *vp = CF (v) + d->v_offset + (b * LK) * d->kv_stride + h * D;
      float *op = F (out) + d->out_offset + (b * LQ + r0) * d->out_stride + h * D;
      if (lk == 0) { /* no keys: the output is zero */
        for (int64_t r = 0; r < nr; r++)
          memset (op + r * d->out_stride, 0, D * sizeof (float));
        continue;
      }
      if (lk <= 64 && D <= 256) {
        /* short sequences (temporal attention: length = frames): direct loops beat the BLAS call
         * overhead by an order of magnitude */
        float acc[256];
        for (int64_t r = 0; r < nr; r++) {
          const float *qr = qp + r * d->q_stride;
          float *sr = scores + r * lk;
          for (int64_t j = 0; j < lk; j++) {
            const float *kr = kp + j * d->kv_stride;
            float dot = 0;
            for (int64_t e = 0; e < D; e++)
              dot += qr[e] * kr[e];
            sr[j] = dot * d->scale;
            if (d->bias)
              sr[j] += CF (d->bias)[(h * LQ + r0 + r) * LK + j];
          }
          softmax_row (sr, sr, lk);
          for (int64_t e = 0; e < D; e++)
            acc[e] = 0;
          for (int64_t j = 0; j < lk; j++) {
            const float *vr = vp + j * d->kv_stride;
            float pj = sr[j];
            for (int64_t e = 0; e < D; e++)
              acc[e] += pj * vr[e];
          }
          memcpy (op + r * d->out_stride, acc, D * sizeof (float));
        }
        continue;
      }
      /* scores[nr, lk] = scale · q · kᵀ (+ bias) */
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (blasint) nr, (blasint) lk, (blasint) D,
                   d->scale, qp, (blasint) d->q_stride, kp, (blasint) d->kv_stride, 0.0f, scores,
                   (blasint) lk);
      for (int64_t r = 0; r < nr; r++) {
        float *sr = scores + r * lk;
        if (d->bias) {
          const float *br = CF (d->bias) + (h * LQ + r0 + r) * LK;
          for (int64_t j = 0; j < lk; j++)
            sr[j] += br[j];
        }
        softmax_row (sr, sr, lk);
      }
      /* out[nr, D] = P · v */
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint) nr, (blasint) D, (blasint) lk,
                   1.0f, scores, (blasint) lk, vp, (blasint) d->kv_stride, 0.0f, op,
                   (blasint) d->out_stride);
    }
    free (scores);
  }
  if (failed)
    kin_backend_set_error (be, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "attention: out of memory for scores");
}

/* --- convolution --- */

/* Column buffer budget per conv call: rows of output are processed in bands that fit. */
#define CONV_COLS_BUDGET (64u << 20)

static void
im2col_band (const float *x, float *cols, const KinConv2d *d, int oh0, int nrows, int ow)
{
  int64_t ncols = (int64_t) nrows * ow;
  int64_t kk = (int64_t) d->cin * d->kh * d->kw;
#pragma omp parallel for schedule(static) if (kk * ncols > KIN_OMP_MIN_WORK)
  for (int64_t row = 0; row < kk; row++) {
    int c = (int) (row / (d->kh * d->kw)), ky = (int) (row / d->kw % d->kh), kx = (int) (row % d->kw);
    float *dst = cols + row * ncols;
    const float *src = x + (int64_t) c * d->h * d->w;
    for (int oy = 0; oy < nrows; oy++) {
      int iy = (oh0 + oy) * d->stride - d->pad_t + ky;
      float *drow = dst + (int64_t) oy * ow;
      if (iy < 0 || iy >= d->h) {
        memset (drow, 0, ow * sizeof (float));
        continue;
      }
      for (int ox = 0; ox < ow; ox++) {
        int ix = ox * d->stride - d->pad_l + kx;
        drow[ox] = (ix >= 0 && ix < d->w) ? src[(int64_t) iy * d->w + ix] : 0.0f;
      }
    }
  }
}

static void
cpu_conv2d (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
            const KinTensor *bias, const KinConv2d *d)
{
  if (be->error)
    return;
  if (d->stride < 1 || d->kh < 1 || d->kw < 1 || d->pad_t < 0 || d->pad_b < 0 || d->pad_l < 0 ||
      d->pad_r < 0 || d->h + d->pad_t + d->pad_b < d->kh || d->w + d->pad_l + d->pad_r < d->kw) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "conv2d: impossible geometry");
    return;
  }
  int oh = (d->h + d->pad_t + d->pad_b - d->kh) / d->stride + 1;
  int ow = (d->w + d->pad_l + d->pad_r - d->kw) / d->stride + 1;
  int64_t kk = (int64_t) d->cin * d->kh * d->kw;
  if (!check_f32 (be, "conv2d x", x, (int64_t) d->n * d->cin * d->h * d->w) ||
      !check_f32 (be, "conv2d w", w, (int64_t) d->cout * kk) ||
      !check_f32 (be, "conv2d bias", bias, d->cout) ||
      !check_f32 (be, "conv2d y", y, (int64_t) d->n * d->cout * oh * ow))
    return;
  gboolean direct = d->kh == 1 && d->kw == 1 && d->stride == 1 && !d->pad_t && !d->pad_b &&
                    !d->pad_l && !d->pad_r;
  int band = direct ? oh : (int) MAX (1, MIN ((int64_t) oh, CONV_COLS_BUDGET / 4 / MAX (1, kk * ow)));
  float *cols = direct ? NULL : malloc ((size_t) kk * band * ow * sizeof (float));
  if (!direct && cols == NULL) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "conv2d: out of memory for im2col");
    return;
  }
  /* Output of one image in bands: y[cout, rows*ow] = W[cout, kk] · cols[kk, rows*ow]. */
  float *tmp = direct ? NULL : malloc ((size_t) d->cout * band * ow * sizeof (float));
  for (int n = 0; n < d->n; n++) {
    const float *xn = CF (x) + (int64_t) n * d->cin * d->h * d->w;
    float *yn = F (y) + (int64_t) n * d->cout * oh * ow;
    if (direct) {
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, d->cout, oh * ow, d->cin, 1.0f,
                   CF (w), d->cin, xn, oh * ow, 0.0f, yn, oh * ow);
    } else {
      for (int oy0 = 0; oy0 < oh; oy0 += band) {
        int nr = MIN (band, oh - oy0);
        im2col_band (xn, cols, d, oy0, nr, ow);
        float *dst = (nr == oh) ? yn : tmp;
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, d->cout, nr * ow, (blasint) kk, 1.0f,
                     CF (w), (blasint) kk, cols, nr * ow, 0.0f, dst, nr * ow);
        if (dst == tmp)
          for (int co = 0; co < d->cout; co++)
            memcpy (yn + (int64_t) co * oh * ow + (int64_t) oy0 * ow, tmp + (int64_t) co * nr * ow,
                    (size_t) nr * ow * sizeof (float));
      }
    }
    if (bias) {
#pragma omp parallel for schedule(static) if ((int64_t) d->cout * oh * ow > KIN_OMP_MIN_WORK)
      for (int co = 0; co < d->cout; co++) {
        float bv = CF (bias)[co];
        float *yc = yn + (int64_t) co * oh * ow;
        for (int64_t i = 0; i < (int64_t) oh * ow; i++)
          yc[i] += bv;
      }
    }
  }
  free (cols);
  free (tmp);
}

static void
cpu_group_norm (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
                const KinTensor *b, int64_t n, int64_t c, int64_t hw, int groups, float eps,
                gboolean silu)
{
  if (be->error)
    return;
  if (groups <= 0 || c % groups != 0) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT,
                           "group_norm: %" G_GINT64_FORMAT " channels not divisible into %d groups", c, groups);
    return;
  }
  if (!check_f32 (be, "group_norm", x, n * c * hw) || !check_f32 (be, "group_norm", y, n * c * hw) ||
      !check_f32 (be, "group_norm", w, c) || !check_f32 (be, "group_norm", b, c))
    return;
  int64_t cg = c / groups;
#pragma omp parallel for collapse(2) schedule(static) if (n * c * hw > KIN_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++)
    for (int64_t g = 0; g < groups; g++) {
      const float *xg = CF (x) + (i * c + g * cg) * hw;
      float *yg = F (y) + (i * c + g * cg) * hw;
      int64_t m = cg * hw;
      double mean = 0, var = 0;
      for (int64_t j = 0; j < m; j++)
        mean += xg[j];
      mean /= m;
      for (int64_t j = 0; j < m; j++) {
        double dd = xg[j] - mean;
        var += dd * dd;
      }
      var /= m;
      float inv = (float) (1.0 / sqrt (var + eps)), fm = (float) mean;
      for (int64_t ch = 0; ch < cg; ch++) {
        float wv = w ? CF (w)[g * cg + ch] : 1.0f, bv = b ? CF (b)[g * cg + ch] : 0.0f;
        for (int64_t j = 0; j < hw; j++) {
          float v = (xg[ch * hw + j] - fm) * inv * wv + bv;
          yg[ch * hw + j] = silu ? v / (1.0f + expf (-v)) : v;
        }
      }
    }
}

static void
cpu_upsample_nearest2x (KinBackend *be, KinTensor *y, const KinTensor *x, int64_t nc, int64_t h,
                        int64_t w)
{
  if (be->error || !check_f32 (be, "upsample", x, nc * h * w) || !check_f32 (be, "upsample", y, nc * h * w * 4))
    return;
#pragma omp parallel for collapse(2) schedule(static) if (nc * h * w * 4 > KIN_OMP_MIN_WORK)
  for (int64_t p = 0; p < nc; p++)
    for (int64_t oy = 0; oy < 2 * h; oy++) {
      const float *src = CF (x) + (p * h + oy / 2) * w;
      float *dst = F (y) + (p * 2 * h + oy) * 2 * w;
      for (int64_t ox = 0; ox < 2 * w; ox++)
        dst[ox] = src[ox / 2];
    }
}

static void
cpu_rope (KinBackend *be, KinTensor *x, int64_t x_offset, int64_t stride, int64_t batch,
          int64_t len, int heads, int head_dim, const KinTensor *cos_t, const KinTensor *sin_t)
{
  if (be->error)
    return;
  int64_t half = head_dim / 2;
  if (head_dim % 2 != 0) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "rope: odd head dim %d", head_dim);
    return;
  }
  if (!check_f32 (be, "rope x", x, x_offset + (batch * len - 1) * stride + (int64_t) heads * head_dim) ||
      !check_f32 (be, "rope cos", cos_t, len * half) || !check_f32 (be, "rope sin", sin_t, len * half))
    return;
#pragma omp parallel for collapse(2) schedule(static) if (batch * len * heads * head_dim > KIN_OMP_MIN_WORK)
  for (int64_t b = 0; b < batch; b++)
    for (int64_t l = 0; l < len; l++) {
      float *row = F (x) + x_offset + (b * len + l) * stride;
      const float *cs = CF (cos_t) + l * half, *sn = CF (sin_t) + l * half;
      for (int h = 0; h < heads; h++) {
        float *v = row + (int64_t) h * head_dim;
        for (int64_t i = 0; i < half; i++) {
          float a = v[2 * i], bb = v[2 * i + 1];
          v[2 * i] = a * cs[i] - bb * sn[i];
          v[2 * i + 1] = bb * cs[i] + a * sn[i];
        }
      }
    }
}

static void
cpu_permute (KinBackend *be, KinTensor *y, const KinTensor *x, int ndim, const int64_t *dims,
             const int *perm)
{
  if (be->error)
    return;
  int64_t n;
  if (ndim < 1 || !kin_shape_numel_checked (ndim, dims, &n)) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "permute: bad dims");
    return;
  }
  if (!check_f32 (be, "permute", x, n) || !check_f32 (be, "permute", y, n))
    return;
  int64_t xstride[KIN_MAX_DIMS], ydims[KIN_MAX_DIMS], ystride_src[KIN_MAX_DIMS];
  unsigned seen = 0;
  xstride[ndim - 1] = 1;
  for (int i = ndim - 2; i >= 0; i--)
    xstride[i] = xstride[i + 1] * dims[i + 1];
  for (int i = 0; i < ndim; i++) {
    if (perm[i] < 0 || perm[i] >= ndim || (seen & (1u << perm[i]))) {
      kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "permute: invalid permutation");
      return;
    }
    seen |= 1u << perm[i];
    ydims[i] = dims[perm[i]];
    ystride_src[i] = xstride[perm[i]]; /* step in x when y's index i advances */
  }
  int64_t inner = ydims[ndim - 1], inner_stride = ystride_src[ndim - 1];
  int64_t outer = n / MAX (inner, 1);
#pragma omp parallel for schedule(static) if (n > KIN_OMP_MIN_WORK)
  for (int64_t o = 0; o < outer; o++) {
    int64_t rem = o, src = 0;
    for (int i = ndim - 2; i >= 0; i--) {
      int64_t idx = rem % ydims[i];
      rem /= ydims[i];
      src += idx * ystride_src[i];
    }
    float *dst = F (y) + o * inner;
    const float *s = CF (x) + src;
    for (int64_t j = 0; j < inner; j++)
      dst[j] = s[j * inner_stride];
  }
}

static void
cpu_copy (KinBackend *be, KinTensor *y, int64_t y_offset, const KinTensor *x, int64_t x_offset,
          int64_t n)
{
  if (be->error || !check_f32 (be, "copy", x, x_offset + n) || !check_f32 (be, "copy", y, y_offset + n))
    return;
  memmove (F (y) + y_offset, CF (x) + x_offset, n * sizeof (float));
}

static KinBackend cpu_backend = {
  .name = "cpu",
  .alloc = cpu_alloc,
  .free = cpu_free,
  .upload = cpu_upload,
  .download = cpu_download,
  .synchronize = cpu_synchronize,
  .linear = cpu_linear,
  .matmul = cpu_matmul,
  .layer_norm = cpu_layer_norm,
  .rms_norm = cpu_rms_norm,
  .modulate = cpu_modulate,
  .gate_add = cpu_gate_add,
  .gelu_tanh = cpu_gelu_tanh,
  .silu = cpu_silu,
  .softmax = cpu_softmax,
  .add = cpu_add,
  .mul = cpu_mul,
  .scale = cpu_scale,
  .attention = cpu_attention,
  .conv2d = cpu_conv2d,
  .group_norm = cpu_group_norm,
  .upsample_nearest2x = cpu_upsample_nearest2x,
  .rope = cpu_rope,
  .permute = cpu_permute,
  .copy = cpu_copy,
};

KinBackend *
kin_backend_cpu (void)
{
  return &cpu_backend;
}

void
kin_backend_cpu_set_threads (int n)
{
  if (n <= 0)
    n = omp_get_num_procs ();
  omp_set_num_threads (n);
  openblas_set_num_threads (n);
}

void
kin_backend_cpu_prepare_process (char **argv)
{
  if (g_getenv ("OMP_WAIT_POLICY") != NULL || g_getenv ("KIN_NO_REEXEC") != NULL)
    return;
  g_setenv ("OMP_WAIT_POLICY", "passive", TRUE);
  g_setenv ("KIN_NO_REEXEC", "1", TRUE); /* never loop, even if exec fails oddly */
  execv ("/proc/self/exe", argv);
  /* exec failed (no /proc?): carry on with libgomp's default policy */
}
