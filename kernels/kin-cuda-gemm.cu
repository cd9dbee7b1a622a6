// kin-cuda-gemm.cu — linear and batched matmul on cuBLAS (CPU twins: cpu_linear, cpu_matmul).
//
// cuBLAS is column-major; a row-major matrix M[r, c] is the column-major matrix Mᵀ.  So the
// row-major product C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS's
// first operand is B, its second is A, and m/n swap.  Every call uses CUBLAS_COMPUTE_32F with the
// default math mode, which excludes TF32: f32 inputs give f32-exact products, F16/BF16 inputs run
// on tensor cores with f32 accumulation.

#include "kin-cuda-common.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

static cudaDataType_t
cuda_type (int dt)
{
  return dt == KIN_CUDA_DT_BF16 ? CUDA_R_16BF : dt == KIN_CUDA_DT_F16 ? CUDA_R_16F : CUDA_R_32F;
}

// --- conversions ---

__global__ void
k_f32_to_bf16 (__nv_bfloat16 *dst, const float *src, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
       i += (int64_t) gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn (src[i]);
}

__global__ void
k_f32_to_f16 (__half *dst, const float *src, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
       i += (int64_t) gridDim.x * blockDim.x)
    dst[i] = __float2half_rn (src[i]);
}

__global__ void
k_bf16_to_f32 (float *dst, const __nv_bfloat16 *src, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
       i += (int64_t) gridDim.x * blockDim.x)
    dst[i] = __bfloat162float (src[i]);
}

__global__ void
k_f16_to_f32 (float *dst, const __half *src, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
       i += (int64_t) gridDim.x * blockDim.x)
    dst[i] = __half2float (src[i]);
}

static int
narrow (KinCudaCtx *ctx, void *dst, int dt, const float *src, int64_t n)
{
  if (dt == KIN_CUDA_DT_BF16)
    k_f32_to_bf16<<<kin_grid (n, 256), 256, 0, ctx->stream>>> ((__nv_bfloat16 *) dst, src, n);
  else
    k_f32_to_f16<<<kin_grid (n, 256), 256, 0, ctx->stream>>> ((__half *) dst, src, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

static int
widen (KinCudaCtx *ctx, float *dst, const void *src, int dt, int64_t n)
{
  if (dt == KIN_CUDA_DT_BF16)
    k_bf16_to_f32<<<kin_grid (n, 256), 256, 0, ctx->stream>>> (dst, (const __nv_bfloat16 *) src, n);
  else
    k_f16_to_f32<<<kin_grid (n, 256), 256, 0, ctx->stream>>> (dst, (const __half *) src, n);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// --- row-major GEMM ---

int
kin_cuda_gemm_rm (KinCudaCtx *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                  const float *a, int64_t lda, int64_t stride_a, const float *b, int64_t ldb,
                  int64_t stride_b, float beta, float *c, int64_t ldc, int64_t stride_c, int batch)
{
  if (m == 0 || n == 0 || batch == 0)
    return KIN_CUDA_OK;
  if (!kin_fits_int (lda) || !kin_fits_int (ldb) || !kin_fits_int (ldc))
    return BAD_INPUT ("gemm: leading dimension beyond int range");
  // row-major C[m,n] = op(A)·op(B)  ⇔  column-major C'[n,m] = op'(B')·op'(A')
  cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1)
    CUBLAS_TRY (cublasGemmEx (ctx->cublas, ob, oa, n, m, k, &alpha, b, CUDA_R_32F, (int) ldb, a,
                              CUDA_R_32F, (int) lda, &beta, c, CUDA_R_32F, (int) ldc,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  else
    CUBLAS_TRY (cublasGemmStridedBatchedEx (ctx->cublas, ob, oa, n, m, k, &alpha, b, CUDA_R_32F,
                                            (int) ldb, stride_b, a, CUDA_R_32F, (int) lda, stride_a,
                                            &beta, c, CUDA_R_32F, (int) ldc, stride_c, batch,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return KIN_CUDA_OK;
}

int
kin_cuda_matmul (KinCudaCtx *ctx, float *c, const float *a, const float *b, int batch, int m, int n,
                 int k, int trans_a, int trans_b, float alpha, int64_t stride_a, int64_t stride_b,
                 int64_t stride_c)
{
  if (batch <= 0 || m <= 0 || n <= 0)
    return KIN_CUDA_OK;
  if (k <= 0) {  // an empty sum: c = 0 (cuBLAS may leave c untouched)
    for (int i = 0; i < batch; i++)
      CUDA_TRY (cudaMemsetAsync (c + i * stride_c, 0, (size_t) m * n * sizeof (float), ctx->stream));
    return KIN_CUDA_OK;
  }
  // row-major leading dimensions, exactly as cpu_matmul passes them to cblas_sgemm
  int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
  return kin_cuda_gemm_rm (ctx, trans_a != 0, trans_b != 0, m, n, k, alpha, a, lda, stride_a, b, ldb,
                           stride_b, 0.0f, c, n, stride_c, batch);
}

// --- linear ---

int
kin_cuda_linear (KinCudaCtx *ctx, float *y, const float *x, const void *w, int w_dtype,
                 const float *bias, int64_t rows, int64_t in, int64_t out)
{
  if (rows <= 0 || out <= 0)
    return KIN_CUDA_OK;
  if (!kin_fits_int (rows) || !kin_fits_int (in) || !kin_fits_int (out))
    return BAD_INPUT ("linear: %lld × %lld × %lld beyond int range", (long long) rows,
                      (long long) in, (long long) out);
  if (w_dtype != KIN_CUDA_DT_F32 && w_dtype != KIN_CUDA_DT_F16 && w_dtype != KIN_CUDA_DT_BF16)
    return BAD_INPUT ("linear: weight dtype %d unsupported", w_dtype);
  // y = bias (then beta = 1 accumulates the product onto it), as cpu_linear does
  float beta = 0.0f;
  if (bias != NULL) {
    int rc = kin_cuda_fill_rows (ctx, y, bias, rows, out);
    if (rc != KIN_CUDA_OK)
      return rc;
    beta = 1.0f;
  }
  if (in == 0) {
    if (bias == NULL)
      CUDA_TRY (cudaMemsetAsync (y, 0, (size_t) rows * out * sizeof (float), ctx->stream));
    return KIN_CUDA_OK;
  }
  const float one = 1.0f;
  const void *wp = w, *xp = x;
  cudaDataType_t t = CUDA_R_32F;
  if (w_dtype != KIN_CUDA_DT_F32) {
    void *ws = NULL;
    if (ctx->opt_exact_half) {
      // widen the weights: the CPU's recipe, f32 x and f32 products
      int rc = kin_cuda_workspace (ctx, (size_t) in * out * sizeof (float), &ws);
      if (rc == KIN_CUDA_OK)
        rc = widen (ctx, (float *) ws, w, w_dtype, in * out);
      if (rc != KIN_CUDA_OK)
        return rc;
      wp = ws;
    } else {
      // round x to the weight dtype: tensor cores, f32 accumulation
      int rc = kin_cuda_workspace (ctx, (size_t) rows * in * 2, &ws);
      if (rc == KIN_CUDA_OK)
        rc = narrow (ctx, ws, w_dtype, x, rows * in);
      if (rc != KIN_CUDA_OK)
        return rc;
      xp = ws;
      t = cuda_type (w_dtype);
    }
  }
  // column-major: yᵀ[out, rows] = (w viewed as [in, out])ᵀ · (x viewed as [in, rows])
  CUBLAS_TRY (cublasGemmEx (ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int) out, (int) rows, (int) in,
                            &one, wp, t, (int) in, xp, t, (int) in, &beta, y, CUDA_R_32F, (int) out,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return KIN_CUDA_OK;
}
