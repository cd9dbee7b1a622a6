#include "emu.h"
#include <ucontext.h>
#include <vector>
#include <map>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
double emu_warp_slot[32][32];
void *emu_dyn_smem;
static cudaError_t last_error = cudaSuccess;
static std::map<void *, size_t> allocs;
static size_t allocated;  // bytes held by cudaMalloc

// --- graph capture ---
struct EmuGraph { std::vector<std::function<void ()>> ops; };
static bool capturing, capture_broken;
static EmuGraph *capture_rec;

// Queues @op: runs it now, or records it while a capture is open.
static void enqueue (std::function<void ()> op)
{
  if (capturing) capture_rec->ops.push_back (std::move (op));
  else op ();
}

// An operation a capture cannot hold: it breaks the capture.
static cudaError_t capture_unsupported (const char *what)
{
  fprintf (stderr, "emu: %s during a graph capture (breaks it)\n", what);
  capture_broken = true;
  last_error = cudaErrorStreamCaptureUnsupported;
  return cudaErrorStreamCaptureUnsupported;
}

// --- fibers ---
struct Fiber { ucontext_t ctx; bool done; unsigned tid; std::vector<char> stack; };
static std::vector<Fiber> fibers;
static ucontext_t sched_ctx;
static int cur = -1;
static std::function<void ()> *cur_fn;
static unsigned long block_gen, block_arrived, warp_gen[32], warp_arrived[32];

static void yield_to_sched (void) { swapcontext (&fibers[cur].ctx, &sched_ctx); }

static void fiber_main (void) { (*cur_fn) (); fibers[cur].done = true; swapcontext (&fibers[cur].ctx, &sched_ctx); }

void __syncthreads (void)
{
  unsigned long g = block_gen;
  if (++block_arrived == blockDim.x) { block_arrived = 0; block_gen++; return; }
  while (block_gen == g) yield_to_sched ();
}

void emu_warp_barrier (void)
{
  int w = threadIdx.x >> 5;
  unsigned long g = warp_gen[w];
  if (++warp_arrived[w] == 32) { warp_arrived[w] = 0; warp_gen[w]++; return; }
  while (warp_gen[w] == g) yield_to_sched ();
}

static void run_launch (unsigned grid, unsigned block, size_t smem, const std::function<void ()> &f);

// dynamic shared memory a launch may ask for: 48 KiB, or more after cudaFuncSetAttribute
static size_t smem_limit = 48 * 1024;
cudaError_t emu_func_set_attribute (cudaFuncAttribute attr, int value)
{
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > 227 * 1024)
    return last_error = cudaErrorInvalidValue;
  if ((size_t) value > smem_limit) smem_limit = (size_t) value;
  return cudaSuccess;
}

void emu_launch (unsigned grid, unsigned block, size_t smem, cudaStream_t s, std::function<void ()> f)
{
  if (grid == 0 || block == 0 || block > 1024 || smem > smem_limit) { last_error = cudaErrorInvalidConfiguration; return; }
  if (block % 32) { fprintf (stderr, "emu: block %u not a multiple of 32\n", block); abort (); }
  enqueue ([grid, block, smem, f] () { run_launch (grid, block, smem, f); });
}

static void run_launch (unsigned grid, unsigned block, size_t smem, const std::function<void ()> &f)
{
  std::vector<char> dyn (smem + 16);
  emu_dyn_smem = dyn.data ();
  fibers.resize (block);
  gridDim = { grid, 1, 1 };
  blockDim = { block, 1, 1 };
  cur_fn = const_cast<std::function<void ()> *> (&f);
  for (unsigned b = 0; b < grid; b++) {
    blockIdx = { b, 0, 0 };
    memset (dyn.data (), 0xcd, dyn.size ());  // garbage, like real shared memory
    block_arrived = 0;
    memset (warp_arrived, 0, sizeof warp_arrived);
    for (unsigned t = 0; t < block; t++) {
      Fiber &fb = fibers[t];
      fb.stack.resize (256 * 1024);
      fb.done = false;
      fb.tid = t;
      getcontext (&fb.ctx);
      fb.ctx.uc_stack.ss_sp = fb.stack.data ();
      fb.ctx.uc_stack.ss_size = fb.stack.size ();
      fb.ctx.uc_link = nullptr;
      makecontext (&fb.ctx, fiber_main, 0);
    }
    for (;;) {
      bool any = false;
      for (unsigned t = 0; t < block; t++) {
        if (fibers[t].done) continue;
        any = true;
        cur = (int) t;
        threadIdx = { t, 0, 0 };
        swapcontext (&sched_ctx, &fibers[t].ctx);
      }
      if (!any) break;
      // deadlock: every live fiber waits on a barrier that the finished ones will never reach
      unsigned live = 0;
      for (unsigned t = 0; t < block; t++) live += !fibers[t].done;
      if (live < block && block_arrived == live && live > 0) { fprintf (stderr, "emu: __syncthreads after some threads exited\n"); abort (); }
    }
    if (block_arrived != 0) { fprintf (stderr, "emu: block ended with threads in a barrier\n"); abort (); }
  }
  cur = -1;
}

// --- runtime ---
cudaError_t cudaGetDeviceCount (int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties (cudaDeviceProp *p, int) { strcpy (p->name, "emulated"); p->major = 9; p->minor = 0; p->totalGlobalMem = 1ull << 34; return cudaSuccess; }
cudaError_t cudaSetDevice (int) { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags (cudaStream_t *s, unsigned) { *s = (cudaStream_t) 0x1; return cudaSuccess; }
cudaError_t cudaStreamDestroy (cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize (cudaStream_t)
{
  if (capturing) return capture_unsupported ("cudaStreamSynchronize");
  return cudaSuccess;
}

// Device memory: 16 GiB, or $KIN_CUDA_EMU_MEMORY_LIMIT bytes (suffix K, M or G allowed) so that
// tests can run out of it.  Read at every call: a test may change it between calls.
static size_t memory_limit (void)
{
  const char *v = getenv ("KIN_CUDA_EMU_MEMORY_LIMIT");
  if (v == NULL || *v == '\0') return 1ull << 34;
  char *end = NULL;
  unsigned long long n = strtoull (v, &end, 10);
  if (end && (*end == 'K' || *end == 'k')) n <<= 10;
  else if (end && (*end == 'M' || *end == 'm')) n <<= 20;
  else if (end && (*end == 'G' || *end == 'g')) n <<= 30;
  return (size_t) n;
}
cudaError_t cudaMalloc (void **p, size_t n)
{
  size_t lim = memory_limit ();
  if (n > lim || allocated > lim - n) { last_error = cudaErrorMemoryAllocation; return cudaErrorMemoryAllocation; }
  *p = aligned_alloc (256, n ? (n + 255) / 256 * 256 : 256);  // cudaMalloc aligns to 256 bytes
  memset (*p, 0xab, n);  // garbage, like real device memory
  allocs[*p] = n;
  allocated += n;
  return cudaSuccess;
}
cudaError_t cudaFree (void *p)
{
  if (capturing) return capture_unsupported ("cudaFree");
  if (p) {
    auto it = allocs.find (p);
    if (it == allocs.end ()) { fprintf (stderr, "emu: bad cudaFree\n"); abort (); }
    allocated -= it->second;
    allocs.erase (it);
    free (p);
  }
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo (size_t *free_bytes, size_t *total_bytes)
{
  size_t lim = memory_limit ();
  *total_bytes = lim;
  *free_bytes = allocated < lim ? lim - allocated : 0;
  return cudaSuccess;
}
static void check_dev (const void *p, size_t n, const char *what)
{
  if (n == 0) return;
  auto it = allocs.upper_bound ((void *) p);
  if (it == allocs.begin ()) goto bad;
  --it;
  if ((const char *) p >= (const char *) it->first && (const char *) p + n <= (const char *) it->first + it->second) return;
bad:
  fprintf (stderr, "emu: %s of %zu bytes outside any allocation\n", what, n); abort ();
}
cudaError_t cudaMemsetAsync (void *p, int v, size_t n, cudaStream_t)
{
  enqueue ([=] () { check_dev (p, n, "memset"); memset (p, v, n); });
  return cudaSuccess;
}
cudaError_t cudaMemset2DAsync (void *p, size_t pitch, int v, size_t w, size_t h, cudaStream_t)
{
  if (w > pitch) return cudaErrorInvalidValue;
  enqueue ([=] () {
    for (size_t r = 0; r < h; r++) { check_dev ((char *) p + r * pitch, w, "memset2d"); memset ((char *) p + r * pitch, v, w); }
  });
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync (void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t)
{
  if (capturing && k != cudaMemcpyDeviceToDevice) return capture_unsupported ("a host transfer");
  if ((const char *) d < (const char *) s + n && (const char *) s < (const char *) d + n && n) { fprintf (stderr, "emu: overlapping memcpy\n"); abort (); }
  enqueue ([=] () {
    if (k != cudaMemcpyHostToDevice) check_dev (s, n, "memcpy src");
    if (k != cudaMemcpyDeviceToHost) check_dev (d, n, "memcpy dst");
    memcpy (d, s, n);
  });
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture (cudaStream_t, cudaStreamCaptureMode)
{
  if (capturing) return cudaErrorIllegalState;
  capturing = true;
  capture_broken = false;
  capture_rec = new EmuGraph;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture (cudaStream_t, cudaGraph_t *graph)
{
  *graph = nullptr;
  if (!capturing) return cudaErrorIllegalState;
  capturing = false;
  EmuGraph *g = capture_rec;
  capture_rec = nullptr;
  if (capture_broken) { delete g; return cudaErrorStreamCaptureInvalidated; }
  *graph = g;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate (cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long)
{
  if (graph == nullptr) return cudaErrorInvalidValue;
  *exec = new EmuGraph (*graph);
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch (cudaGraphExec_t exec, cudaStream_t)
{
  if (exec == nullptr) return cudaErrorInvalidValue;
  if (capturing) return capture_unsupported ("cudaGraphLaunch");
  for (auto &op : exec->ops) op ();
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy (cudaGraphExec_t exec) { delete exec; return cudaSuccess; }
cudaError_t cudaGraphDestroy (cudaGraph_t graph) { delete graph; return cudaSuccess; }
cudaError_t cudaGetLastError (void) { cudaError_t e = last_error; last_error = cudaSuccess; return e; }
const char *cudaGetErrorString (cudaError_t e) { return e == cudaErrorMemoryAllocation ? "out of memory" : e ? "emulated error" : "no error"; }
const char *cudaGetErrorName (cudaError_t e) { return e ? "cudaErrorEmu" : "cudaSuccess"; }

// --- halves ---
static uint16_t f2bf (float f) { uint32_t u; memcpy (&u, &f, 4); if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0; u += 0x7fff + ((u >> 16) & 1); return (uint16_t) (u >> 16); }
static float bf2f (uint16_t h) { uint32_t u = (uint32_t) h << 16; float f; memcpy (&f, &u, 4); return f; }
__nv_bfloat16 __float2bfloat16_rn (float f) { return { f2bf (f) }; }
float __bfloat162float (__nv_bfloat16 h) { return bf2f (h.x); }
static float h2f (uint16_t h)
{
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  float v = e == 0 ? ldexpf ((float) m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf ((float) (m | 1024), e - 25);
  return s ? -v : v;
}
static uint16_t f2h (float f)
{
  // nearest half by search over the exact conversion (slow, simple, exact)
  if (std::isnan (f)) return 0x7e00;
  uint16_t sign = std::signbit (f) ? 0x8000 : 0; float a = fabsf (f);
  uint16_t best = 0; double bd = 1e300;
  int lo = 0, hi = 0x7c00;  // binary search over the monotone positive halves
  while (lo < hi) { int mid = (lo + hi) / 2; if (h2f ((uint16_t) mid) < a) lo = mid + 1; else hi = mid; }
  for (int c = lo - 1; c <= lo; c++) {
    if (c < 0 || c > 0x7c00) continue;
    double d = fabs ((double) h2f ((uint16_t) c) - a);
    if (d < bd || (d == bd && (c & 1) == 0)) { bd = d; best = (uint16_t) c; }
  }
  return sign | best;
}
__half __float2half_rn (float f) { return { f2h (f) }; }
float __half2float (__half h) { return h2f (h.x); }

// --- cuBLAS: column-major, by the book ---
static void gemm_run (cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
                      cudaDataType_t at, int lda, long long sa, const void *B, cudaDataType_t bt, int ldb, long long sb,
                      float be, void *C, int ldc, long long sc, int batch);
cublasStatus_t cublasCreate (cublasHandle_t *h) { *h = (cublasHandle_t) 0x2; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy (cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream (cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasGetVersion (cublasHandle_t, int *v) { *v = 130000; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace (cublasHandle_t, void *ws, size_t n) { if (n) check_dev (ws, n, "cublas workspace"); return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString (cublasStatus_t s) { return s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_EMU"; }
static double rd (const void *p, cudaDataType_t t, long long i)
{
  if (t == CUDA_R_32F) return ((const float *) p)[i];
  uint16_t h = ((const uint16_t *) p)[i];
  return t == CUDA_R_16BF ? bf2f (h) : h2f (h);
}
static size_t esz (cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }
cublasStatus_t cublasGemmStridedBatchedEx (cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                           const void *alpha, const void *A, cudaDataType_t at, int lda, long long sa,
                                           const void *B, cudaDataType_t bt, int ldb, long long sb, const void *beta,
                                           void *C, cudaDataType_t ct, int ldc, long long sc, int batch,
                                           cublasComputeType_t comp, cublasGemmAlgo_t)
{
  if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max (1, ta == CUBLAS_OP_N ? m : k) || ldb < std::max (1, tb == CUBLAS_OP_N ? k : n) || ldc < std::max (1, m))
    { fprintf (stderr, "emu cublas: bad ld m%d n%d k%d lda%d ldb%d ldc%d ta%d tb%d\n", m, n, k, lda, ldb, ldc, ta, tb); return CUBLAS_STATUS_INVALID_VALUE; }
  if (at != bt || ct != CUDA_R_32F || comp != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  // host pointer mode: alpha and beta are read now; the product runs in stream order
  float al = *(const float *) alpha, be = *(const float *) beta;
  enqueue ([=] () { gemm_run (ta, tb, m, n, k, al, A, at, lda, sa, B, bt, ldb, sb, be, C, ldc, sc, batch); });
  return CUBLAS_STATUS_SUCCESS;
}

static void gemm_run (cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
                      cudaDataType_t at, int lda, long long sa, const void *B, cudaDataType_t bt, int ldb, long long sb,
                      float be, void *C, int ldc, long long sc, int batch)
{
  for (int bi = 0; bi < batch; bi++) {
    const char *Ab = (const char *) A + (size_t) (bi * sa) * esz (at);
    const char *Bb = (const char *) B + (size_t) (bi * sb) * esz (bt);
    float *Cb = (float *) C + bi * sc;
    // bounds of what is read/written
    if (m && n) check_dev (Cb, ((size_t) (n - 1) * ldc + m) * 4, "gemm C");
    if (m && k) check_dev (Ab, (ta == CUBLAS_OP_N ? (size_t) (k - 1) * lda + m : (size_t) (m - 1) * lda + k) * esz (at), "gemm A");
    if (n && k) check_dev (Bb, (tb == CUBLAS_OP_N ? (size_t) (n - 1) * ldb + k : (size_t) (k - 1) * ldb + n) * esz (bt), "gemm B");
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        double acc = 0;
        for (int l = 0; l < k; l++) {
          double a = rd (Ab, at, ta == CUBLAS_OP_N ? i + (long long) l * lda : l + (long long) i * lda);
          double b = rd (Bb, bt, tb == CUBLAS_OP_N ? l + (long long) j * ldb : j + (long long) l * ldb);
          acc += a * b;
        }
        float *c = Cb + i + (long long) j * ldc;
        *c = (float) (al * acc + (be != 0.0f ? be * (double) *c : 0.0));
      }
  }
}
cublasStatus_t cublasGemmEx (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                             const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                             cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                             cublasComputeType_t comp, cublasGemmAlgo_t algo)
{
  return cublasGemmStridedBatchedEx (h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1, comp, algo);
}
