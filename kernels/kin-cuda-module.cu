// kinora-cuda.so — the CUDA backend module, opened by the engine with GModule.
//
// This file holds the module's entry points (ABI version, discovery, the op table), the context
// (stream, cuBLAS handle, cuDNN when present), transfers and error reporting.  Device memory
// (the caching allocator, the workspace, graphs) is kin-cuda-memory.cu; the ops live in
// kin-cuda-{gemm,norm,elementwise,attention,conv}.cu.  Every entry point is extern "C"
// and never throws or aborts: failures are a status code plus a message that the engine turns
// into a GError (see kin-cuda-abi.h).
//
// cudart is linked statically, so the module needs only the driver (libcuda) and cuBLAS at load
// time; cuDNN is opened with dlopen when it exists.

#include "kin-cuda-common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- errors ---

static const char *
base_name (const char *file)
{
  const char *s = strrchr (file, '/');
  return s ? s + 1 : file;
}

int
kin_cuda_fail (KinCudaCtx *ctx, int status, const char *file, int line, const char *fmt, ...)
{
  int n = snprintf (ctx->msg, sizeof ctx->msg, "%s:%d: ", base_name (file), line);
  if (n < 0 || (size_t) n >= sizeof ctx->msg)
    n = 0;
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (ctx->msg + n, sizeof ctx->msg - (size_t) n, fmt, ap);
  va_end (ap);
  return status;
}

int
kin_cuda_fail_cuda (KinCudaCtx *ctx, cudaError_t e, const char *call, const char *file, int line)
{
  // Allocation failures are not sticky in CUDA: clear it so that the context stays usable.
  if (e == cudaErrorMemoryAllocation) {
    (void) cudaGetLastError ();
    return kin_cuda_fail (ctx, KIN_CUDA_ERR_OOM, file, line, "%s: out of device memory (%s)", call,
                          cudaGetErrorString (e));
  }
  return kin_cuda_fail (ctx, KIN_CUDA_ERR_DEVICE, file, line, "%s: %s (%s)", call,
                        cudaGetErrorString (e), cudaGetErrorName (e));
}

int
kin_cuda_fail_cublas (KinCudaCtx *ctx, cublasStatus_t s, const char *call, const char *file, int line)
{
  int status = s == CUBLAS_STATUS_ALLOC_FAILED ? KIN_CUDA_ERR_OOM : KIN_CUDA_ERR_DEVICE;
  return kin_cuda_fail (ctx, status, file, line, "%s: %s", call, cublasGetStatusString (s));
}

// --- context ---

__global__ void
k_probe (int *p)
{
  if (p != NULL)
    *p = 1;
}

// FALSE (and @msg) when this module holds no kernel image the device can run: then CUDA is
// unavailable (the CPU takes over) rather than failing at the first op.
static bool
has_kernel_image (int device, char *msg, size_t msg_len)
{
  cudaFuncAttributes attr;
  cudaError_t e = cudaFuncGetAttributes (&attr, k_probe);
  if (e == cudaSuccess)
    return true;
  (void) cudaGetLastError ();
  cudaDeviceProp prop;
  memset (&prop, 0, sizeof prop);
  cudaGetDeviceProperties (&prop, device);
  snprintf (msg, msg_len, "kinora-cuda.so has no kernels for sm_%d%d (%s); rebuild with -Dgpu_arch=%d%d",
            prop.major, prop.minor, cudaGetErrorString (e), prop.major, prop.minor);
  return false;
}

static KinCudaCtx *
ctx_init (int device, char *msg, size_t msg_len)
{
  KinCudaCtx *ctx = (KinCudaCtx *) calloc (1, sizeof (KinCudaCtx));
  if (ctx == NULL) {
    snprintf (msg, msg_len, "out of host memory");
    return NULL;
  }
  ctx->device = device;
  ctx->opt_cudnn = 1;
  ctx->opt_fast_attention = 1;
  ctx->scratch_budget = KIN_CUDA_SCRATCH_BUDGET;
  cudaError_t e = cudaSetDevice (device);
  if (e == cudaSuccess)
    e = cudaStreamCreateWithFlags (&ctx->stream, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    snprintf (msg, msg_len, "cannot use CUDA device %d: %s", device, cudaGetErrorString (e));
    free (ctx);
    return NULL;
  }
  if (!has_kernel_image (device, msg, msg_len)) {
    cudaStreamDestroy (ctx->stream);
    free (ctx);
    return NULL;
  }
  cublasStatus_t s = cublasCreate (&ctx->cublas);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasSetStream (ctx->cublas, ctx->stream);
  if (s != CUBLAS_STATUS_SUCCESS) {
    snprintf (msg, msg_len, "cuBLAS does not start: %s", cublasGetStatusString (s));
    if (ctx->cublas)
      cublasDestroy (ctx->cublas);
    cudaStreamDestroy (ctx->stream);
    free (ctx);
    return NULL;
  }
  // cuBLAS gets a workspace of its own once (32 MiB, what it recommends on Hopper), so that it
  // never allocates behind the allocator's back, in particular during a graph capture
  if (kin_cuda_mem_init (ctx) != KIN_CUDA_OK ||
      kin_cuda_mem_get (ctx, KIN_CUDA_CUBLAS_WS, &ctx->cublas_ws) != KIN_CUDA_OK ||
      cublasSetWorkspace (ctx->cublas, ctx->cublas_ws, KIN_CUDA_CUBLAS_WS) != CUBLAS_STATUS_SUCCESS) {
    snprintf (msg, msg_len, "cannot set up device memory: %s", ctx->msg[0] ? ctx->msg : "cuBLAS workspace refused");
    kin_cuda_mem_shutdown (ctx);
    cublasDestroy (ctx->cublas);
    cudaStreamDestroy (ctx->stream);
    free (ctx);
    return NULL;
  }
  kin_cuda_cudnn_open (ctx);
  kin_cuda_lt_open (ctx);

  cudaDeviceProp prop;
  memset (&prop, 0, sizeof prop);
  int cublas_version = 0;
  cublasGetVersion (ctx->cublas, &cublas_version);
  if (cudaGetDeviceProperties (&prop, device) == cudaSuccess)
    snprintf (ctx->description, sizeof ctx->description,
              "%.120s, sm_%d%d, %.1f GiB; cuBLAS %d; %.80s", prop.name, prop.major, prop.minor,
              (double) prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), cublas_version,
              kin_cuda_cudnn_describe (ctx));
  else
    snprintf (ctx->description, sizeof ctx->description, "CUDA device %d", device);
  return ctx;
}

static void
ctx_shutdown (KinCudaCtx *ctx)
{
  if (ctx == NULL)
    return;
  if (ctx->capturing) {
    cudaGraph_t g = NULL;
    if (cudaStreamEndCapture (ctx->stream, &g) == cudaSuccess && g != NULL)
      cudaGraphDestroy (g);
    ctx->capturing = 0;
  }
  kin_cuda_graph_destroy (ctx, ctx->graph);
  cudaStreamSynchronize (ctx->stream);
  kin_cuda_lt_close (ctx);
  kin_cuda_cudnn_close (ctx);
  cublasDestroy (ctx->cublas);
  kin_cuda_mem_shutdown (ctx);  // every block, the workspaces included
  cudaStreamDestroy (ctx->stream);
  free (ctx);
}

static const char *
ctx_error_message (KinCudaCtx *ctx)
{
  return ctx->msg;
}

static const char *
ctx_describe (KinCudaCtx *ctx)
{
  return ctx->description;
}

static int
ctx_set_option (KinCudaCtx *ctx, int option, int value)
{
  switch (option) {
  case KIN_CUDA_OPT_CUDNN:
    ctx->opt_cudnn = value != 0;
    return KIN_CUDA_OK;
  case KIN_CUDA_OPT_EXACT_HALF:
    ctx->opt_exact_half = value != 0;
    return KIN_CUDA_OK;
  case KIN_CUDA_OPT_ATTENTION:
    if (value < 0 || value > 6)
      return BAD_INPUT ("attention path %d unknown", value);
    ctx->opt_attention = value;
    return KIN_CUDA_OK;
  case KIN_CUDA_OPT_SCRATCH_KIB:
    if (value < 0)
      return BAD_INPUT ("scratch budget %d KiB", value);
    ctx->scratch_budget = value == 0 ? KIN_CUDA_SCRATCH_BUDGET : (size_t) value << 10;
    return KIN_CUDA_OK;
  case KIN_CUDA_OPT_FAST_ATTENTION:
    ctx->opt_fast_attention = value != 0;
    return KIN_CUDA_OK;
  default:
    return BAD_INPUT ("option %d unknown", option);
  }
}

// --- memory ---

static void *
mem_alloc (KinCudaCtx *ctx, size_t bytes)
{
  void *p = NULL;
  if (kin_cuda_mem_get (ctx, bytes ? bytes : 1, &p) != KIN_CUDA_OK)
    return NULL;
  // zeroed like the CPU backend's memory, so that uninitialised reads are deterministic
  cudaError_t e = cudaMemsetAsync (p, 0, bytes, ctx->stream);
  if (e != cudaSuccess) {
    kin_cuda_fail_cuda (ctx, e, "cudaMemsetAsync", __FILE__, __LINE__);
    kin_cuda_mem_put (ctx, p);
    return NULL;
  }
  return p;
}

static int
mem_free (KinCudaCtx *ctx, void *p)
{
  return kin_cuda_mem_put (ctx, p);
}

static int
no_capture (KinCudaCtx *ctx, const char *what)
{
  if (!ctx->capturing)
    return KIN_CUDA_OK;
  return BAD_INPUT ("%s while a graph is being captured (not capture-safe: do it before graph_begin)", what);
}

static int
mem_upload (KinCudaCtx *ctx, void *dst, const void *host, size_t bytes)
{
  if (bytes == 0)
    return KIN_CUDA_OK;
  int rc = no_capture (ctx, "upload");
  if (rc != KIN_CUDA_OK)
    return rc;
  // the caller may free or reuse @host as soon as we return (a pageable copy is staged before
  // cudaMemcpyAsync returns, but say it explicitly; it also reports a failure here)
  CUDA_TRY (cudaMemcpyAsync (dst, host, bytes, cudaMemcpyHostToDevice, ctx->stream));
  CUDA_TRY (cudaStreamSynchronize (ctx->stream));
  return KIN_CUDA_OK;
}

static int
mem_download (KinCudaCtx *ctx, void *host, const void *src, size_t bytes)
{
  if (bytes == 0)
    return KIN_CUDA_OK;
  int rc = no_capture (ctx, "download");
  if (rc != KIN_CUDA_OK)
    return rc;
  CUDA_TRY (cudaMemcpyAsync (host, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
  CUDA_TRY (cudaStreamSynchronize (ctx->stream));
  return KIN_CUDA_OK;
}

static int
mem_synchronize (KinCudaCtx *ctx)
{
  int rc = no_capture (ctx, "synchronize");
  if (rc != KIN_CUDA_OK)
    return rc;
  CUDA_TRY (cudaStreamSynchronize (ctx->stream));
  return KIN_CUDA_OK;
}

static int
mem_stats (KinCudaCtx *ctx, uint64_t *in_use, uint64_t *peak, uint64_t *reserved, uint64_t *total)
{
  kin_cuda_mem_stats (ctx, in_use, peak, reserved, total);
  return KIN_CUDA_OK;
}

static int
mem_reset_peak (KinCudaCtx *ctx)
{
  kin_cuda_mem_reset_peak (ctx);
  return KIN_CUDA_OK;
}

static uint64_t
graph_launches (KinCudaCtx *ctx)
{
  return ctx->graph_launches;
}

// --- the exported entry points ---

static const KinCudaOps ops_table = {
  KIN_CUDA_ABI_VERSION,
  ctx_init,
  ctx_shutdown,
  ctx_error_message,
  ctx_describe,
  ctx_set_option,
  mem_alloc,
  mem_free,
  mem_upload,
  mem_download,
  mem_synchronize,
  kin_cuda_linear,
  kin_cuda_matmul,
  kin_cuda_layer_norm,
  kin_cuda_rms_norm,
  kin_cuda_modulate,
  kin_cuda_gate_add,
  kin_cuda_gelu_tanh,
  kin_cuda_silu,
  kin_cuda_softmax,
  kin_cuda_add,
  kin_cuda_mul,
  kin_cuda_scale,
  kin_cuda_attention,
  kin_cuda_conv2d,
  kin_cuda_group_norm,
  kin_cuda_upsample_nearest2x,
  kin_cuda_rope,
  kin_cuda_permute,
  kin_cuda_copy,
  mem_stats,
  mem_reset_peak,
  kin_cuda_mem_trim,
  kin_cuda_graph_begin,
  kin_cuda_graph_end,
  kin_cuda_graph_launch,
  kin_cuda_graph_destroy,
  graph_launches,
};

extern "C" {

// ABI version of this module's entry points; the engine refuses a module with another one.
__attribute__ ((visibility ("default"))) int
kin_cuda_abi_version (void)
{
  return KIN_CUDA_ABI_VERSION;
}

// Fills @msg with a one-line description of the devices (or why there is none) and returns the
// number of usable CUDA devices.  0 when there is no driver or no device.
__attribute__ ((visibility ("default"))) int
kin_cuda_discover (char *msg, size_t msg_len)
{
  int count = 0;  // stays 0 when the call fails without a driver
  cudaError_t st = cudaGetDeviceCount (&count);
  if (st == cudaErrorInsufficientDriver) {
    snprintf (msg, msg_len, "no NVIDIA driver, or one older than this module's CUDA runtime (%s)",
              cudaGetErrorString (st));
    (void) cudaGetLastError ();
    return 0;
  }
  if (st != cudaSuccess) {
    snprintf (msg, msg_len, "no CUDA device: %s", cudaGetErrorString (st));
    (void) cudaGetLastError ();
    return 0;
  }
  if (count <= 0) {
    snprintf (msg, msg_len, "no CUDA device found");
    return 0;
  }
  cudaDeviceProp prop;
  memset (&prop, 0, sizeof prop);
  if (cudaGetDeviceProperties (&prop, 0) != cudaSuccess) {
    snprintf (msg, msg_len, "%d CUDA device(s); properties unavailable", count);
    return count;
  }
  snprintf (msg, msg_len, "%d CUDA device(s); device 0: %s, sm_%d%d, %.1f GiB", count, prop.name,
            prop.major, prop.minor, (double) prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  return count;
}

// The op table for @abi_version (NULL when this module speaks another version).
__attribute__ ((visibility ("default"))) const KinCudaOps *
kin_cuda_get_ops (int abi_version)
{
  return abi_version == KIN_CUDA_ABI_VERSION ? &ops_table : NULL;
}

}  // extern "C"
