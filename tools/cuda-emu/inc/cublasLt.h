// cuBLASLt, the slice kin-cuda-gemm.cu uses (linear with a bias epilogue), emulated in emu-lt.cc:
// the product goes through the emulated cublasGemmEx, the bias through a one-thread launch, both
// in stream order (and so recorded by a graph capture).
#pragma once
#include "emu.h"

typedef struct EmuLt *cublasLtHandle_t;
typedef struct EmuLtDesc *cublasLtMatmulDesc_t;
typedef struct EmuLtLayout *cublasLtMatrixLayout_t;
typedef struct EmuLtPref *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;
typedef enum {
  CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
} cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1 } cublasLtMatmulPreferenceAttributes_t;

cublasStatus_t cublasLtCreate (cublasLtHandle_t *h);
cublasStatus_t cublasLtDestroy (cublasLtHandle_t h);
cublasStatus_t cublasLtMatmulDescCreate (cublasLtMatmulDesc_t *d, cublasComputeType_t comp, cudaDataType_t scale);
cublasStatus_t cublasLtMatmulDescDestroy (cublasLtMatmulDesc_t d);
cublasStatus_t cublasLtMatmulDescSetAttribute (cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                               const void *buf, size_t size);
cublasStatus_t cublasLtMatrixLayoutCreate (cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows, uint64_t cols,
                                           int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy (cublasLtMatrixLayout_t l);
cublasStatus_t cublasLtMatmulPreferenceCreate (cublasLtMatmulPreference_t *p);
cublasStatus_t cublasLtMatmulPreferenceDestroy (cublasLtMatmulPreference_t p);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute (cublasLtMatmulPreference_t p,
                                                     cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                     size_t size);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic (cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                               cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                               cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t p, int want,
                                               cublasLtMatmulHeuristicResult_t *res, int *got);
cublasStatus_t cublasLtMatmul (cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                               cublasLtMatrixLayout_t ad, const void *B, cublasLtMatrixLayout_t bd, const void *beta,
                               const void *C, cublasLtMatrixLayout_t cd, void *D, cublasLtMatrixLayout_t dd,
                               const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_size, cudaStream_t s);
