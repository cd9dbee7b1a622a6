// Emulated cuBLASLt (see inc/cublasLt.h): column-major D = alpha·op(A)·op(B) + beta·C (+ bias per
// row of D), C and D the same matrix.
#include "cublasLt.h"

struct EmuLt { int unused; };
struct EmuLtDesc { cublasComputeType_t comp; int ta = CUBLAS_OP_N, tb = CUBLAS_OP_N, epi = CUBLASLT_EPILOGUE_DEFAULT; const void *bias = nullptr; };
struct EmuLtLayout { cudaDataType_t t; uint64_t rows, cols; int64_t ld; };
struct EmuLtPref { size_t ws = 0; };



cublasStatus_t cublasLtCreate (cublasLtHandle_t *h) { *h = new EmuLt; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtDestroy (cublasLtHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescCreate (cublasLtMatmulDesc_t *d, cublasComputeType_t comp, cudaDataType_t scale)
{
  if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new EmuLtDesc;
  (*d)->comp = comp;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy (cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescSetAttribute (cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                               const void *buf, size_t size)
{
  switch (a) {
  case CUBLASLT_MATMUL_DESC_TRANSA: if (size != 4) return CUBLAS_STATUS_INVALID_VALUE; d->ta = *(const int32_t *) buf; break;
  case CUBLASLT_MATMUL_DESC_TRANSB: if (size != 4) return CUBLAS_STATUS_INVALID_VALUE; d->tb = *(const int32_t *) buf; break;
  case CUBLASLT_MATMUL_DESC_EPILOGUE: if (size != 4) return CUBLAS_STATUS_INVALID_VALUE; d->epi = *(const uint32_t *) buf; break;
  case CUBLASLT_MATMUL_DESC_BIAS_POINTER: if (size != sizeof (void *)) return CUBLAS_STATUS_INVALID_VALUE; d->bias = *(const void *const *) buf; break;
  default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate (cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows, uint64_t cols,
                                           int64_t ld)
{
  if (ld < (int64_t) rows) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new EmuLtLayout { t, rows, cols, ld };
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy (cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceCreate (cublasLtMatmulPreference_t *p) { *p = new EmuLtPref; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceDestroy (cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute (cublasLtMatmulPreference_t p,
                                                     cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                     size_t size)
{
  if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || size != 8) return CUBLAS_STATUS_INVALID_VALUE;
  p->ws = *(const uint64_t *) buf;
  return CUBLAS_STATUS_SUCCESS;
}

static bool
shapes (cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
        cublasLtMatrixLayout_t dd, int *m, int *n, int *k)
{
  uint64_t am = d->ta == CUBLAS_OP_N ? a->rows : a->cols, ak = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
  uint64_t bk = d->tb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
  if (ak != bk || c->rows != am || c->cols != bn || dd->rows != am || dd->cols != bn || c->ld != dd->ld ||
      c->t != CUDA_R_32F || dd->t != CUDA_R_32F || a->t != b->t || d->comp != CUBLAS_COMPUTE_32F)
    return false;
  *m = (int) am, *n = (int) bn, *k = (int) ak;
  return true;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic (cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                               cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                               cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t, int want,
                                               cublasLtMatmulHeuristicResult_t *res, int *got)
{
  int m, n, k;
  *got = 0;
  if (want < 1 || !shapes (d, a, b, c, dd, &m, &n, &k)) return CUBLAS_STATUS_NOT_SUPPORTED;
  memset (res, 0, sizeof *res);
  res->algo.data[0] = 0x4c74;  // "Lt"
  res->state = CUBLAS_STATUS_SUCCESS;
  *got = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul (cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                               cublasLtMatrixLayout_t ad, const void *B, cublasLtMatrixLayout_t bd, const void *beta,
                               const void *C, cublasLtMatrixLayout_t cd, void *D, cublasLtMatrixLayout_t dd,
                               const cublasLtMatmulAlgo_t *algo, void *, size_t, cudaStream_t s)
{
  int m, n, k;
  if (!shapes (d, ad, bd, cd, dd, &m, &n, &k) || C != D || algo == nullptr || algo->data[0] != 0x4c74)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (d->epi != CUBLASLT_EPILOGUE_DEFAULT && d->epi != CUBLASLT_EPILOGUE_BIAS) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d->epi == CUBLASLT_EPILOGUE_BIAS && d->bias == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (getenv ("KIN_CUDA_EMU_TRACE_LT")) fprintf (stderr, "emu: cublasLtMatmul %dx%dx%d epilogue %d\n", m, n, k, d->epi);
  // the product through the emulated cuBLAS (same stream: the module sets it on its handle)
  static cublasHandle_t h;
  if (h == nullptr) cublasCreate (&h);
  cublasSetStream (h, s);
  cublasStatus_t st = cublasGemmEx (h, (cublasOperation_t) d->ta, (cublasOperation_t) d->tb, m, n, k, alpha, A, ad->t,
                                    (int) ad->ld, B, bd->t, (int) bd->ld, beta, D, CUDA_R_32F, (int) dd->ld,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS || d->epi != CUBLASLT_EPILOGUE_BIAS) return st;
  const float *bias = (const float *) d->bias;
  float *out = (float *) D;
  int64_t ld = dd->ld;
  emu_launch (1, 32, 0, s, [=] () {
    if (threadIdx.x != 0) return;
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++)
        out[i + j * ld] += bias[i];
  });
  return CUBLAS_STATUS_SUCCESS;
}
