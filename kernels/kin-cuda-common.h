// kin-cuda-common.h — what the module's translation units share: the context, the error macros,
// launch helpers and the per-file entry points the op table points at.  Internal to kernels/.
#pragma once

#include "kin-cuda-abi.h"

#include <cublas_v2.h>
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

// Default scratch budget for im2col columns and attention score bands; ops work in chunks that
// fit (ctx->scratch_budget, KIN_CUDA_OPT_SCRATCH_KIB).
#define KIN_CUDA_SCRATCH_BUDGET ((size_t) 256 << 20)
// cuBLAS's workspace (cublasSetWorkspace)
#define KIN_CUDA_CUBLAS_WS ((size_t) 32 << 20)

struct KinCudaCudnn;      // kin-cuda-conv.cu (NULL when libcudnn is absent)
struct KinCudaLtPlan;     // kin-cuda-gemm.cu
struct KinCudaAllocator;  // kin-cuda-memory.cu

struct KinCudaCtx {
  int device;
  cudaStream_t stream;
  cublasHandle_t cublas;
  KinCudaCudnn *cudnn;
  // cuBLASLt for linear with a bias (the bias in the GEMM's epilogue); NULL if it did not start.
  // Plans per shape, cached (kin-cuda-gemm.cu).
  cublasLtHandle_t cublaslt;
  KinCudaLtPlan *lt_plans;
  int lt_next;

  // the caching allocator (kin-cuda-memory.cu)
  KinCudaAllocator *mem;
  // one growable device workspace (a block of the allocator); ops use it in stream order, never
  // two at once
  void *ws;
  size_t ws_size;
  // cuBLAS's own workspace, set once so that cuBLAS never allocates (graph capture included)
  void *cublas_ws;

  // graphs: a capture open on the stream, the live graph (at most one), launches so far
  int capturing;
  KinCudaGraph *graph;
  uint64_t graph_launches;

  int opt_cudnn, opt_exact_half, opt_attention, opt_fast_attention;
  size_t scratch_budget;  // bytes

  char msg[512];
  char description[256];
};

// Records a failure message (printf-style) and returns @status.
int kin_cuda_fail (KinCudaCtx *ctx, int status, const char *file, int line, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));
int kin_cuda_fail_cuda (KinCudaCtx *ctx, cudaError_t e, const char *call, const char *file, int line);
int kin_cuda_fail_cublas (KinCudaCtx *ctx, cublasStatus_t s, const char *call, const char *file,
                          int line);

// The macros expect a variable `KinCudaCtx *ctx` in scope and return the status from the
// enclosing function (which must return int).
#define CUDA_TRY(call)                                                                           \
  do {                                                                                           \
    cudaError_t kin_e_ = (call);                                                                 \
    if (kin_e_ != cudaSuccess)                                                                   \
      return kin_cuda_fail_cuda (ctx, kin_e_, #call, __FILE__, __LINE__);                        \
  } while (0)

#define CUBLAS_TRY(call)                                                                         \
  do {                                                                                           \
    cublasStatus_t kin_s_ = (call);                                                              \
    if (kin_s_ != CUBLAS_STATUS_SUCCESS)                                                         \
      return kin_cuda_fail_cublas (ctx, kin_s_, #call, __FILE__, __LINE__);                      \
  } while (0)

// After a <<<>>> launch: reports bad configurations and earlier asynchronous failures.
#define LAUNCH_CHECK() CUDA_TRY (cudaGetLastError ())

#define BAD_INPUT(...) kin_cuda_fail (ctx, KIN_CUDA_ERR_BAD_INPUT, __FILE__, __LINE__, __VA_ARGS__)

// kin-cuda-memory.cu: the caching allocator (see there), the workspace and graphs.
int kin_cuda_mem_init (KinCudaCtx *ctx);
void kin_cuda_mem_shutdown (KinCudaCtx *ctx);
// A block of at least @bytes (contents undefined), or KIN_CUDA_ERR_OOM after a trim and a retry.
int kin_cuda_mem_get (KinCudaCtx *ctx, size_t bytes, void **out);
// Returns a block to the cache; no synchronisation (the next user is queued behind its last one).
int kin_cuda_mem_put (KinCudaCtx *ctx, void *p);
// Releases every cached block to CUDA (one stream synchronisation).
int kin_cuda_mem_trim (KinCudaCtx *ctx);
void kin_cuda_mem_stats (KinCudaCtx *ctx, uint64_t *in_use, uint64_t *peak, uint64_t *reserved,
                         uint64_t *total);
void kin_cuda_mem_reset_peak (KinCudaCtx *ctx);
// Makes the workspace at least @bytes large (contents are not kept).
int kin_cuda_workspace (KinCudaCtx *ctx, size_t bytes, void **out);
int kin_cuda_graph_begin (KinCudaCtx *ctx);
int kin_cuda_graph_end (KinCudaCtx *ctx, KinCudaGraph **out);
int kin_cuda_graph_launch (KinCudaCtx *ctx, KinCudaGraph *graph);
int kin_cuda_graph_destroy (KinCudaCtx *ctx, KinCudaGraph *graph);

// Blocks for a grid-stride loop over @n items.
static inline unsigned
kin_grid (int64_t n, int threads)
{
  int64_t b = (n + threads - 1) / threads;
  if (b > (1 << 20))
    b = 1 << 20;
  return (unsigned) (b < 1 ? 1 : b);
}

static inline bool
kin_fits_int (int64_t v)
{
  return v >= 0 && v <= INT32_MAX;
}

// kin-cuda-gemm.cu
int kin_cuda_linear (KinCudaCtx *ctx, float *y, const float *x, const void *w, int w_dtype,
                     const float *bias, int64_t rows, int64_t in, int64_t out);
int kin_cuda_matmul (KinCudaCtx *ctx, float *c, const float *a, const float *b, int batch, int m,
                     int n, int k, int trans_a, int trans_b, float alpha, int64_t stride_a,
                     int64_t stride_b, int64_t stride_c);
// Row-major c = alpha·op(a)·op(b) with explicit leading dimensions (elements between rows),
// batched with element strides; f32 everywhere, f32 accumulation.
int kin_cuda_gemm_rm (KinCudaCtx *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                      const float *a, int64_t lda, int64_t stride_a, const float *b, int64_t ldb,
                      int64_t stride_b, float beta, float *c, int64_t ldc, int64_t stride_c,
                      int batch);

// kin-cuda-norm.cu
int kin_cuda_layer_norm (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *b,
                         int64_t rows, int64_t dim, float eps);
int kin_cuda_rms_norm (KinCudaCtx *ctx, float *y, const float *x, const float *w, int64_t rows,
                       int64_t dim, float eps);
int kin_cuda_group_norm (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *b,
                         int64_t n, int64_t c, int64_t hw, int groups, float eps, int silu);
int kin_cuda_softmax (KinCudaCtx *ctx, float *y, const float *x, int64_t rows, int64_t dim);

// kin-cuda-elementwise.cu
int kin_cuda_modulate (KinCudaCtx *ctx, float *y, const float *x, const float *shift,
                       const float *scale, int64_t sstride, int64_t groups, int64_t rows,
                       int64_t dim);
int kin_cuda_gate_add (KinCudaCtx *ctx, float *x, const float *y, const float *gate,
                       int64_t gstride, int64_t groups, int64_t rows, int64_t dim);
int kin_cuda_gelu_tanh (KinCudaCtx *ctx, float *y, const float *x, int64_t n);
int kin_cuda_silu (KinCudaCtx *ctx, float *y, const float *x, int64_t n);
int kin_cuda_add (KinCudaCtx *ctx, float *y, const float *a, const float *b, int64_t n, int64_t nb);
int kin_cuda_mul (KinCudaCtx *ctx, float *y, const float *a, const float *b, int64_t n, int64_t nb);
int kin_cuda_scale (KinCudaCtx *ctx, float *y, const float *x, int64_t n, float alpha, float beta);
int kin_cuda_upsample_nearest2x (KinCudaCtx *ctx, float *y, const float *x, int64_t nc, int64_t h,
                                 int64_t w);
int kin_cuda_rope (KinCudaCtx *ctx, float *x, int64_t stride, int64_t batch, int64_t len, int heads,
                   int head_dim, const float *cos, const float *sin);
int kin_cuda_permute (KinCudaCtx *ctx, float *y, const float *x, int ndim, const int64_t *dims,
                      const int *perm);
int kin_cuda_copy (KinCudaCtx *ctx, float *y, const float *x, int64_t n);
// y[r*row_len + i] = bias[i] for r < rows (the bias pre-fill of linear)
int kin_cuda_fill_rows (KinCudaCtx *ctx, float *y, const float *bias, int64_t rows, int64_t row_len);
// y[(img*channels + c)*plane + i] += bias[c]
int kin_cuda_add_channel_bias (KinCudaCtx *ctx, float *y, const float *bias, int64_t images,
                               int64_t channels, int64_t plane);

// kin-cuda-attention.cu
int kin_cuda_attention (KinCudaCtx *ctx, const KinCudaAttention *desc);
// The fields every attention kernel's launch parameters share (AttnArgs, StagedArgs, MmaArgs
// name them alike), from the call's description; the rest of @a is zeroed.
template <typename Args>
static inline void
kin_attn_args_init (Args &a, const KinCudaAttention *d)
{
  memset (&a, 0, sizeof a);
  a.q_stride = d->q_stride;
  a.kv_stride = d->kv_stride;
  a.out_stride = d->out_stride;
  a.heads = d->heads;
  a.lq = d->lq;
  a.lk = d->lk;
  a.head_dim = d->head_dim;
  a.scale = d->scale;
  a.bias = d->bias;
  a.has_lens = d->kv_lens != NULL;
}
// kin-cuda-attention-short.cu: path 5 (lk ≤ 64, head_dim ≤ 128; f32), called by the dispatcher
int kin_cuda_attention_short_staged (KinCudaCtx *ctx, const KinCudaAttention *desc);
// kin-cuda-attention-mma.cu: path 6 (head_dim ≤ 128; bf16 operands), called by the dispatcher
int kin_cuda_attention_mma (KinCudaCtx *ctx, const KinCudaAttention *desc);

// kin-cuda-conv.cu
int kin_cuda_conv2d (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *bias,
                     const KinCudaConv2d *desc);
// Loads libcudnn when present (no error when absent; ctx->cudnn stays NULL).
void kin_cuda_cudnn_open (KinCudaCtx *ctx);
// kin-cuda-gemm.cu: cuBLASLt (ctx->cublaslt stays NULL when it does not start: plain cuBLAS)
void kin_cuda_lt_open (KinCudaCtx *ctx);
void kin_cuda_lt_close (KinCudaCtx *ctx);
void kin_cuda_cudnn_close (KinCudaCtx *ctx);
// "cuDNN 9.1.0" or "no cuDNN"
const char *kin_cuda_cudnn_describe (KinCudaCtx *ctx);
