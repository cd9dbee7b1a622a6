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
#include <stdlib.h>
#include <string.h>

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

// --- cuBLASLt: linear with the bias in the epilogue ---
//
// With half weights (the model's path) and a bias, the bias rides in the GEMM's epilogue
// instead of being written into y first and accumulated onto (beta = 1): one pass over y less.
// A plan (descriptor, layouts, the heuristic's algorithm) is made once per shape and cached; a
// shape cuBLASLt has no algorithm for, or a pointer below the 256-byte alignment its heuristic
// assumes, takes the plain cuBLAS route.

#define LT_PLANS 48

struct KinCudaLtPlan {
  int64_t rows, in, out;
  int dt;
  bool ok;  // false: no algorithm (plain cuBLAS for this shape)
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
};

void
kin_cuda_lt_open (KinCudaCtx *ctx)
{
  ctx->cublaslt = NULL;
  ctx->lt_next = 0;
  ctx->lt_plans = (KinCudaLtPlan *) calloc (LT_PLANS, sizeof (KinCudaLtPlan));
  if (ctx->lt_plans == NULL)
    return;
  if (cublasLtCreate (&ctx->cublaslt) != CUBLAS_STATUS_SUCCESS) {
    ctx->cublaslt = NULL;
    free (ctx->lt_plans);
    ctx->lt_plans = NULL;
  }
}

static void
lt_plan_clear (KinCudaLtPlan *p)
{
  if (p->desc)
    cublasLtMatmulDescDestroy (p->desc);
  if (p->a)
    cublasLtMatrixLayoutDestroy (p->a);
  if (p->b)
    cublasLtMatrixLayoutDestroy (p->b);
  if (p->c)
    cublasLtMatrixLayoutDestroy (p->c);
  memset (p, 0, sizeof *p);
}

void
kin_cuda_lt_close (KinCudaCtx *ctx)
{
  if (ctx->lt_plans != NULL)
    for (int i = 0; i < LT_PLANS; i++)
      lt_plan_clear (&ctx->lt_plans[i]);
  free (ctx->lt_plans);
  ctx->lt_plans = NULL;
  if (ctx->cublaslt != NULL)
    cublasLtDestroy (ctx->cublaslt);
  ctx->cublaslt = NULL;
}

// The plan of y[rows, out] = x[rows, in]·w[out, in]ᵀ + bias, x and w of type @dt; @bias only
// tells the heuristic the bias pointer's alignment.
static KinCudaLtPlan *
lt_plan (KinCudaCtx *ctx, int64_t rows, int64_t in, int64_t out, int dt, const float *bias)
{
  for (int i = 0; i < LT_PLANS; i++) {
    KinCudaLtPlan *p = &ctx->lt_plans[i];
    if (p->rows == rows && p->in == in && p->out == out && p->dt == dt)
      return p;
  }
  KinCudaLtPlan *p = &ctx->lt_plans[ctx->lt_next];
  ctx->lt_next = (ctx->lt_next + 1) % LT_PLANS;
  lt_plan_clear (p);
  p->rows = rows, p->in = in, p->out = out, p->dt = dt;
  const cudaDataType_t t = cuda_type (dt);
  const int32_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  const uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
  // column-major, as in the plain route: yᵀ[out, rows] = (w as [in, out])ᵀ · (x as [in, rows])
  bool good =
      cublasLtMatmulDescCreate (&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute (p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute (p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute (p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulDescSetAttribute (p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate (&p->a, t, (uint64_t) in, (uint64_t) out, in) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate (&p->b, t, (uint64_t) in, (uint64_t) rows, in) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate (&p->c, CUDA_R_32F, (uint64_t) out, (uint64_t) rows, out) == CUBLAS_STATUS_SUCCESS;
  cublasLtMatmulPreference_t pref = NULL;
  const uint64_t ws = KIN_CUDA_CUBLAS_WS;
  good = good && cublasLtMatmulPreferenceCreate (&pref) == CUBLAS_STATUS_SUCCESS &&
         cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) ==
             CUBLAS_STATUS_SUCCESS;
  cublasLtMatmulHeuristicResult_t res;
  int got = 0;
  memset (&res, 0, sizeof res);
  good = good && cublasLtMatmulAlgoGetHeuristic (ctx->cublaslt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res,
                                                 &got) == CUBLAS_STATUS_SUCCESS &&
         got > 0 && res.state == CUBLAS_STATUS_SUCCESS && res.workspaceSize <= ws;
  if (pref)
    cublasLtMatmulPreferenceDestroy (pref);
  p->ok = good;
  if (good)
    p->algo = res.algo;
  return p;
}

static bool
aligned256 (const void *p)
{
  return ((uintptr_t) p & 255) == 0;
}

// y = x·wᵀ + bias through cuBLASLt; *done false (nothing queued) when the plain route must do it.
static int
linear_lt (KinCudaCtx *ctx, float *y, const void *x, const void *w, int dt, const float *bias,
           int64_t rows, int64_t in, int64_t out, bool *done)
{
  *done = false;
  if (ctx->cublaslt == NULL || !aligned256 (y) || !aligned256 (x) || !aligned256 (w) || !aligned256 (bias))
    return KIN_CUDA_OK;
  KinCudaLtPlan *p = lt_plan (ctx, rows, in, out, dt, bias);
  if (!p->ok)
    return KIN_CUDA_OK;
  if (cublasLtMatmulDescSetAttribute (p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) !=
      CUBLAS_STATUS_SUCCESS)
    return KIN_CUDA_OK;
  const float one = 1.0f, zero = 0.0f;
  cublasStatus_t s = cublasLtMatmul (ctx->cublaslt, p->desc, &one, w, p->a, x, p->b, &zero, y, p->c, y, p->c,
                                     &p->algo, ctx->cublas_ws, KIN_CUDA_CUBLAS_WS, ctx->stream);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) {
    p->ok = false;  // refused before anything was queued: the plain route from now on
    return KIN_CUDA_OK;
  }
  if (s != CUBLAS_STATUS_SUCCESS)
    return kin_cuda_fail_cublas (ctx, s, "cublasLtMatmul", __FILE__, __LINE__);
  *done = true;
  return KIN_CUDA_OK;
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
  if (in == 0) {  // an empty sum: the bias, or zeros
    if (bias != NULL)
      return kin_cuda_fill_rows (ctx, y, bias, rows, out);
    CUDA_TRY (cudaMemsetAsync (y, 0, (size_t) rows * out * sizeof (float), ctx->stream));
    return KIN_CUDA_OK;
  }
  const void *wp = w, *xp = x;
  cudaDataType_t t = CUDA_R_32F;
  bool half = false;
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
      half = true;
    }
  }
  if (half && bias != NULL) {
    bool done = false;
    int rc = linear_lt (ctx, y, xp, wp, w_dtype, bias, rows, in, out, &done);
    if (rc != KIN_CUDA_OK || done)
      return rc;
  }
  // y = bias (then beta = 1 accumulates the product onto it), as cpu_linear does
  float beta = 0.0f;
  if (bias != NULL) {
    int rc = kin_cuda_fill_rows (ctx, y, bias, rows, out);
    if (rc != KIN_CUDA_OK)
      return rc;
    beta = 1.0f;
  }
  const float one = 1.0f;
  // column-major: yᵀ[out, rows] = (w viewed as [in, out])ᵀ · (x viewed as [in, rows])
  CUBLAS_TRY (cublasGemmEx (ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int) out, (int) rows, (int) in,
                            &one, wp, t, (int) in, xp, t, (int) in, &beta, y, CUDA_R_32F, (int) out,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return KIN_CUDA_OK;
}
