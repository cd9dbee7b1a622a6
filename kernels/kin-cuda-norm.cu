// kin-cuda-norm.cu — row reductions: layer_norm, rms_norm, group_norm (+SiLU), softmax.
// CPU twins: cpu_layer_norm, cpu_rms_norm, cpu_group_norm, cpu_softmax.
//
// One block per row (or per (sample, group)).  Like the CPU, sums accumulate in double and the
// variance is the mean of squared deviations from the mean (two passes, no cancellation); the
// final per-element formula is the CPU's, in float.

#include "kin-cuda-common.h"
#include "kin-cuda-reduce.h"

#include <math.h>

#define NORM_THREADS 256
#define GROUP_THREADS 1024

// --- layer norm ---

__global__ void
k_layer_norm (float *y, const float *x, const float *w, const float *b, int64_t dim, float eps)
{
  __shared__ double red[32];
  const float *xr = x + (int64_t) blockIdx.x * dim;
  float *yr = y + (int64_t) blockIdx.x * dim;
  double s = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    s += xr[i];
  double mean = kin_block_sum (s, red) / (double) dim;
  double v = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    double d = xr[i] - mean;
    v += d * d;
  }
  double var = kin_block_sum (v, red) / (double) dim;
  float inv = (float) (1.0 / sqrt (var + eps));
  float fm = (float) mean;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float o = (xr[i] - fm) * inv;
    if (w)
      o *= w[i];
    if (b)
      o += b[i];
    yr[i] = o;
  }
}

int
kin_cuda_layer_norm (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *b,
                     int64_t rows, int64_t dim, float eps)
{
  if (rows <= 0 || dim <= 0)
    return KIN_CUDA_OK;
  if (!kin_fits_int (rows))
    return BAD_INPUT ("layer_norm: %lld rows", (long long) rows);
  k_layer_norm<<<(unsigned) rows, NORM_THREADS, 0, ctx->stream>>> (y, x, w, b, dim, eps);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- RMS norm ---

__global__ void
k_rms_norm (float *y, const float *x, const float *w, int64_t dim, float eps)
{
  __shared__ double red[32];
  const float *xr = x + (int64_t) blockIdx.x * dim;
  float *yr = y + (int64_t) blockIdx.x * dim;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    ss += (double) xr[i] * xr[i];
  ss = kin_block_sum (ss, red);
  float inv = (float) (1.0 / sqrt (ss / (double) dim + eps));
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = xr[i] * inv;
    yr[i] = w ? w[i] * v : v;
  }
}

// Short rows (the q/k norm: head_dim values per row, rows·heads rows): one warp per row, the
// sum of squares reduced with shuffles (in double, as above).
#define ROW_WARPS 8
#define WARP_ROW_MAX 256

__global__ void __launch_bounds__ (ROW_WARPS * 32)
k_rms_norm_warp (float *y, const float *x, const float *w, int64_t rows, int dim, float eps)
{
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t) blockIdx.x * ROW_WARPS + (threadIdx.x >> 5);
  if (r >= rows)  // the whole warp leaves; no block-wide barrier below
    return;
  const float *xr = x + r * dim;
  float *yr = y + r * dim;
  double ss = 0;
  for (int i = lane; i < dim; i += 32)
    ss += (double) xr[i] * xr[i];
  for (int o = 16; o > 0; o >>= 1)
    ss += __shfl_xor_sync (KIN_FULL_MASK, ss, o);
  float inv = (float) (1.0 / sqrt (ss / (double) dim + eps));
  for (int i = lane; i < dim; i += 32) {
    float v = xr[i] * inv;
    yr[i] = w ? w[i] * v : v;
  }
}

int
kin_cuda_rms_norm (KinCudaCtx *ctx, float *y, const float *x, const float *w, int64_t rows,
                   int64_t dim, float eps)
{
  if (rows <= 0 || dim <= 0)
    return KIN_CUDA_OK;
  if (!kin_fits_int (rows))
    return BAD_INPUT ("rms_norm: %lld rows", (long long) rows);
  if (dim <= WARP_ROW_MAX) {
    unsigned blocks = (unsigned) ((rows + ROW_WARPS - 1) / ROW_WARPS);
    k_rms_norm_warp<<<blocks, ROW_WARPS * 32, 0, ctx->stream>>> (y, x, w, rows, (int) dim, eps);
    LAUNCH_CHECK ();
    return KIN_CUDA_OK;
  }
  k_rms_norm<<<(unsigned) rows, NORM_THREADS, 0, ctx->stream>>> (y, x, w, dim, eps);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- group norm ---

// One block per (sample, group); the group's cg channels are contiguous: cg*hw values.
__global__ void __launch_bounds__ (GROUP_THREADS)
k_group_norm (float *y, const float *x, const float *w, const float *b, int64_t c, int64_t hw,
              int groups, float eps, int silu)
{
  __shared__ double red[32];
  int64_t i = blockIdx.x / groups, g = blockIdx.x % groups;
  int64_t cg = c / groups, m = cg * hw;
  const float *xg = x + (i * c + g * cg) * hw;
  float *yg = y + (i * c + g * cg) * hw;
  double s = 0;
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x)
    s += xg[j];
  double mean = kin_block_sum (s, red) / (double) m;
  double v = 0;
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    double d = xg[j] - mean;
    v += d * d;
  }
  double var = kin_block_sum (v, red) / (double) m;
  float inv = (float) (1.0 / sqrt (var + eps)), fm = (float) mean;
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    int64_t ch = j / hw;
    float wv = w ? w[g * cg + ch] : 1.0f, bv = b ? b[g * cg + ch] : 0.0f;
    float o = (xg[j] - fm) * inv * wv + bv;
    yg[j] = silu ? o / (1.0f + expf (-o)) : o;
  }
}

int
kin_cuda_group_norm (KinCudaCtx *ctx, float *y, const float *x, const float *w, const float *b,
                     int64_t n, int64_t c, int64_t hw, int groups, float eps, int silu)
{
  if (n <= 0 || c <= 0 || hw <= 0)
    return KIN_CUDA_OK;
  if (groups <= 0 || c % groups != 0)
    return BAD_INPUT ("group_norm: %lld channels in %d groups", (long long) c, groups);
  if (!kin_fits_int (n * groups))
    return BAD_INPUT ("group_norm: %lld blocks", (long long) (n * groups));
  k_group_norm<<<(unsigned) (n * groups), GROUP_THREADS, 0, ctx->stream>>> (y, x, w, b, c, hw,
                                                                            groups, eps, silu);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- softmax ---

__global__ void
k_softmax (float *y, const float *x, int64_t dim)
{
  __shared__ double red[32];
  __shared__ float redf[32];
  const float *xr = x + (int64_t) blockIdx.x * dim;
  float *yr = y + (int64_t) blockIdx.x * dim;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    mx = xr[i] > mx ? xr[i] : mx;
  mx = kin_block_max (mx, redf);  // its barriers also order every read of x before the writes below
  if (mx == -INFINITY) {      // fully masked row: zeros rather than NaN, as on the CPU
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
      yr[i] = 0.0f;
    return;
  }
  double sum = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float e = expf (xr[i] - mx);
    yr[i] = e;  // in place is fine: each thread rereads only its own elements
    sum += e;
  }
  float inv = (float) (1.0 / kin_block_sum (sum, red));
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] *= inv;
}

int
kin_cuda_softmax (KinCudaCtx *ctx, float *y, const float *x, int64_t rows, int64_t dim)
{
  if (rows <= 0 || dim <= 0)
    return KIN_CUDA_OK;
  if (!kin_fits_int (rows))
    return BAD_INPUT ("softmax: %lld rows", (long long) rows);
  k_softmax<<<(unsigned) rows, NORM_THREADS, 0, ctx->stream>>> (y, x, dim);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}
