// A CPU emulation of the slice of CUDA + cuBLAS that kinora-cuda.so uses — for verifying the
// module's logic without a GPU.  Blocks run one after another; the threads of a block are fibers
// (ucontext) so that __syncthreads and warp shuffles have their real semantics.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <functional>

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas (n)

struct alignas (16) float4 { float x, y, z, w; };
static inline float4 make_float4 (float x, float y, float z, float w) { return { x, y, z, w }; }

typedef enum {
  cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9, cudaErrorInsufficientDriver = 35, cudaErrorNoDevice = 100,
  cudaErrorStreamCaptureUnsupported = 900, cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorIllegalState = 401,
} cudaError_t;
typedef enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 } cudaMemcpyKind;
typedef struct EmuStream *cudaStream_t;
#define cudaStreamNonBlocking 1
struct cudaDeviceProp { char name[256]; int major, minor; size_t totalGlobalMem; };

cudaError_t cudaGetDeviceCount (int *n);
cudaError_t cudaGetDeviceProperties (cudaDeviceProp *p, int dev);
cudaError_t cudaSetDevice (int dev);
cudaError_t cudaStreamCreateWithFlags (cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy (cudaStream_t s);
cudaError_t cudaStreamSynchronize (cudaStream_t s);
cudaError_t cudaMalloc (void **p, size_t n);
template <typename T> cudaError_t cudaMalloc (T **p, size_t n) { return cudaMalloc ((void **) p, n); }
cudaError_t cudaFree (void *p);
cudaError_t cudaMemsetAsync (void *p, int v, size_t n, cudaStream_t s);
cudaError_t cudaMemset2DAsync (void *p, size_t pitch, int v, size_t width, size_t height, cudaStream_t s);
cudaError_t cudaMemcpyAsync (void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s);
cudaError_t cudaMemGetInfo (size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaGetLastError (void);

// graphs: a capture records launches, memsets, device copies and cuBLAS calls; a launch of the
// instantiated graph runs them again in order.  Host transfers, synchronisation and cudaFree
// inside a capture break it (cudaErrorStreamCaptureUnsupported; EndCapture then fails).
typedef enum { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1,
               cudaStreamCaptureModeRelaxed = 2 } cudaStreamCaptureMode;
typedef struct EmuGraph *cudaGraph_t;
typedef struct EmuGraph *cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture (cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture (cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaGraphInstantiate (cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch (cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy (cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy (cudaGraph_t graph);
const char *cudaGetErrorString (cudaError_t e);
const char *cudaGetErrorName (cudaError_t e);

// device intrinsics
void __syncthreads (void);
void emu_warp_barrier (void);
extern double emu_warp_slot[32][32];
template <typename T> T __shfl_sync (unsigned mask, T v, int src)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (mask != 0xffffffffu) { fprintf (stderr, "emu: partial shuffle mask\n"); abort (); }
  emu_warp_slot[warp][lane] = (double) v;
  emu_warp_barrier ();
  T r = (T) emu_warp_slot[warp][src & 31];
  emu_warp_barrier ();
  return r;
}
// a warp barrier (and memory fence among its lanes); every lane of the warp must call it
static inline void __syncwarp (unsigned mask = 0xffffffffu)
{
  if (mask != 0xffffffffu) { fprintf (stderr, "emu: partial __syncwarp mask\n"); abort (); }
  emu_warp_barrier ();
}
template <typename T> T __shfl_xor_sync (unsigned mask, T v, int o)
{
  return __shfl_sync (mask, v, (int) ((threadIdx.x & 31) ^ o));
}

// launches: f runs once per thread of every block
extern void *emu_dyn_smem;
void emu_launch (unsigned grid, unsigned block, size_t smem, cudaStream_t s, std::function<void ()> f);
static inline void emu_launch (unsigned grid, unsigned block, std::function<void ()> f) { emu_launch (grid, block, 0, nullptr, f); }

// half types
struct __nv_bfloat16 { uint16_t x; };
struct __half { uint16_t x; };
__nv_bfloat16 __float2bfloat16_rn (float f);
float __bfloat162float (__nv_bfloat16 h);
__half __float2half_rn (float f);
float __half2float (__half h);

// cuBLAS
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_ALLOC_FAILED = 3,
               CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef struct EmuCublas *cublasHandle_t;
cublasStatus_t cublasCreate (cublasHandle_t *h);
cublasStatus_t cublasDestroy (cublasHandle_t h);
cublasStatus_t cublasSetStream (cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasGetVersion (cublasHandle_t h, int *v);
cublasStatus_t cublasSetWorkspace (cublasHandle_t h, void *workspace, size_t bytes);
const char *cublasGetStatusString (cublasStatus_t s);
cublasStatus_t cublasGemmEx (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                             const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                             cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                             cublasComputeType_t comp, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                           int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                                           int lda, long long sa, const void *B, cudaDataType_t bt, int ldb,
                                           long long sb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                                           long long sc, int batch, cublasComputeType_t comp, cublasGemmAlgo_t algo);
struct cudaFuncAttributes { int maxThreadsPerBlock; };
// Opting in to more than 48 KiB of dynamic shared memory (at most 227 KiB, as on sm_90).  The
// emulator does not tell kernels apart: a launch may use up to the largest value set so far.
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
cudaError_t emu_func_set_attribute (cudaFuncAttribute attr, int value);
template <typename F> cudaError_t cudaFuncSetAttribute (F, cudaFuncAttribute attr, int value) { return emu_func_set_attribute (attr, value); }
template <typename F> cudaError_t cudaFuncGetAttributes (cudaFuncAttributes *a, F) { a->maxThreadsPerBlock = 1024; return cudaSuccess; }
