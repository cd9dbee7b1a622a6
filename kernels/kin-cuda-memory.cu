// kin-cuda-memory.cu — the module's device memory: a stream-ordered caching allocator, the
// growable workspace, memory statistics, and CUDA graphs (whose memory the allocator reserves).
//
// Allocator.  Every op runs on the context's single stream, so a block that the engine frees can
// be handed out again at once: whatever reads or writes it next is queued behind the work that
// used it before.  Nothing waits for the device on a free.  Sizes are rounded up to a step of
// 1/8 of their power of two (512 B … 2 MiB), freed blocks are kept in a size-ordered cache and
// reused by best fit (up to 1/8 larger than asked).  When cudaMalloc runs out of memory the
// cache is released (trim: one stream synchronisation, then cudaFree of every cached block) and
// the allocation tried once more.  Blocks are never split or merged: Kinora's activations come
// in a few sizes that repeat every step.
//
// Graphs.  A captured graph replays kernels on fixed addresses, so the blocks it touches must not
// go to anybody else while it lives.  At most one graph lives at a time.  From graph_begin on,
// every block that is live at that moment, handed out during the capture, or freed during the
// capture is "pinned": when it is freed it goes to a separate cache that only a later capture
// may draw from.  Destroying the graph (or a failed capture) unpins everything.  This is
// conservative (blocks freed while a graph lives are not reused outside it) but needs nothing
// from the caller beyond keeping the graph's inputs and outputs alive.

#include "kin-cuda-common.h"

#include <stdio.h>
#include <stdlib.h>

#include <map>
#include <new>
#include <unordered_map>

namespace {

struct Block {
  size_t size;
  bool live;    // handed out, not yet freed
  bool pinned;  // referenced by the live graph
};

typedef std::multimap<size_t, void *> FreeList;

}  // namespace

struct KinCudaAllocator {
  std::unordered_map<void *, Block> blocks;  // every block held, by address
  FreeList cached;                            // free, unpinned
  FreeList graph_cached;                      // free, pinned (only a capture may reuse them)
  uint64_t in_use, peak, reserved;            // bytes: handed out, most handed out, held
};

struct KinCudaGraph {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
};

#define KIN_CUDA_BLOCK_MIN ((size_t) 512)
#define KIN_CUDA_STEP_MAX ((size_t) 2 << 20)

static size_t
round_size (size_t n)
{
  if (n <= KIN_CUDA_BLOCK_MIN)
    return KIN_CUDA_BLOCK_MIN;
  if (n > SIZE_MAX / 2)
    return n;  // cudaMalloc will refuse it anyway
  size_t p = KIN_CUDA_BLOCK_MIN;
  while (p <= n / 2)
    p <<= 1;
  size_t step = p / 8;
  step = step < KIN_CUDA_BLOCK_MIN ? KIN_CUDA_BLOCK_MIN : step > KIN_CUDA_STEP_MAX ? KIN_CUDA_STEP_MAX : step;
  return (n + step - 1) / step * step;
}

// Best fit in @list of at least @want bytes and at most 1/8 more.
static void *
take_cached (FreeList &list, size_t want)
{
  FreeList::iterator it = list.lower_bound (want);
  if (it == list.end () || it->first > want + want / 8)
    return NULL;
  void *p = it->second;
  list.erase (it);
  return p;
}

static int
fail_oom_host (KinCudaCtx *ctx)
{
  return kin_cuda_fail (ctx, KIN_CUDA_ERR_OOM, __FILE__, __LINE__, "out of host memory in the allocator");
}

int
kin_cuda_mem_init (KinCudaCtx *ctx)
{
  ctx->mem = new (std::nothrow) KinCudaAllocator ();
  if (ctx->mem == NULL)
    return fail_oom_host (ctx);
  ctx->mem->in_use = ctx->mem->peak = ctx->mem->reserved = 0;
  return KIN_CUDA_OK;
}

// Gives every cached (unpinned, free) block back to CUDA.  Not while capturing: cudaFree would
// break the capture.
int
kin_cuda_mem_trim (KinCudaCtx *ctx)
{
  KinCudaAllocator *m = ctx->mem;
  if (m == NULL || m->cached.empty ())
    return KIN_CUDA_OK;
  if (ctx->capturing)
    return BAD_INPUT ("cannot release cached memory while a graph is being captured");
  // the engine freed these in stream order: work queued before may still use them
  CUDA_TRY (cudaStreamSynchronize (ctx->stream));
  cudaError_t first = cudaSuccess;
  for (FreeList::iterator it = m->cached.begin (); it != m->cached.end (); ++it) {
    cudaError_t e = cudaFree (it->second);
    if (e != cudaSuccess && first == cudaSuccess)
      first = e;
    m->reserved -= it->first;
    m->blocks.erase (it->second);
  }
  m->cached.clear ();
  if (first != cudaSuccess)
    return kin_cuda_fail_cuda (ctx, first, "cudaFree", __FILE__, __LINE__);
  return KIN_CUDA_OK;
}

void
kin_cuda_mem_shutdown (KinCudaCtx *ctx)
{
  KinCudaAllocator *m = ctx->mem;
  if (m == NULL)
    return;
  cudaStreamSynchronize (ctx->stream);
  for (std::unordered_map<void *, Block>::iterator it = m->blocks.begin (); it != m->blocks.end (); ++it)
    cudaFree (it->first);
  delete m;
  ctx->mem = NULL;
}

static int
mem_get_unchecked (KinCudaCtx *ctx, size_t bytes, void **out)
{
  KinCudaAllocator *m = ctx->mem;
  const size_t size = round_size (bytes);
  void *p = NULL;
  if (ctx->capturing)
    p = take_cached (m->graph_cached, size);
  if (p == NULL)
    p = take_cached (m->cached, size);
  if (p == NULL) {
    cudaError_t e = cudaMalloc (&p, size);
    if (e == cudaErrorMemoryAllocation && !ctx->capturing) {
      (void) cudaGetLastError ();
      int rc = kin_cuda_mem_trim (ctx);
      if (rc != KIN_CUDA_OK)
        return rc;
      e = cudaMalloc (&p, size);
    }
    if (e != cudaSuccess) {
      char call[96];
      snprintf (call, sizeof call, "cudaMalloc of %.1f MiB", (double) size / (1024.0 * 1024.0));
      return kin_cuda_fail_cuda (ctx, e, call, __FILE__, __LINE__);
    }
    Block b = { size, false, false };
    m->blocks[p] = b;
    m->reserved += size;
  }
  Block &b = m->blocks[p];
  b.live = true;
  if (ctx->capturing)
    b.pinned = true;
  m->in_use += b.size;
  if (m->in_use > m->peak)
    m->peak = m->in_use;
  *out = p;
  return KIN_CUDA_OK;
}

int
kin_cuda_mem_get (KinCudaCtx *ctx, size_t bytes, void **out)
{
  *out = NULL;
  try {
    return mem_get_unchecked (ctx, bytes, out);
  } catch (...) {
    return fail_oom_host (ctx);
  }
}

int
kin_cuda_mem_put (KinCudaCtx *ctx, void *p)
{
  if (p == NULL)
    return KIN_CUDA_OK;
  KinCudaAllocator *m = ctx->mem;
  try {
    std::unordered_map<void *, Block>::iterator it = m->blocks.find (p);
    if (it == m->blocks.end () || !it->second.live)
      return BAD_INPUT ("free of %p, which this allocator did not hand out (or freed twice)", p);
    Block &b = it->second;
    b.live = false;
    m->in_use -= b.size;
    if (ctx->capturing)  // the graph being captured used it until here
      b.pinned = true;
    (b.pinned ? m->graph_cached : m->cached).insert (std::make_pair (b.size, p));
    return KIN_CUDA_OK;
  } catch (...) {
    return fail_oom_host (ctx);
  }
}

void
kin_cuda_mem_stats (KinCudaCtx *ctx, uint64_t *in_use, uint64_t *peak, uint64_t *reserved,
                    uint64_t *total)
{
  KinCudaAllocator *m = ctx->mem;
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo (&free_b, &total_b) != cudaSuccess) {
    (void) cudaGetLastError ();
    total_b = 0;
  }
  if (in_use)
    *in_use = m->in_use;
  if (peak)
    *peak = m->peak;
  if (reserved)
    *reserved = m->reserved;
  if (total)
    *total = total_b;
}

void
kin_cuda_mem_reset_peak (KinCudaCtx *ctx)
{
  ctx->mem->peak = ctx->mem->in_use;
}

// --- workspace ---

int
kin_cuda_workspace (KinCudaCtx *ctx, size_t bytes, void **out)
{
  if (bytes <= ctx->ws_size && ctx->ws != NULL) {
    *out = ctx->ws;
    return KIN_CUDA_OK;
  }
  // stream order makes the swap safe: work still reading the old workspace runs before anything
  // that the block is handed to next
  if (ctx->ws != NULL) {
    int rc = kin_cuda_mem_put (ctx, ctx->ws);
    ctx->ws = NULL;
    ctx->ws_size = 0;
    if (rc != KIN_CUDA_OK)
      return rc;
  }
  size_t round = (size_t) 1 << 20;
  size_t want = (bytes + round - 1) / round * round;
  if (want == 0)
    want = round;
  int rc = kin_cuda_mem_get (ctx, want, &ctx->ws);
  if (rc != KIN_CUDA_OK)
    return rc;
  ctx->ws_size = want;
  *out = ctx->ws;
  return KIN_CUDA_OK;
}

// --- graphs ---

static void
unpin_all (KinCudaAllocator *m)
{
  for (std::unordered_map<void *, Block>::iterator it = m->blocks.begin (); it != m->blocks.end (); ++it)
    it->second.pinned = false;
  m->cached.insert (m->graph_cached.begin (), m->graph_cached.end ());
  m->graph_cached.clear ();
}

int
kin_cuda_graph_begin (KinCudaCtx *ctx)
{
  if (ctx->capturing || ctx->graph != NULL)
    return BAD_INPUT ("graph_begin: %s", ctx->capturing ? "a capture is already open"
                                                         : "a graph already exists (free it first)");
  KinCudaAllocator *m = ctx->mem;
  // whatever is live now (weights, the caller's buffers, the workspace) may be used by the graph
  for (std::unordered_map<void *, Block>::iterator it = m->blocks.begin (); it != m->blocks.end (); ++it)
    if (it->second.live)
      it->second.pinned = true;
  // relaxed: the allocator may still call cudaMalloc for a block the graph keeps for its life
  cudaError_t e = cudaStreamBeginCapture (ctx->stream, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    unpin_all (m);
    return kin_cuda_fail_cuda (ctx, e, "cudaStreamBeginCapture", __FILE__, __LINE__);
  }
  ctx->capturing = 1;
  return KIN_CUDA_OK;
}

int
kin_cuda_graph_end (KinCudaCtx *ctx, KinCudaGraph **out)
{
  *out = NULL;
  if (!ctx->capturing)
    return BAD_INPUT ("graph_end without graph_begin");
  cudaGraph_t g = NULL;
  cudaError_t e = cudaStreamEndCapture (ctx->stream, &g);
  ctx->capturing = 0;
  cudaGraphExec_t exec = NULL;
  if (e == cudaSuccess)
    e = cudaGraphInstantiate (&exec, g, 0);
  KinCudaGraph *graph = NULL;
  if (e == cudaSuccess) {
    graph = (KinCudaGraph *) calloc (1, sizeof *graph);
    if (graph == NULL) {
      cudaGraphExecDestroy (exec);
      cudaGraphDestroy (g);
      unpin_all (ctx->mem);
      return fail_oom_host (ctx);
    }
  }
  if (e != cudaSuccess) {
    // a capture broken by an illegal call, or a graph that does not instantiate: nothing of it
    // ran, so its memory goes back to the cache
    if (g != NULL)
      cudaGraphDestroy (g);
    unpin_all (ctx->mem);
    return kin_cuda_fail_cuda (ctx, e, "graph capture", __FILE__, __LINE__);
  }
  graph->graph = g;
  graph->exec = exec;
  ctx->graph = graph;
  *out = graph;
  return KIN_CUDA_OK;
}

int
kin_cuda_graph_launch (KinCudaCtx *ctx, KinCudaGraph *graph)
{
  if (graph == NULL || graph != ctx->graph)
    return BAD_INPUT ("graph_launch: not the context's live graph");
  if (ctx->capturing)
    return BAD_INPUT ("graph_launch while capturing");
  CUDA_TRY (cudaGraphLaunch (graph->exec, ctx->stream));
  ctx->graph_launches++;
  return KIN_CUDA_OK;
}

int
kin_cuda_graph_destroy (KinCudaCtx *ctx, KinCudaGraph *graph)
{
  if (graph == NULL)
    return KIN_CUDA_OK;
  if (graph != ctx->graph)
    return BAD_INPUT ("graph_destroy: not the context's live graph");
  // launches still queued finish first (CUDA frees an in-flight executable graph on completion);
  // its blocks, back in the cache, are handed out only to work queued after them
  cudaError_t e1 = cudaGraphExecDestroy (graph->exec);
  cudaError_t e2 = cudaGraphDestroy (graph->graph);
  free (graph);
  ctx->graph = NULL;
  unpin_all (ctx->mem);
  if (e1 != cudaSuccess)
    return kin_cuda_fail_cuda (ctx, e1, "cudaGraphExecDestroy", __FILE__, __LINE__);
  if (e2 != cudaSuccess)
    return kin_cuda_fail_cuda (ctx, e2, "cudaGraphDestroy", __FILE__, __LINE__);
  return KIN_CUDA_OK;
}
