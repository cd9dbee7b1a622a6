/* kin-backend-cuda.c — the engine side of the CUDA backend: finds and opens kinora-cuda.so with
 * GModule, checks its ABI version, asks it for a device, and fills a KinBackend whose ops check
 * their arguments exactly as the CPU backend does, then call the module's op table with device
 * pointers (element offsets applied here).  Status codes coming back become the backend's sticky
 * GError (see kin-backend.h); the module's message names the file, line and failing call. */
#include "kin-config.h"
#include "kin-backend-cuda.h"
#include "kin-error.h"
#include "../kernels/kin-cuda-abi.h"
#include <gmodule.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUDA_MODULE_NAME "kinora-cuda.so"

typedef struct {
  GModule *module;
  const KinCudaOps *ops;
  KinCudaCtx *ctx;
} CudaPriv;

#define PRIV(be) ((CudaPriv *) (be)->priv)
#define OPS(be) (PRIV (be)->ops)
#define CTX(be) (PRIV (be)->ctx)
#define F(t) ((float *) (t)->data)
#define CF(t) ((const float *) (t)->data)
#define OPT_F(t) ((t) ? CF (t) : NULL)

/* KIN_CUDA_PROFILE=1: a diagnostic for tuning.  Every op waits for the device before and after
 * it runs, and its time is summed per op (per shape for linear, matmul and attention); the table
 * goes to stderr at exit, slowest first, or earlier through kin_backend_cuda_profile_print
 * (`bench stdit` prints its timed forwards only).  Graphs are off in this mode (a wait cannot be
 * captured) and the waits add launch latency, so totals run above the un-profiled time. */
typedef struct {
  const char *key;
  double seconds;
  guint64 calls;
} ProfRow;

static KinBackend *prof_be;   /* the profiled backend, NULL when profiling is off */
static GHashTable *prof_rows; /* interned key → ProfRow */
static gint64 prof_t0;

/* Used as `PROFILE_START (be) OPS (be)->op (…)`: waits for the device, starts the clock, then
 * evaluates the call (the conditional sequences the two). */
#define PROFILE_START(be) prof_start (be) ? KIN_CUDA_ERR_DEVICE :

static int
prof_start (KinBackend *be)
{
  if (prof_be == be) {
    OPS (be)->synchronize (CTX (be));
    prof_t0 = g_get_monotonic_time ();
  }
  return 0;
}

static void
prof_stop (KinBackend *be, const char *key)
{
  if (prof_be != be || prof_t0 == 0)
    return;
  OPS (be)->synchronize (CTX (be));
  double s = (g_get_monotonic_time () - prof_t0) / 1e6;
  prof_t0 = 0;
  key = g_intern_string (key);
  ProfRow *row = g_hash_table_lookup (prof_rows, key);
  if (row == NULL) {
    row = g_new0 (ProfRow, 1);
    row->key = key;
    g_hash_table_insert (prof_rows, (gpointer) key, row);
  }
  row->seconds += s;
  row->calls++;
}

static int
prof_cmp (gconstpointer a, gconstpointer b)
{
  const ProfRow *x = a, *y = b;
  return x->seconds < y->seconds ? 1 : x->seconds > y->seconds ? -1 : 0;
}

static void
prof_print_rows (int per, const char *what)
{
  if (prof_rows == NULL || g_hash_table_size (prof_rows) == 0)
    return;
  per = MAX (per, 1);
  GList *rows = g_list_sort (g_hash_table_get_values (prof_rows), prof_cmp);
  double total = 0;
  for (GList *l = rows; l; l = l->next)
    total += ((ProfRow *) l->data)->seconds;
  fprintf (stderr, "KIN_CUDA_PROFILE (%s): %.3f ms in ops, each timed between two device waits\n", what,
           total * 1e3 / per);
  fprintf (stderr, "  %10s %6s %10s %8s  %s\n", "ms", "%", "calls", "ms/call", "op");
  for (GList *l = rows; l; l = l->next) {
    ProfRow *r = l->data;
    fprintf (stderr, "  %10.2f %6.1f %10.1f %8.3f  %s\n", r->seconds * 1e3 / per,
             total > 0 ? 100 * r->seconds / total : 0, (double) r->calls / per, r->seconds * 1e3 / r->calls,
             r->key);
  }
  g_list_free (rows);
  g_hash_table_remove_all (prof_rows);
}

static void
prof_print (void)
{
  prof_print_rows (1, "since the last table");
}

void
kin_backend_cuda_profile_reset (void)
{
  if (prof_rows != NULL)
    g_hash_table_remove_all (prof_rows);
}

void
kin_backend_cuda_profile_print (int per, const char *what)
{
  prof_print_rows (per, what);
}

/* The profile key of an op with shapes (only built while profiling). */
static G_GNUC_PRINTF (2, 3) const char *
prof_key (const char *op, const char *format, ...)
{
  if (prof_be == NULL)
    return op;
  va_list ap;
  va_start (ap, format);
  g_autofree char *detail = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_autofree char *key = g_strdup_printf ("%s %s", op, detail);
  return g_intern_string (key);
}

static void
report (KinBackend *be, const char *op, int rc)
{
  prof_stop (be, op);
  if (rc == KIN_CUDA_OK)
    return;
  if (rc == KIN_CUDA_ERR_OOM) {  /* recoverable: the module has already released its cache */
    kin_backend_set_error (be, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "the GPU ran out of memory (CUDA %s: %s); %s",
                           op, OPS (be)->error_message (CTX (be)), KIN_BACKEND_OOM_HINT);
    return;
  }
  int code = rc == KIN_CUDA_ERR_BAD_INPUT ? KIN_ENGINE_ERROR_BAD_INPUT : KIN_ENGINE_ERROR_FAILED;
  kin_backend_set_error (be, code, "CUDA %s: %s", op, OPS (be)->error_message (CTX (be)));
}

/* The CPU backend's check, plus: the tensor must live on this backend (a host pointer given to
 * a kernel would kill the CUDA context). */
static gboolean
check_f32 (KinBackend *be, const char *op, const KinTensor *t, int64_t need)
{
  if (t == NULL)
    return TRUE;
  if (t->backend != be) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "%s: tensor lives on the %s backend, not cuda",
                           op, t->backend ? t->backend->name : "(none)");
    return FALSE;
  }
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
cuda_alloc (KinBackend *be, size_t bytes)
{
  void *p = OPS (be)->alloc (CTX (be), bytes);
  if (p == NULL)  /* kin_tensor_new raises OUT_OF_MEMORY; keep the module's reason in the log */
    g_debug ("CUDA alloc of %zu bytes failed: %s", bytes, OPS (be)->error_message (CTX (be)));
  return p;
}

static void
cuda_free (KinBackend *be, void *p)
{
  report (be, "free", PROFILE_START (be) OPS (be)->free (CTX (be), p));
}

static void
cuda_upload (KinBackend *be, void *dst, const void *src, size_t n)
{
  report (be, "upload", PROFILE_START (be) OPS (be)->upload (CTX (be), dst, src, n));
}

static void
cuda_download (KinBackend *be, void *dst, const void *src, size_t n)
{
  report (be, "download", PROFILE_START (be) OPS (be)->download (CTX (be), dst, src, n));
}

static void
cuda_synchronize (KinBackend *be)
{
  report (be, "synchronize", PROFILE_START (be) OPS (be)->synchronize (CTX (be)));
}

static void
cuda_memory_stats (KinBackend *be, uint64_t *in_use, uint64_t *peak, uint64_t *total)
{
  OPS (be)->memory_stats (CTX (be), in_use, peak, NULL, total);
}

static void
cuda_reset_peak_memory (KinBackend *be)
{
  OPS (be)->reset_peak_memory (CTX (be));
}

/* --- graphs --- */

static gboolean
cuda_graph_begin (KinBackend *be)
{
  if (be->error)
    return FALSE;
  int rc = OPS (be)->graph_begin (CTX (be));
  report (be, "graph capture", rc);
  return rc == KIN_CUDA_OK;
}

static gpointer
cuda_graph_end (KinBackend *be)
{
  KinCudaGraph *g = NULL;
  int rc = OPS (be)->graph_end (CTX (be), &g);
  report (be, "graph capture", rc);
  if (g != NULL && be->error != NULL) {  /* an op failed (or was refused) inside the capture */
    OPS (be)->graph_destroy (CTX (be), g);
    g = NULL;
  }
  return rc == KIN_CUDA_OK ? g : NULL;
}

static void
cuda_graph_launch (KinBackend *be, gpointer graph)
{
  if (!be->error)
    report (be, "graph launch", PROFILE_START (be) OPS (be)->graph_launch (CTX (be), graph));
}

static void
cuda_graph_free (KinBackend *be, gpointer graph)
{
  report (be, "graph free", PROFILE_START (be) OPS (be)->graph_destroy (CTX (be), graph));
}

/* --- matrices --- */

static void
cuda_linear (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
             const KinTensor *bias, int64_t rows, int64_t in, int64_t out)
{
  if (be->error || !check_f32 (be, "linear", x, rows * in) || !check_f32 (be, "linear", y, rows * out) ||
      !check_f32 (be, "linear", bias, out))
    return;
  if (w->backend != be) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "linear: weight lives on the %s backend, not cuda",
                           w->backend ? w->backend->name : "(none)");
    return;
  }
  if (kin_tensor_numel (w) != in * out) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT,
                           "linear: weight has %" G_GINT64_FORMAT " elements, expected %" G_GINT64_FORMAT " × %" G_GINT64_FORMAT,
                           kin_tensor_numel (w), out, in);
    return;
  }
  int dt;
  switch (w->dtype) {
  case KIN_DTYPE_F32: dt = KIN_CUDA_DT_F32; break;
  case KIN_DTYPE_F16: dt = KIN_CUDA_DT_F16; break;
  case KIN_DTYPE_BF16: dt = KIN_CUDA_DT_BF16; break;
  default:
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "linear: weight dtype %s unsupported",
                           kin_dtype_name (w->dtype));
    return;
  }
  report (be, prof_key ("linear", "%s rows %" G_GINT64_FORMAT " %" G_GINT64_FORMAT "→%" G_GINT64_FORMAT,
                        kin_dtype_name (w->dtype), rows, in, out), PROFILE_START (be) OPS (be)->linear (CTX (be), F (y), CF (x), w->data, dt, OPT_F (bias), rows, in, out));
}

static void
cuda_matmul (KinBackend *be, KinTensor *c, const KinTensor *a, const KinTensor *b, int batch,
             int m, int n, int k, gboolean trans_a, gboolean trans_b, float alpha,
             int64_t stride_a, int64_t stride_b, int64_t stride_c)
{
  if (be->error || !check_f32 (be, "matmul", a, (int64_t) (batch - 1) * stride_a + (int64_t) m * k) ||
      !check_f32 (be, "matmul", b, (int64_t) (batch - 1) * stride_b + (int64_t) k * n) ||
      !check_f32 (be, "matmul", c, (int64_t) (batch - 1) * stride_c + (int64_t) m * n))
    return;
  report (be, prof_key ("matmul", "%d × %d×%d×%d", batch, m, n, k), PROFILE_START (be) OPS (be)->matmul (CTX (be), F (c), CF (a), CF (b), batch, m, n, k, trans_a != 0,
                                          trans_b != 0, alpha, stride_a, stride_b, stride_c));
}

/* --- normalisations --- */

static void
cuda_layer_norm (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
                 const KinTensor *b, int64_t rows, int64_t dim, float eps)
{
  if (be->error || !check_f32 (be, "layer_norm", x, rows * dim) || !check_f32 (be, "layer_norm", y, rows * dim) ||
      !check_f32 (be, "layer_norm", w, dim) || !check_f32 (be, "layer_norm", b, dim))
    return;
  report (be, "layer_norm", PROFILE_START (be) OPS (be)->layer_norm (CTX (be), F (y), CF (x), OPT_F (w), OPT_F (b), rows, dim, eps));
}

static void
cuda_rms_norm (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w, int64_t rows,
               int64_t dim, float eps)
{
  if (be->error || !check_f32 (be, "rms_norm", x, rows * dim) || !check_f32 (be, "rms_norm", y, rows * dim) ||
      !check_f32 (be, "rms_norm", w, dim))
    return;
  report (be, "rms_norm", PROFILE_START (be) OPS (be)->rms_norm (CTX (be), F (y), CF (x), OPT_F (w), rows, dim, eps));
}

static void
cuda_modulate (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *shift,
               int64_t shift_offset, const KinTensor *scale, int64_t scale_offset, int64_t sstride,
               int64_t groups, int64_t rows, int64_t dim)
{
  int64_t n = groups * rows * dim;
  if (be->error || !check_f32 (be, "modulate", x, n) || !check_f32 (be, "modulate", y, n) ||
      !check_f32 (be, "modulate", shift, shift_offset + (groups - 1) * sstride + dim) ||
      !check_f32 (be, "modulate", scale, scale_offset + (groups - 1) * sstride + dim))
    return;
  report (be, "modulate", PROFILE_START (be) OPS (be)->modulate (CTX (be), F (y), CF (x), CF (shift) + shift_offset,
                                              CF (scale) + scale_offset, sstride, groups, rows, dim));
}

static void
cuda_gate_add (KinBackend *be, KinTensor *x, const KinTensor *y, const KinTensor *gate,
               int64_t gate_offset, int64_t gstride, int64_t groups, int64_t rows, int64_t dim)
{
  int64_t n = groups * rows * dim;
  if (be->error || !check_f32 (be, "gate_add", x, n) || !check_f32 (be, "gate_add", y, n) ||
      !check_f32 (be, "gate_add", gate, gate ? gate_offset + (groups - 1) * gstride + dim : 0))
    return;
  report (be, "gate_add", PROFILE_START (be) OPS (be)->gate_add (CTX (be), F (x), CF (y), gate ? CF (gate) + gate_offset : NULL,
                                              gstride, groups, rows, dim));
}

/* --- element-wise --- */

static gboolean
check_unary (KinBackend *be, const char *op, KinTensor *y, const KinTensor *x)
{
  return !be->error && check_f32 (be, op, x, -1) && check_f32 (be, op, y, kin_tensor_numel (x));
}

static void
cuda_gelu_tanh (KinBackend *be, KinTensor *y, const KinTensor *x)
{
  if (check_unary (be, "gelu_tanh", y, x))
    report (be, "gelu_tanh", PROFILE_START (be) OPS (be)->gelu_tanh (CTX (be), F (y), CF (x), kin_tensor_numel (x)));
}

static void
cuda_silu (KinBackend *be, KinTensor *y, const KinTensor *x)
{
  if (check_unary (be, "silu", y, x))
    report (be, "silu", PROFILE_START (be) OPS (be)->silu (CTX (be), F (y), CF (x), kin_tensor_numel (x)));
}

static void
cuda_softmax (KinBackend *be, KinTensor *y, const KinTensor *x, int64_t rows, int64_t dim)
{
  if (be->error || !check_f32 (be, "softmax", x, rows * dim) || !check_f32 (be, "softmax", y, rows * dim))
    return;
  report (be, "softmax", PROFILE_START (be) OPS (be)->softmax (CTX (be), F (y), CF (x), rows, dim));
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
cuda_add (KinBackend *be, KinTensor *y, const KinTensor *a, const KinTensor *b)
{
  if (check_binary (be, "add", y, a, b))
    report (be, "add", PROFILE_START (be) OPS (be)->add (CTX (be), F (y), CF (a), CF (b), kin_tensor_numel (a),
                                      kin_tensor_numel (b)));
}

static void
cuda_mul (KinBackend *be, KinTensor *y, const KinTensor *a, const KinTensor *b)
{
  if (check_binary (be, "mul", y, a, b))
    report (be, "mul", PROFILE_START (be) OPS (be)->mul (CTX (be), F (y), CF (a), CF (b), kin_tensor_numel (a),
                                      kin_tensor_numel (b)));
}

static void
cuda_scale (KinBackend *be, KinTensor *y, const KinTensor *x, float alpha, float beta)
{
  if (check_unary (be, "scale", y, x))
    report (be, "scale", PROFILE_START (be) OPS (be)->scale (CTX (be), F (y), CF (x), kin_tensor_numel (x), alpha, beta));
}

/* --- attention --- */

static void
cuda_attention (KinBackend *be, KinTensor *out, const KinTensor *q, const KinTensor *k,
                const KinTensor *v, const KinAttention *d)
{
  if (be->error)
    return;
  int64_t B = d->batch, H = d->heads, LQ = d->lq, LK = d->lk, D = d->head_dim;
  if (B <= 0 || H <= 0 || LQ <= 0 || LK <= 0 || D <= 0) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "attention: empty dimensions");
    return;
  }
  int64_t q_need = d->q_offset + ((B * LQ) - 1) * d->q_stride + H * D;
  int64_t kv_need_k = d->k_offset + ((B * LK) - 1) * d->kv_stride + H * D;
  int64_t kv_need_v = d->v_offset + ((B * LK) - 1) * d->kv_stride + H * D;
  int64_t o_need = d->out_offset + ((B * LQ) - 1) * d->out_stride + H * D;
  if (!check_f32 (be, "attention q", q, q_need) || !check_f32 (be, "attention k", k, kv_need_k) ||
      !check_f32 (be, "attention v", v, kv_need_v) || !check_f32 (be, "attention out", out, o_need) ||
      !check_f32 (be, "attention bias", d->bias, d->bias ? H * LQ * LK : 0))
    return;
  KinCudaAttention a = {
    .batch = d->batch, .heads = d->heads, .lq = d->lq, .lk = d->lk, .head_dim = d->head_dim,
    .q = CF (q) + d->q_offset, .k = CF (k) + d->k_offset, .v = CF (v) + d->v_offset,
    .out = F (out) + d->out_offset,
    .q_stride = d->q_stride, .kv_stride = d->kv_stride, .out_stride = d->out_stride,
    .scale = d->scale, .kv_lens = d->kv_lens, .bias = OPT_F (d->bias),
  };
  report (be, prof_key ("attention", "b %d h %d lq %d lk %d d %d%s%s", d->batch, d->heads, d->lq, d->lk,
                        d->head_dim, d->kv_lens ? " lens" : "", d->bias ? " bias" : ""), PROFILE_START (be) OPS (be)->attention (CTX (be), &a));
}

/* --- convolution and friends --- */

static void
cuda_conv2d (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
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
  KinCudaConv2d c = {
    .n = d->n, .cin = d->cin, .h = d->h, .w = d->w, .cout = d->cout, .kh = d->kh, .kw = d->kw,
    .stride = d->stride, .pad_t = d->pad_t, .pad_b = d->pad_b, .pad_l = d->pad_l, .pad_r = d->pad_r,
  };
  report (be, prof_key ("conv2d", "n %d %d→%d %dx%d k %dx%d s %d", d->n, d->cin, d->cout, d->h, d->w, d->kh,
                        d->kw, d->stride), PROFILE_START (be) OPS (be)->conv2d (CTX (be), F (y), CF (x), CF (w), OPT_F (bias), &c));
}

static void
cuda_group_norm (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
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
  report (be, "group_norm", PROFILE_START (be) OPS (be)->group_norm (CTX (be), F (y), CF (x), OPT_F (w), OPT_F (b), n, c,
                                                  hw, groups, eps, silu != 0));
}

static void
cuda_upsample_nearest2x (KinBackend *be, KinTensor *y, const KinTensor *x, int64_t nc, int64_t h,
                         int64_t w)
{
  if (be->error || !check_f32 (be, "upsample", x, nc * h * w) || !check_f32 (be, "upsample", y, nc * h * w * 4))
    return;
  report (be, "upsample", PROFILE_START (be) OPS (be)->upsample_nearest2x (CTX (be), F (y), CF (x), nc, h, w));
}

static void
cuda_rope (KinBackend *be, KinTensor *x, int64_t x_offset, int64_t stride, int64_t batch,
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
  report (be, "rope", PROFILE_START (be) OPS (be)->rope (CTX (be), F (x) + x_offset, stride, batch, len, heads, head_dim,
                                      CF (cos_t), CF (sin_t)));
}

static void
cuda_permute (KinBackend *be, KinTensor *y, const KinTensor *x, int ndim, const int64_t *dims,
              const int *perm)
{
  if (be->error)
    return;
  int64_t n;
  if (ndim < 1 || ndim > KIN_CUDA_MAX_DIMS || !kin_shape_numel_checked (ndim, dims, &n)) {
    kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "permute: bad dims");
    return;
  }
  if (!check_f32 (be, "permute", x, n) || !check_f32 (be, "permute", y, n))
    return;
  unsigned seen = 0;
  for (int i = 0; i < ndim; i++) {
    if (perm[i] < 0 || perm[i] >= ndim || (seen & (1u << perm[i]))) {
      kin_backend_set_error (be, KIN_ENGINE_ERROR_BAD_INPUT, "permute: invalid permutation");
      return;
    }
    seen |= 1u << perm[i];
  }
  report (be, prof_key ("permute", "%d dims, %s", ndim, perm[ndim - 1] == ndim - 1 ? "last kept" : "last moved"),
          PROFILE_START (be) OPS (be)->permute (CTX (be), F (y), CF (x), ndim, dims, perm));
}

static void
cuda_copy (KinBackend *be, KinTensor *y, int64_t y_offset, const KinTensor *x, int64_t x_offset,
           int64_t n)
{
  if (be->error || !check_f32 (be, "copy", x, x_offset + n) || !check_f32 (be, "copy", y, y_offset + n))
    return;
  report (be, "copy", PROFILE_START (be) OPS (be)->copy (CTX (be), F (y) + y_offset, CF (x) + x_offset, n));
}

/* --- loading --- */

static G_GNUC_PRINTF (2, 3) KinBackend *
no_device (GError **error, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_NO_DEVICE, "CUDA unavailable: %s", msg);
  return NULL;
}

/* The first kinora-cuda.so in $KIN_CUDA_MODULE_DIR, the build tree, the install dir. */
static char *
find_module (GString *looked)
{
  const char *dirs[] = { g_getenv ("KIN_CUDA_MODULE_DIR"), KIN_BUILD_KERNELSDIR, KIN_PKGLIBDIR };
  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++) {
    if (dirs[i] == NULL || dirs[i][0] == '\0')
      continue;
    g_autofree char *path = g_build_filename (dirs[i], CUDA_MODULE_NAME, NULL);
    if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
      return g_steal_pointer (&path);
    g_string_append_printf (looked, "%s%s", looked->len ? ", " : "", dirs[i]);
  }
  return NULL;
}

static void
fill_table (KinBackend *be)
{
  be->name = "cuda";
  be->alloc = cuda_alloc;
  be->free = cuda_free;
  be->upload = cuda_upload;
  be->download = cuda_download;
  be->synchronize = cuda_synchronize;
  be->linear = cuda_linear;
  be->matmul = cuda_matmul;
  be->layer_norm = cuda_layer_norm;
  be->rms_norm = cuda_rms_norm;
  be->modulate = cuda_modulate;
  be->gate_add = cuda_gate_add;
  be->gelu_tanh = cuda_gelu_tanh;
  be->silu = cuda_silu;
  be->softmax = cuda_softmax;
  be->add = cuda_add;
  be->mul = cuda_mul;
  be->scale = cuda_scale;
  be->attention = cuda_attention;
  be->conv2d = cuda_conv2d;
  be->group_norm = cuda_group_norm;
  be->upsample_nearest2x = cuda_upsample_nearest2x;
  be->rope = cuda_rope;
  be->permute = cuda_permute;
  be->copy = cuda_copy;
  be->memory_stats = cuda_memory_stats;
  be->reset_peak_memory = cuda_reset_peak_memory;
  be->graph_begin = cuda_graph_begin;
  be->graph_end = cuda_graph_end;
  be->graph_launch = cuda_graph_launch;
  be->graph_free = cuda_graph_free;
  be->linear_weights_bf16 = TRUE;
}

static KinBackend *
cuda_open (GError **error)
{
  g_autoptr (GString) looked = g_string_new (NULL);
  g_autofree char *path = find_module (looked);
  if (path == NULL)
#ifdef KIN_HAVE_CUDA_MODULE
    return no_device (error, "module %s not found (looked in %s)", CUDA_MODULE_NAME, looked->str);
#else
    return no_device (error, "this build has no CUDA module (nvcc was not found at configure time; looked in %s)",
                      looked->str);
#endif
  if (!g_module_supported ())
    return no_device (error, "this platform cannot load modules");
  /* a missing libcublas or libcuda shows up here, by name */
  GModule *mod = g_module_open (path, G_MODULE_BIND_LOCAL | G_MODULE_BIND_LAZY);
  if (mod == NULL)
    return no_device (error, "cannot load %s: %s", path, g_module_error ());

  KinCudaAbiVersionFunc abi = NULL;
  KinCudaDiscoverFunc discover = NULL;
  KinCudaGetOpsFunc get_ops = NULL;
  if (!g_module_symbol (mod, "kin_cuda_abi_version", (gpointer *) &abi) || abi == NULL ||
      !g_module_symbol (mod, "kin_cuda_discover", (gpointer *) &discover) || discover == NULL) {
    g_module_close (mod);
    return no_device (error, "%s is not a Kinora CUDA module", path);
  }
  int version = abi ();
  if (version != KIN_CUDA_ABI_VERSION || !g_module_symbol (mod, "kin_cuda_get_ops", (gpointer *) &get_ops) ||
      get_ops == NULL) {
    g_module_close (mod);
    return no_device (error, "%s speaks ABI %d, this engine needs %d (rebuild or reinstall it)", path,
                      version, KIN_CUDA_ABI_VERSION);
  }
  char msg[512] = "";
  if (discover (msg, sizeof msg) <= 0) {  /* no driver, or no device */
    g_module_close (mod);
    return no_device (error, "%s", msg[0] ? msg : "no CUDA device");
  }
  const KinCudaOps *ops = get_ops (KIN_CUDA_ABI_VERSION);
  if (ops == NULL || ops->abi_version != KIN_CUDA_ABI_VERSION) {
    g_module_close (mod);
    return no_device (error, "%s has no op table for ABI %d", path, KIN_CUDA_ABI_VERSION);
  }
  KinCudaCtx *ctx = ops->init (0, msg, sizeof msg);
  if (ctx == NULL) {
    g_module_close (mod);
    return no_device (error, "%s", msg);
  }
  g_module_make_resident (mod);  /* the backend lives as long as the process */

  CudaPriv *priv = g_new0 (CudaPriv, 1);
  priv->module = mod;
  priv->ops = ops;
  priv->ctx = ctx;
  KinBackend *be = g_new0 (KinBackend, 1);
  be->priv = priv;
  fill_table (be);
  if (g_strcmp0 (g_getenv ("KIN_CUDA_EXACT"), "1") == 0) {
    /* the CPU's arithmetic: half weights widened, F32 weights kept F32, f32 attention */
    ops->set_option (ctx, KIN_CUDA_OPT_EXACT_HALF, 1);
    be->linear_weights_bf16 = FALSE;
  }
  const char *wt = g_getenv ("KIN_CUDA_WEIGHTS");
  if (wt != NULL && (g_ascii_strcasecmp (wt, "f32") == 0 || g_ascii_strcasecmp (wt, "stored") == 0))
    be->linear_weights_bf16 = FALSE;
  else if (wt != NULL && g_ascii_strcasecmp (wt, "bf16") == 0)
    be->linear_weights_bf16 = TRUE;
  /* bf16 attention goes with bf16 weights: measuring at f32 keeps attention f32 too */
  ops->set_option (ctx, KIN_CUDA_OPT_FAST_ATTENTION, be->linear_weights_bf16);
  /* KIN_CUDA_ATTENTION=1..4 forces one attention kernel where it applies (for measurements) */
  const char *ap = g_getenv ("KIN_CUDA_ATTENTION");
  if (ap != NULL && ops->set_option (ctx, KIN_CUDA_OPT_ATTENTION, atoi (ap)) != KIN_CUDA_OK)
    g_warning ("KIN_CUDA_ATTENTION=%s ignored: %s", ap, ops->error_message (ctx));
  if (g_strcmp0 (g_getenv ("KIN_CUDA_PROFILE"), "1") == 0) {
    be->graph_begin = NULL;  /* a device wait cannot be captured */
    prof_rows = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
    prof_be = be;
    atexit (prof_print);
  }
  g_debug ("CUDA backend: %s", ops->describe (ctx));
  return be;
}

KinBackend *
kin_backend_cuda (GError **error)
{
  static GMutex lock;
  static KinBackend *backend;
  g_mutex_lock (&lock);
  if (backend == NULL)
    backend = cuda_open (error);
  KinBackend *be = backend;
  g_mutex_unlock (&lock);
  return be;
}

gboolean
kin_backend_is_cuda (KinBackend *be)
{
  return be != NULL && be->alloc == cuda_alloc;
}

const char *
kin_backend_cuda_describe (KinBackend *be)
{
  g_return_val_if_fail (kin_backend_is_cuda (be), NULL);
  return OPS (be)->describe (CTX (be));
}

guint64
kin_backend_cuda_graph_launches (KinBackend *be)
{
  g_return_val_if_fail (kin_backend_is_cuda (be), 0);
  return OPS (be)->graph_launches (CTX (be));
}

gboolean
kin_backend_cuda_trim (KinBackend *be)
{
  g_return_val_if_fail (kin_backend_is_cuda (be), FALSE);
  int rc = OPS (be)->trim (CTX (be));
  report (be, "trim", rc);
  return rc == KIN_CUDA_OK;
}

gboolean
kin_backend_cuda_set_option (KinBackend *be, KinCudaOption option, int value)
{
  if (kin_backend_is_cuda (be) && option == KIN_CUDA_OPTION_BF16_WEIGHTS) {
    be->linear_weights_bf16 = value != 0;
    return TRUE;
  }
  static const int map[] = {
    [KIN_CUDA_OPTION_CUDNN] = KIN_CUDA_OPT_CUDNN,
    [KIN_CUDA_OPTION_EXACT_HALF] = KIN_CUDA_OPT_EXACT_HALF,
    [KIN_CUDA_OPTION_ATTENTION_PATH] = KIN_CUDA_OPT_ATTENTION,
    [KIN_CUDA_OPTION_SCRATCH_KIB] = KIN_CUDA_OPT_SCRATCH_KIB,
    [KIN_CUDA_OPTION_BF16_WEIGHTS] = -1,
    [KIN_CUDA_OPTION_FAST_ATTENTION] = KIN_CUDA_OPT_FAST_ATTENTION,
  };
  if (!kin_backend_is_cuda (be) || (unsigned) option >= G_N_ELEMENTS (map))
    return FALSE;
  return OPS (be)->set_option (CTX (be), map[option], value) == KIN_CUDA_OK;
}
