/* kin-cuda-abi.h — the plain C interface between the engine and kinora-cuda.so.
 *
 * The engine opens the module with GModule and looks up three symbols:
 *   int  kin_cuda_abi_version (void);                  must equal KIN_CUDA_ABI_VERSION
 *   int  kin_cuda_discover (char *msg, size_t len);    number of usable devices (0: msg says why)
 *   const KinCudaOps *kin_cuda_get_ops (int abi);      the op table (NULL for another ABI)
 *
 * Nothing here depends on GLib or CUDA headers, so both sides include it.  Pointers named "device"
 * are device pointers with every element offset already applied by the engine; sizes are in
 * elements unless they say bytes.  All data is f32 except linear()'s weight, whose dtype is given.
 *
 * Every op returns a KinCudaStatus; on anything but KIN_CUDA_OK, error_message() describes the
 * failure (file, line, the call and the CUDA/cuBLAS/cuDNN reason) until the next failing call.
 * Kernels run asynchronously on the module's stream: an execution error may surface at a later
 * op, at synchronize() or at download().  Entry points never throw, exit or abort.
 *
 * Bump KIN_CUDA_ABI_VERSION on any change to this file. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KIN_CUDA_ABI_VERSION 4

typedef enum {
  KIN_CUDA_OK = 0,
  KIN_CUDA_ERR_OOM = 1,         /* device memory exhausted: recoverable */
  KIN_CUDA_ERR_DEVICE = 2,      /* a CUDA, cuBLAS or cuDNN call failed */
  KIN_CUDA_ERR_BAD_INPUT = 3,   /* sizes the module cannot take (e.g. beyond int range) */
} KinCudaStatus;

/* Weight dtypes accepted by linear(). */
typedef enum {
  KIN_CUDA_DT_F32 = 0,
  KIN_CUDA_DT_F16 = 1,
  KIN_CUDA_DT_BF16 = 2,
} KinCudaDType;

/* Options (set_option).  Defaults in brackets. */
typedef enum {
  /* [1] use cuDNN for conv2d when libcudnn loads and the padding is symmetric; 0 = im2col+cuBLAS */
  KIN_CUDA_OPT_CUDNN = 0,
  /* [0] linear() with F16/BF16 weights: 0 = round x to the weight dtype and use tensor cores with
   * f32 accumulation; 1 = widen the weights to f32 first (bit-for-bit the CPU's recipe, slower) */
  KIN_CUDA_OPT_EXACT_HALF = 1,
  /* [0] attention kernel: 0 auto, 1 short-sequence kernel (lk ≤ 64, head_dim ≤ 128),
   * 2 flash kernel (head_dim ≤ 128), 3 cuBLAS + softmax, 4 tensor-core flash kernel (bf16
   * operands, f32 accumulation and softmax; head_dim ≤ 128), 5 short-sequence kernel with the
   * sequence's keys and values staged in shared memory (lk ≤ 64, head_dim ≤ 128, f32),
   * 6 tensor-core flash kernel on mma.sync with scores and probabilities in registers (bf16
   * operands; head_dim ≤ 128); an impossible choice falls back to auto */
  KIN_CUDA_OPT_ATTENTION = 2,
  /* [262144] scratch budget in KiB for im2col columns and attention score bands (ops work in
   * chunks that fit; tests shrink it to reach the chunking code); 0 = the default */
  KIN_CUDA_OPT_SCRATCH_KIB = 3,
  /* [1] auto may pick kernels that round attention's operands (q, k, v, probabilities) to bf16
   * for tensor cores (~1e-2 relative, the precision of bf16 weights); 0 = f32 throughout */
  KIN_CUDA_OPT_FAST_ATTENTION = 4,
} KinCudaModuleOption;

typedef struct KinCudaCtx KinCudaCtx;
typedef struct KinCudaGraph KinCudaGraph;

/* Rows are tokens; head h of a row occupies channels [h*head_dim, (h+1)*head_dim).  Row r of
 * sequence b of q is at q + (b*lq + r)*q_stride; likewise k and v with kv_stride, out with
 * out_stride.  Scores are scale·q·kᵀ + bias[h, r, j]; keys j ≥ kv_lens[b] are masked. */
typedef struct {
  int batch, heads, lq, lk, head_dim;
  const float *q, *k, *v;       /* device */
  float *out;                   /* device */
  int64_t q_stride, kv_stride, out_stride;
  float scale;
  const int32_t *kv_lens;       /* host [batch] or NULL (all lk); read during the call only (the
                                 * kernels get the lengths as launch parameters: no upload, no
                                 * synchronisation, safe inside a graph capture) */
  const float *bias;            /* device [heads, lq, lk] or NULL */
} KinCudaAttention;

/* NCHW convolution; weight [cout, cin, kh, kw]; oh = (h + pad_t + pad_b - kh)/stride + 1. */
typedef struct {
  int n, cin, h, w;
  int cout, kh, kw;
  int stride;
  int pad_t, pad_b, pad_l, pad_r;
} KinCudaConv2d;

typedef struct {
  int abi_version;              /* KIN_CUDA_ABI_VERSION */

  /* Context on @device: stream, cuBLAS handle, cuDNN when present.  NULL and @msg on failure. */
  KinCudaCtx *(*init) (int device, char *msg, size_t msg_len);
  void        (*shutdown) (KinCudaCtx *ctx);
  const char *(*error_message) (KinCudaCtx *ctx);
  /* One line: device name, compute capability, memory, cuBLAS/cuDNN versions. */
  const char *(*describe) (KinCudaCtx *ctx);
  int         (*set_option) (KinCudaCtx *ctx, int option, int value);

  /* memory: alloc returns zeroed memory, NULL when out of memory (error_message says so; the
   * module has already released its cache and tried again).  Blocks come from a stream-ordered
   * cache: free never waits for the device, and a freed block may be handed out again at once
   * (work queued on the module's stream before the free still sees the old contents).
   * upload() returns once @host may be reused; download() and synchronize() wait for the stream.
   * upload, download and synchronize fail (KIN_CUDA_ERR_BAD_INPUT) while a graph is captured. */
  void *(*alloc) (KinCudaCtx *ctx, size_t bytes);
  int   (*free) (KinCudaCtx *ctx, void *ptr);
  int   (*upload) (KinCudaCtx *ctx, void *dst, const void *host, size_t bytes);
  int   (*download) (KinCudaCtx *ctx, void *host, const void *src, size_t bytes);
  int   (*synchronize) (KinCudaCtx *ctx);

  /* y[rows, out] = x[rows, in] · w[out, in]ᵀ + bias[out] (bias may be NULL) */
  int (*linear) (KinCudaCtx *ctx, float *y, const float *x, const void *w, int w_dtype,
                 const float *bias, int64_t rows, int64_t in, int64_t out);
  /* c[i] = alpha · op(a[i]) · op(b[i]), row-major, strides in elements between batches */
  int (*matmul) (KinCudaCtx *ctx, float *c, const float *a, const float *b, int batch, int m, int n,
                 int k, int trans_a, int trans_b, float alpha, int64_t stride_a, int64_t stride_b,
                 int64_t stride_c);

  int (*layer_norm) (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *b,
                     int64_t rows, int64_t dim, float eps);
  int (*rms_norm) (KinCudaCtx *ctx, float *y, const float *x, const float *w, int64_t rows,
                   int64_t dim, float eps);
  /* shift/scale point at group 0's vector; group g's is sstride elements further */
  int (*modulate) (KinCudaCtx *ctx, float *y, const float *x, const float *shift,
                   const float *scale, int64_t sstride, int64_t groups, int64_t rows, int64_t dim);
  /* gate NULL = 1 */
  int (*gate_add) (KinCudaCtx *ctx, float *x, const float *y, const float *gate, int64_t gstride,
                   int64_t groups, int64_t rows, int64_t dim);

  int (*gelu_tanh) (KinCudaCtx *ctx, float *y, const float *x, int64_t n);
  int (*silu) (KinCudaCtx *ctx, float *y, const float *x, int64_t n);
  int (*softmax) (KinCudaCtx *ctx, float *y, const float *x, int64_t rows, int64_t dim);
  /* y[i] = a[i] (+|·) b[i % nb] */
  int (*add) (KinCudaCtx *ctx, float *y, const float *a, const float *b, int64_t n, int64_t nb);
  int (*mul) (KinCudaCtx *ctx, float *y, const float *a, const float *b, int64_t n, int64_t nb);
  int (*scale) (KinCudaCtx *ctx, float *y, const float *x, int64_t n, float alpha, float beta);

  int (*attention) (KinCudaCtx *ctx, const KinCudaAttention *desc);

  int (*conv2d) (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *bias,
                 const KinCudaConv2d *desc);
  int (*group_norm) (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *b,
                     int64_t n, int64_t c, int64_t hw, int groups, float eps, int silu);
  int (*upsample_nearest2x) (KinCudaCtx *ctx, float *y, const float *x, int64_t nc, int64_t h,
                             int64_t w);
  /* x points at token (0, 0); token (b, l) is (b*len + l)*stride elements further */
  int (*rope) (KinCudaCtx *ctx, float *x, int64_t stride, int64_t batch, int64_t len, int heads,
               int head_dim, const float *cos, const float *sin);
  /* ndim ≤ 6 (KIN_CUDA_MAX_DIMS) */
  int (*permute) (KinCudaCtx *ctx, float *y, const float *x, int ndim, const int64_t *dims,
                  const int *perm);
  /* n elements; overlapping ranges allowed */
  int (*copy) (KinCudaCtx *ctx, float *y, const float *x, int64_t n);

  /* --- ABI 3 --- */
  /* Bytes handed out by alloc() now, the most since the last reset_peak_memory(), held from CUDA
   * (handed out + cached), and the device's total memory (0 if unknown).  Any pointer may be
   * NULL. */
  int (*memory_stats) (KinCudaCtx *ctx, uint64_t *in_use, uint64_t *peak, uint64_t *reserved,
                       uint64_t *total);
  int (*reset_peak_memory) (KinCudaCtx *ctx);
  /* Gives every cached, unused block back to CUDA. */
  int (*trim) (KinCudaCtx *ctx);

  /* CUDA graphs.  graph_begin() starts capturing the module's stream: ops queued until
   * graph_end() are recorded, not run.  graph_end() turns them into an executable graph (NULL
   * and an error when the capture broke, e.g. by an upload, download or synchronize inside it;
   * the context stays usable).  graph_launch() queues one replay on the stream.  At most one
   * graph lives at a time.  Memory: every block live at graph_begin, allocated during the
   * capture or freed during it stays reserved for the graph until graph_destroy(), so the
   * graph's temporaries keep their addresses; the caller keeps the graph's inputs and outputs
   * alive and writes new inputs into them (upload, copy) before each launch. */
  int (*graph_begin) (KinCudaCtx *ctx);
  int (*graph_end) (KinCudaCtx *ctx, KinCudaGraph **graph);
  int (*graph_launch) (KinCudaCtx *ctx, KinCudaGraph *graph);
  int (*graph_destroy) (KinCudaCtx *ctx, KinCudaGraph *graph);
  /* Replays queued so far (for tests). */
  uint64_t (*graph_launches) (KinCudaCtx *ctx);
} KinCudaOps;

#define KIN_CUDA_MAX_DIMS 6

typedef int (*KinCudaAbiVersionFunc) (void);
typedef int (*KinCudaDiscoverFunc) (char *msg, size_t msg_len);
typedef const KinCudaOps *(*KinCudaGetOpsFunc) (int abi_version);

#ifdef __cplusplus
}
#endif
