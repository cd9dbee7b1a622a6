// kin-cuda-conv.cu — conv2d (CPU twin: cpu_conv2d).
//
// Two routes to the same result:
//  - cuDNN, when libcudnn loads at run time (dlopen: the module must still load without it), the
//    padding is symmetric and the tensors are below cuDNN's 2^31-element limit.  The convolution
//    descriptor asks for CUDNN_FMA_MATH (no TF32), and only the GEMM-family algorithms are used:
//    FFT and Winograd change the rounding beyond the CPU's f32 tolerance.
//  - im2col + cuBLAS otherwise (and whenever a cuDNN call refuses): columns of a chunk of images
//    (or a band of output rows of one image) fit the scratch budget; one strided-batched GEMM
//    writes straight into y.  1×1 stride-1 unpadded convolutions skip im2col.  Patch embeddings
//    (stride = kernel size, no padding) always take this route.
// The bias is added by a separate kernel in both routes.

#include "kin-cuda-common.h"

#include <stdio.h>
#include <string.h>

#define THREADS 256

// --- im2col + cuBLAS ---

// cols[img][row][px] for images [0, nimg) of x, output rows [oy0, oy0+nr): row = (c, ky, kx),
// px = (oy, ox).
__global__ void
k_im2col (float *cols, const float *x, KinCudaConv2d d, int oy0, int nr, int ow, int64_t kk,
          int64_t n)
{
  const int64_t npx = (int64_t) nr * ow, img_stride = (int64_t) d.cin * d.h * d.w;
  for (int64_t idx = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; idx < n;
       idx += (int64_t) gridDim.x * blockDim.x) {
    int64_t px = idx % npx, t = idx / npx;
    int64_t row = t % kk, img = t / kk;
    int oy = (int) (px / ow), ox = (int) (px % ow);
    int c = (int) (row / (d.kh * d.kw)), ky = (int) (row / d.kw % d.kh), kx = (int) (row % d.kw);
    int iy = (oy0 + oy) * d.stride - d.pad_t + ky;
    int ix = ox * d.stride - d.pad_l + kx;
    cols[idx] = (iy >= 0 && iy < d.h && ix >= 0 && ix < d.w)
                    ? x[img * img_stride + (int64_t) c * d.h * d.w + (int64_t) iy * d.w + ix]
                    : 0.0f;
  }
}

static int
conv_im2col (KinCudaCtx *ctx, float *y, const float *x, const float *w, const KinCudaConv2d *d,
             int oh, int ow)
{
  const int64_t kk = (int64_t) d->cin * d->kh * d->kw, ohw = (int64_t) oh * ow;
  const bool direct = d->kh == 1 && d->kw == 1 && d->stride == 1 && !d->pad_t && !d->pad_b &&
                      !d->pad_l && !d->pad_r;
  if (!kin_fits_int (kk) || !kin_fits_int (ohw))
    return BAD_INPUT ("conv2d: %lld × %lld columns beyond int range", (long long) kk, (long long) ohw);
  if (direct)  // y[n][cout, hw] = W[cout, cin] · x[n][cin, hw]
    return kin_cuda_gemm_rm (ctx, false, false, d->cout, (int) ohw, d->cin, 1.0f, w, d->cin, 0, x,
                             ohw, (int64_t) d->cin * ohw, 0.0f, y, ohw, (int64_t) d->cout * ohw,
                             d->n);

  const int64_t budget = (int64_t) (ctx->scratch_budget / sizeof (float));
  int64_t ni, nr;  // images per chunk, output rows per band
  if (kk * ohw <= budget) {
    ni = budget / (kk * ohw);
    ni = ni > d->n ? d->n : ni;
    nr = oh;
  } else {
    ni = 1;
    nr = budget / (kk * ow);
    nr = nr < 1 ? 1 : nr > oh ? oh : nr;
  }
  void *ws = NULL;
  int rc = kin_cuda_workspace (ctx, (size_t) (ni * kk * nr * ow) * sizeof (float), &ws);
  if (rc != KIN_CUDA_OK)
    return rc;
  float *cols = (float *) ws;
  for (int64_t n0 = 0; n0 < d->n; n0 += ni) {
    const int cnt = (int) (d->n - n0 < ni ? d->n - n0 : ni);
    const float *xn = x + n0 * d->cin * d->h * d->w;
    float *yn = y + n0 * d->cout * ohw;
    for (int oy0 = 0; oy0 < oh; oy0 += (int) nr) {
      const int rows = (int) (oh - oy0 < nr ? oh - oy0 : nr);
      const int64_t npx = (int64_t) rows * ow, total = cnt * kk * npx;
      k_im2col<<<kin_grid (total, THREADS), THREADS, 0, ctx->stream>>> (cols, xn, *d, oy0, rows, ow,
                                                                        kk, total);
      LAUNCH_CHECK ();
      // y[img][co][oy0*ow + p] = Σ_row W[co, row] · cols[img][row][p]; rows of y are ohw apart
      rc = kin_cuda_gemm_rm (ctx, false, false, d->cout, (int) npx, (int) kk, 1.0f, w, kk, 0, cols,
                             npx, kk * npx, 0.0f, yn + (int64_t) oy0 * ow, ohw,
                             (int64_t) d->cout * ohw, cnt);
      if (rc != KIN_CUDA_OK)
        return rc;
    }
  }
  return KIN_CUDA_OK;
}

// --- cuDNN, opened at run time ---

#ifdef KIN_HAVE_CUDNN_H
#include <cudnn.h>
#include <dlfcn.h>
#include <stdlib.h>

#define KIN_XSTR(x) #x
#define KIN_STR(x) KIN_XSTR (x)

#define CUDNN_FUNCS(X)                                                                           \
  X (cudnnGetVersion)                                                                            \
  X (cudnnGetErrorString)                                                                        \
  X (cudnnCreate)                                                                                \
  X (cudnnDestroy)                                                                               \
  X (cudnnSetStream)                                                                             \
  X (cudnnCreateTensorDescriptor)                                                                \
  X (cudnnSetTensor4dDescriptor)                                                                 \
  X (cudnnDestroyTensorDescriptor)                                                               \
  X (cudnnCreateFilterDescriptor)                                                                \
  X (cudnnSetFilter4dDescriptor)                                                                 \
  X (cudnnDestroyFilterDescriptor)                                                               \
  X (cudnnCreateConvolutionDescriptor)                                                           \
  X (cudnnSetConvolution2dDescriptor)                                                            \
  X (cudnnSetConvolutionMathType)                                                                \
  X (cudnnDestroyConvolutionDescriptor)                                                          \
  X (cudnnGetConvolution2dForwardOutputDim)                                                      \
  X (cudnnGetConvolutionForwardAlgorithm_v7)                                                     \
  X (cudnnGetConvolutionForwardWorkspaceSize)                                                    \
  X (cudnnConvolutionForward)

struct KinCudaCudnn {
  void *lib;
  cudnnHandle_t handle;
  size_t version;
  char description[64];
#define X(f) decltype (&::f) f;
  CUDNN_FUNCS (X)
#undef X
};

void
kin_cuda_cudnn_open (KinCudaCtx *ctx)
{
  static const char *names[] = { "libcudnn.so." KIN_STR (CUDNN_MAJOR), "libcudnn.so",
#ifdef KIN_CUDA_LIBDIR
                                 KIN_CUDA_LIBDIR "/libcudnn.so." KIN_STR (CUDNN_MAJOR),
#endif
  };
  void *lib = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && lib == NULL; i++)
    lib = dlopen (names[i], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return;
  KinCudaCudnn *c = (KinCudaCudnn *) calloc (1, sizeof (KinCudaCudnn));
  if (c == NULL) {
    dlclose (lib);
    return;
  }
  c->lib = lib;
  bool ok = true;
#define X(f) ok = ok && (c->f = reinterpret_cast<decltype (c->f)> (dlsym (lib, #f))) != NULL;
  CUDNN_FUNCS (X)
#undef X
  // the legacy convolution API of the major version we were compiled against
  if (ok)
    c->version = c->cudnnGetVersion ();
  if (!ok || c->version / 10000 != CUDNN_MAJOR || c->cudnnCreate (&c->handle) != CUDNN_STATUS_SUCCESS) {
    dlclose (lib);
    free (c);
    return;
  }
  if (c->cudnnSetStream (c->handle, ctx->stream) != CUDNN_STATUS_SUCCESS) {
    c->cudnnDestroy (c->handle);
    dlclose (lib);
    free (c);
    return;
  }
  snprintf (c->description, sizeof c->description, "cuDNN %zu.%zu.%zu", c->version / 10000,
            c->version / 100 % 100, c->version % 100);
  ctx->cudnn = c;
}

void
kin_cuda_cudnn_close (KinCudaCtx *ctx)
{
  KinCudaCudnn *c = ctx->cudnn;
  if (c == NULL)
    return;
  c->cudnnDestroy (c->handle);
  dlclose (c->lib);
  free (c);
  ctx->cudnn = NULL;
}

const char *
kin_cuda_cudnn_describe (KinCudaCtx *ctx)
{
  return ctx->cudnn ? ctx->cudnn->description : "no cuDNN (im2col + cuBLAS convolutions)";
}

// Returns KIN_CUDA_OK when cuDNN computed y; *declined = true when cuDNN cannot or will not take
// this convolution (the caller then uses im2col); any other status is a real failure.
static int
conv_cudnn (KinCudaCtx *ctx, float *y, const float *x, const float *w, const KinCudaConv2d *d,
            int oh, int ow, bool *declined)
{
  KinCudaCudnn *c = ctx->cudnn;
  cudnnTensorDescriptor_t xd = NULL, yd = NULL;
  cudnnFilterDescriptor_t wd = NULL;
  cudnnConvolutionDescriptor_t cd = NULL;
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int rc = KIN_CUDA_OK, n_perf = 0, on = 0, oc = 0, ohh = 0, oww = 0, pick = -1;
  *declined = true;

  bool ok = c->cudnnCreateTensorDescriptor (&xd) == CUDNN_STATUS_SUCCESS &&
            c->cudnnCreateTensorDescriptor (&yd) == CUDNN_STATUS_SUCCESS &&
            c->cudnnCreateFilterDescriptor (&wd) == CUDNN_STATUS_SUCCESS &&
            c->cudnnCreateConvolutionDescriptor (&cd) == CUDNN_STATUS_SUCCESS;
  ok = ok && c->cudnnSetTensor4dDescriptor (xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cin,
                                            d->h, d->w) == CUDNN_STATUS_SUCCESS;
  ok = ok && c->cudnnSetTensor4dDescriptor (yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cout,
                                            oh, ow) == CUDNN_STATUS_SUCCESS;
  ok = ok && c->cudnnSetFilter4dDescriptor (wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d->cout, d->cin,
                                            d->kh, d->kw) == CUDNN_STATUS_SUCCESS;
  ok = ok && c->cudnnSetConvolution2dDescriptor (cd, d->pad_t, d->pad_l, d->stride, d->stride, 1, 1,
                                                 CUDNN_CROSS_CORRELATION,
                                                 CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS;
  ok = ok && c->cudnnSetConvolutionMathType (cd, CUDNN_FMA_MATH) == CUDNN_STATUS_SUCCESS;
  ok = ok && c->cudnnGetConvolution2dForwardOutputDim (cd, xd, wd, &on, &oc, &ohh, &oww) ==
                 CUDNN_STATUS_SUCCESS &&
       on == d->n && oc == d->cout && ohh == oh && oww == ow;
  ok = ok && c->cudnnGetConvolutionForwardAlgorithm_v7 (c->handle, xd, wd, cd, yd,
                                                        CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n_perf,
                                                        perf) == CUDNN_STATUS_SUCCESS;
  for (int i = 0; ok && i < n_perf && pick < 0; i++) {
    bool gemm_family = perf[i].algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
                       perf[i].algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
                       perf[i].algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
    bool fma = perf[i].mathType != CUDNN_TENSOR_OP_MATH &&
               perf[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (perf[i].status == CUDNN_STATUS_SUCCESS && gemm_family && fma &&
        perf[i].memory <= ctx->scratch_budget)
      pick = i;
  }
  if (ok && pick >= 0) {
    size_t ws_bytes = 0;
    void *ws = NULL;
    cudnnConvolutionFwdAlgo_t algo = perf[pick].algo;
    ok = c->cudnnGetConvolutionForwardWorkspaceSize (c->handle, xd, wd, cd, yd, algo, &ws_bytes) ==
         CUDNN_STATUS_SUCCESS;
    if (ok && ws_bytes > 0)
      rc = kin_cuda_workspace (ctx, ws_bytes, &ws);
    if (ok && rc == KIN_CUDA_OK) {
      const float one = 1.0f, zero = 0.0f;
      cudnnStatus_t s = c->cudnnConvolutionForward (c->handle, &one, xd, x, wd, w, cd, algo, ws,
                                                    ws_bytes, &zero, yd, y);
      *declined = s != CUDNN_STATUS_SUCCESS;
    }
  }
  if (cd)
    c->cudnnDestroyConvolutionDescriptor (cd);
  if (wd)
    c->cudnnDestroyFilterDescriptor (wd);
  if (yd)
    c->cudnnDestroyTensorDescriptor (yd);
  if (xd)
    c->cudnnDestroyTensorDescriptor (xd);
  if (rc != KIN_CUDA_OK)
    *declined = false;
  return rc;
}

static bool
cudnn_applies (KinCudaCtx *ctx, const KinCudaConv2d *d, int oh, int ow)
{
  const int64_t lim = INT32_MAX;
  return ctx->cudnn != NULL && ctx->opt_cudnn && d->pad_t == d->pad_b && d->pad_l == d->pad_r &&
         (int64_t) d->n * d->cin * d->h * d->w < lim && (int64_t) d->n * d->cout * oh * ow < lim &&
         (int64_t) d->cout * d->cin * d->kh * d->kw < lim;
}

#else  // no cuDNN headers at build time

struct KinCudaCudnn {
  int unused;
};

void kin_cuda_cudnn_open (KinCudaCtx *ctx) { ctx->cudnn = NULL; }
void kin_cuda_cudnn_close (KinCudaCtx *ctx) { ctx->cudnn = NULL; }

const char *
kin_cuda_cudnn_describe (KinCudaCtx *ctx)
{
  return "built without cuDNN (im2col + cuBLAS convolutions)";
}

static int
conv_cudnn (KinCudaCtx *ctx, float *y, const float *x, const float *w, const KinCudaConv2d *d,
            int oh, int ow, bool *declined)
{
  *declined = true;
  return KIN_CUDA_OK;
}

static bool
cudnn_applies (KinCudaCtx *ctx, const KinCudaConv2d *d, int oh, int ow)
{
  return false;
}

#endif

// --- entry ---

int
kin_cuda_conv2d (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *bias,
                 const KinCudaConv2d *d)
{
  if (d->stride < 1 || d->kh < 1 || d->kw < 1 || d->pad_t < 0 || d->pad_b < 0 || d->pad_l < 0 ||
      d->pad_r < 0 || d->h + d->pad_t + d->pad_b < d->kh || d->w + d->pad_l + d->pad_r < d->kw)
    return BAD_INPUT ("conv2d: impossible geometry");
  const int oh = (d->h + d->pad_t + d->pad_b - d->kh) / d->stride + 1;
  const int ow = (d->w + d->pad_l + d->pad_r - d->kw) / d->stride + 1;
  if (d->n <= 0 || d->cout <= 0)
    return KIN_CUDA_OK;
  if (d->cin <= 0) {  // an empty sum: bias (or zero)
    CUDA_TRY (cudaMemsetAsync (y, 0, (size_t) d->n * d->cout * oh * ow * sizeof (float), ctx->stream));
  } else {
    bool declined = true;
    int rc = KIN_CUDA_OK;
    // patch embeddings (stride = kernel, no padding: im2col is a reshuffle, the GEMM small) go
    // to cuBLAS: on an H100, cuDNN's pick (FMA math) took 43 ms for the STDiT's 2×2 patches of
    // 32 latent frames (1.2 GFLOP)
    const bool patchify = d->stride > 1 && d->stride == d->kh && d->kh == d->kw && d->pad_t == 0 &&
                          d->pad_b == 0 && d->pad_l == 0 && d->pad_r == 0;
    if (!patchify && cudnn_applies (ctx, d, oh, ow))
      rc = conv_cudnn (ctx, y, x, w, d, oh, ow, &declined);
    if (rc == KIN_CUDA_OK && declined)
      rc = conv_im2col (ctx, y, x, w, d, oh, ow);
    if (rc != KIN_CUDA_OK)
      return rc;
  }
  if (bias != NULL)
    return kin_cuda_add_channel_bias (ctx, y, bias, d->n, d->cout, (int64_t) oh * ow);
  return KIN_CUDA_OK;
}
