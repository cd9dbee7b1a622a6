// kin-cuda-elementwise.cu — the element-wise ops (CPU twins in kin-backend-cpu.c: cpu_modulate,
// cpu_gate_add, cpu_gelu_tanh, cpu_silu, cpu_add, cpu_mul, cpu_scale, cpu_upsample_nearest2x,
// cpu_rope, cpu_permute, cpu_copy).  One thread per output element in grid-stride loops with
// 64-bit indices, except where rows are the unit (modulate, gate_add, permutes that move whole
// runs); the formulas are written exactly as in the CPU twin.

#include "kin-cuda-common.h"

#define THREADS 256
#define GRID_LOOP(i, n)                                                                          \
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < (n);                     \
       i += (int64_t) gridDim.x * blockDim.x)

// --- modulate, gate_add ---
//
// One block per row (grid-stride over groups·rows rows), threads along the row: the group is
// found once per row, not per element (64-bit divisions per element made these two ~3× slower
// than the memory traffic on an H100).

__global__ void
k_modulate (float *y, const float *x, const float *shift, const float *scale, int64_t sstride,
            int64_t rows, int64_t dim, int64_t nrows)
{
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    const int64_t g = r / rows;
    const float *sh = shift + g * sstride, *sc = scale + g * sstride;
    const float *xr = x + r * dim;
    float *yr = y + r * dim;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
      yr[i] = xr[i] * (1.0f + sc[i]) + sh[i];
  }
}

static unsigned
row_grid (int64_t nrows)
{
  return (unsigned) (nrows < (1 << 20) ? nrows : (1 << 20));
}

int
kin_cuda_modulate (KinCudaCtx *ctx, float *y, const float *x, const float *shift, const float *scale,
                   int64_t sstride, int64_t groups, int64_t rows, int64_t dim)
{
  int64_t nrows = groups * rows;
  if (nrows <= 0 || dim <= 0)
    return KIN_CUDA_OK;
  k_modulate<<<row_grid (nrows), THREADS, 0, ctx->stream>>> (y, x, shift, scale, sstride, rows, dim, nrows);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

__global__ void
k_gate_add (float *x, const float *y, const float *gate, int64_t gstride, int64_t rows, int64_t dim,
            int64_t nrows)
{
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    float *xr = x + r * dim;
    const float *yr = y + r * dim;
    if (gate != NULL) {
      const float *gr = gate + (r / rows) * gstride;
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        xr[i] += gr[i] * yr[i];
    } else {
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        xr[i] += yr[i];
    }
  }
}

int
kin_cuda_gate_add (KinCudaCtx *ctx, float *x, const float *y, const float *gate, int64_t gstride,
                   int64_t groups, int64_t rows, int64_t dim)
{
  int64_t nrows = groups * rows;
  if (nrows <= 0 || dim <= 0)
    return KIN_CUDA_OK;
  k_gate_add<<<row_grid (nrows), THREADS, 0, ctx->stream>>> (x, y, gate, gstride, rows, dim, nrows);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- activations, scale ---

__global__ void
k_gelu_tanh (float *y, const float *x, int64_t n)
{
  const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
  GRID_LOOP (i, n) {
    float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanhf (k0 * (v + 0.044715f * v * v * v)));
  }
}

int
kin_cuda_gelu_tanh (KinCudaCtx *ctx, float *y, const float *x, int64_t n)
{
  if (n <= 0)
    return KIN_CUDA_OK;
  k_gelu_tanh<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, x, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

__global__ void
k_silu (float *y, const float *x, int64_t n)
{
  GRID_LOOP (i, n) {
    float v = x[i];
    y[i] = v / (1.0f + expf (-v));
  }
}

int
kin_cuda_silu (KinCudaCtx *ctx, float *y, const float *x, int64_t n)
{
  if (n <= 0)
    return KIN_CUDA_OK;
  k_silu<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, x, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

__global__ void
k_scale (float *y, const float *x, int64_t n, float alpha, float beta)
{
  GRID_LOOP (i, n)
    y[i] = alpha * x[i] + beta;
}

int
kin_cuda_scale (KinCudaCtx *ctx, float *y, const float *x, int64_t n, float alpha, float beta)
{
  if (n <= 0)
    return KIN_CUDA_OK;
  k_scale<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, x, n, alpha, beta);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- broadcast add / mul ---

template <bool MUL>
__global__ void
k_binary (float *y, const float *a, const float *b, int64_t n, int64_t nb)
{
  GRID_LOOP (i, n) {
    float bv = b[nb == n ? i : i % nb];
    y[i] = MUL ? a[i] * bv : a[i] + bv;
  }
}

int
kin_cuda_add (KinCudaCtx *ctx, float *y, const float *a, const float *b, int64_t n, int64_t nb)
{
  if (n <= 0 || nb <= 0)
    return KIN_CUDA_OK;
  k_binary<false><<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, a, b, n, nb);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

int
kin_cuda_mul (KinCudaCtx *ctx, float *y, const float *a, const float *b, int64_t n, int64_t nb)
{
  if (n <= 0 || nb <= 0)
    return KIN_CUDA_OK;
  k_binary<true><<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, a, b, n, nb);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- bias helpers used by linear and conv2d ---

__global__ void
k_fill_rows (float *y, const float *bias, int64_t row_len, int64_t n)
{
  GRID_LOOP (i, n)
    y[i] = bias[i % row_len];
}

int
kin_cuda_fill_rows (KinCudaCtx *ctx, float *y, const float *bias, int64_t rows, int64_t row_len)
{
  int64_t n = rows * row_len;
  if (n <= 0)
    return KIN_CUDA_OK;
  k_fill_rows<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, bias, row_len, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

__global__ void
k_add_channel_bias (float *y, const float *bias, int64_t channels, int64_t plane, int64_t n)
{
  GRID_LOOP (i, n)
    y[i] += bias[(i / plane) % channels];
}

int
kin_cuda_add_channel_bias (KinCudaCtx *ctx, float *y, const float *bias, int64_t images,
                           int64_t channels, int64_t plane)
{
  int64_t n = images * channels * plane;
  if (n <= 0)
    return KIN_CUDA_OK;
  k_add_channel_bias<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, bias, channels, plane, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- upsample ---

__global__ void
k_upsample2x (float *y, const float *x, int64_t h, int64_t w, int64_t n)
{
  GRID_LOOP (idx, n) {
    // idx = (p*2h + oy)*2w + ox
    int64_t ox = idx % (2 * w), t = idx / (2 * w);
    int64_t oy = t % (2 * h), p = t / (2 * h);
    y[idx] = x[(p * h + oy / 2) * w + ox / 2];
  }
}

int
kin_cuda_upsample_nearest2x (KinCudaCtx *ctx, float *y, const float *x, int64_t nc, int64_t h,
                             int64_t w)
{
  int64_t n = nc * h * w * 4;
  if (n <= 0)
    return KIN_CUDA_OK;
  k_upsample2x<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, x, h, w, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- rope ---

__global__ void
k_rope (float *x, int64_t stride, int64_t len, int heads, int head_dim, const float *cs,
        const float *sn, int64_t n)
{
  int64_t half = head_dim / 2;
  GRID_LOOP (idx, n) {
    // idx = ((b*len + l)*heads + h)*half + i
    int64_t i = idx % half, t = idx / half;
    int64_t h = t % heads, bl = t / heads;
    int64_t l = bl % len;
    float *v = x + bl * stride + h * head_dim;
    float c = cs[l * half + i], s = sn[l * half + i];
    float a = v[2 * i], bb = v[2 * i + 1];
    v[2 * i] = a * c - bb * s;
    v[2 * i + 1] = bb * c + a * s;
  }
}

int
kin_cuda_rope (KinCudaCtx *ctx, float *x, int64_t stride, int64_t batch, int64_t len, int heads,
               int head_dim, const float *cos, const float *sin)
{
  int64_t n = batch * len * heads * (int64_t) (head_dim / 2);
  if (n <= 0)
    return KIN_CUDA_OK;
  k_rope<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (x, stride, len, heads, head_dim, cos,
                                                              sin, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- permute ---

struct PermuteArgs {
  int ndim;
  int64_t ydims[KIN_CUDA_MAX_DIMS];
  int64_t src_stride[KIN_CUDA_MAX_DIMS];  // step in x when y's index i advances
};

__global__ void
k_permute (float *y, const float *x, PermuteArgs p, int64_t n)
{
  GRID_LOOP (o, n) {
    int64_t rem = o, src = 0;
    for (int i = p.ndim - 1; i >= 0; i--) {
      int64_t idx = rem % p.ydims[i];
      rem /= p.ydims[i];
      src += idx * p.src_stride[i];
    }
    y[o] = x[src];
  }
}

// Permutations that keep the last dimension in place (the model's: [B, T, S, C] ↔ [B, S, T, C],
// the qkv split) move whole runs of @run contiguous elements: one block per run (grid-stride),
// the run's source found once, its elements copied by consecutive threads (coalesced), as float4
// when the run and both pointers allow, two loads in flight per thread.  ydims and src_stride
// describe the runs' index space (ndim dims, the last one dropped).
template <typename T>
__global__ void
k_permute_runs (T *__restrict__ y, const T *__restrict__ x, PermuteArgs p, int64_t runs, int64_t run)
{
  for (int64_t r = blockIdx.x; r < runs; r += gridDim.x) {
    int64_t rem = r, src = 0;
    for (int i = p.ndim - 1; i >= 0; i--) {
      int64_t idx = rem % p.ydims[i];
      rem /= p.ydims[i];
      src += idx * p.src_stride[i];
    }
    const T *xs = x + src;
    T *yd = y + r * run;
    const int64_t step = blockDim.x;
    int64_t j = threadIdx.x;
    for (; j + step < run; j += 2 * step) {
      T a = xs[j], b = xs[j + step];
      yd[j] = a;
      yd[j + step] = b;
    }
    if (j < run)
      yd[j] = xs[j];
  }
}

int
kin_cuda_permute (KinCudaCtx *ctx, float *y, const float *x, int ndim, const int64_t *dims,
                  const int *perm)
{
  if (ndim < 1 || ndim > KIN_CUDA_MAX_DIMS)
    return BAD_INPUT ("permute: %d dims", ndim);
  for (int i = 0; i < ndim; i++)
    if (perm[i] < 0 || perm[i] >= ndim)
      return BAD_INPUT ("permute: invalid permutation");
  // runs: the trailing dimensions that stay trailing and in order, merged
  int keep = 0;  // how many trailing dims of y are x's trailing dims in place
  while (keep < ndim && perm[ndim - 1 - keep] == ndim - 1 - keep)
    keep++;
  if (keep > 0 && keep < ndim) {
    int64_t run = 1, n = 1;
    for (int i = ndim - keep; i < ndim; i++)
      run *= dims[i];
    for (int i = 0; i < ndim; i++)
      n *= dims[i];
    if (n <= 0)
      return KIN_CUDA_OK;
    if (run >= 32) {
      const int nd = ndim - keep;  // the runs' index space: y's leading dims
      PermuteArgs p;
      p.ndim = nd;
      int64_t xstride[KIN_CUDA_MAX_DIMS];  // in elements of x, over x's leading dims
      xstride[nd - 1] = run;
      for (int i = nd - 2; i >= 0; i--)
        xstride[i] = xstride[i + 1] * dims[i + 1];
      for (int i = 0; i < nd; i++) {
        p.ydims[i] = dims[perm[i]];
        p.src_stride[i] = xstride[perm[i]];
      }
      const int64_t runs = n / run;
      const unsigned grid = (unsigned) (runs < (1 << 20) ? runs : (1 << 20));
      // float4 when every run starts 16-byte aligned (source offsets are multiples of run)
      const bool v4 = run % 4 == 0 && ((uintptr_t) x & 15) == 0 && ((uintptr_t) y & 15) == 0;
      const int64_t elems = v4 ? run / 4 : run;  // per run, in units of the copy
      const int threads = elems >= 256 ? 128 : elems >= 64 ? 64 : 32;
      if (v4) {
        PermuteArgs p4 = p;
        for (int i = 0; i < nd; i++)
          p4.src_stride[i] /= 4;
        k_permute_runs<float4><<<grid, threads, 0, ctx->stream>>> ((float4 *) y, (const float4 *) x, p4,
                                                                   runs, elems);
      } else {
        k_permute_runs<float><<<grid, threads, 0, ctx->stream>>> (y, x, p, runs, run);
      }
      LAUNCH_CHECK ();
      return KIN_CUDA_OK;
    }
  }
  PermuteArgs p;
  int64_t xstride[KIN_CUDA_MAX_DIMS];
  int64_t n = 1;
  p.ndim = ndim;
  xstride[ndim - 1] = 1;
  for (int i = ndim - 2; i >= 0; i--)
    xstride[i] = xstride[i + 1] * dims[i + 1];
  for (int i = 0; i < ndim; i++) {
    if (perm[i] < 0 || perm[i] >= ndim)
      return BAD_INPUT ("permute: invalid permutation");
    p.ydims[i] = dims[perm[i]];
    p.src_stride[i] = xstride[perm[i]];
    n *= dims[i];
  }
  if (n <= 0)
    return KIN_CUDA_OK;
  k_permute<<<kin_grid (n, THREADS), THREADS, 0, ctx->stream>>> (y, x, p, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- copy ---

int
kin_cuda_copy (KinCudaCtx *ctx, float *y, const float *x, int64_t n)
{
  if (n <= 0 || y == x)
    return KIN_CUDA_OK;
  size_t bytes = (size_t) n * sizeof (float);
  bool overlap = y < x + n && x < y + n;
  if (!overlap) {
    CUDA_TRY (cudaMemcpyAsync (y, x, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
    return KIN_CUDA_OK;
  }
  // memmove semantics through the workspace (cudaMemcpy does not allow overlap)
  void *tmp = NULL;
  int rc = kin_cuda_workspace (ctx, bytes, &tmp);
  if (rc != KIN_CUDA_OK)
    return rc;
  CUDA_TRY (cudaMemcpyAsync (tmp, x, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
  CUDA_TRY (cudaMemcpyAsync (y, tmp, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
  return KIN_CUDA_OK;
}
