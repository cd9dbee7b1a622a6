/* kin-backend-cuda.h — the CUDA backend, loaded at run time from kinora-cuda.so.
 *
 * The module is looked for in $KIN_CUDA_MODULE_DIR, then the build tree, then the install
 * directory.  Every reason for not having CUDA (module not built, a library missing, no driver,
 * no device, an incompatible module) is a KIN_ENGINE_ERROR_NO_DEVICE error whose message says
 * which; callers then use kin_backend_cpu().
 *
 * The backend is a process-wide singleton on device 0, like the CPU one; use it from one thread
 * at a time (the engine thread).  Ops queue work on one CUDA stream; download() and
 * synchronize() wait for it.  Memory comes from the module's stream-ordered caching allocator
 * (freeing never waits; memory_stats reports it); a device out-of-memory is a recoverable
 * KIN_ENGINE_ERROR_OUT_OF_MEMORY.  The backend supports graphs (kin_backend_has_graphs). */
#pragma once

#include "kin-backend.h"

G_BEGIN_DECLS

/* The CUDA backend, or NULL with KIN_ENGINE_ERROR_NO_DEVICE. */
KinBackend *kin_backend_cuda (GError **error);

/* TRUE for the backend kin_backend_cuda() returns. */
gboolean    kin_backend_is_cuda (KinBackend *be);

/* One line about the device: name, compute capability, memory, library versions. */
const char *kin_backend_cuda_describe (KinBackend *be);

typedef enum {
  /* conv2d through cuDNN when it is installed (default TRUE); FALSE: im2col + cuBLAS */
  KIN_CUDA_OPTION_CUDNN,
  /* linear() with F16/BF16 weights: FALSE (default) rounds activations to the weight type and
   * uses tensor cores with f32 accumulation (~1e-3 relative); TRUE widens the weights to f32
   * (the CPU's arithmetic, within ~1e-6).  $KIN_CUDA_EXACT=1 sets it at start-up. */
  KIN_CUDA_OPTION_EXACT_HALF,
  /* attention kernel: 0 auto, 1 short-sequence, 2 flash, 3 cuBLAS, 4 tensor-core flash (WMMA),
   * 5 short-sequence with shared-memory staging, 6 tensor-core flash (mma.sync) — for tests */
  KIN_CUDA_OPTION_ATTENTION_PATH,
  /* scratch budget in KiB for im2col and attention score bands (0 = default 256 MiB) */
  KIN_CUDA_OPTION_SCRATCH_KIB,
  /* linear weights stored F32 in a checkpoint are uploaded as BF16 (default TRUE: half the
   * memory; see KinBackend.linear_weights_bf16).  Applies to models loaded afterwards.
   * $KIN_CUDA_WEIGHTS=f32 (or KIN_CUDA_EXACT=1) turns it off at start-up, =bf16 on. */
  KIN_CUDA_OPTION_BF16_WEIGHTS,
  /* attention may round its operands to bf16 for tensor cores (default TRUE, ~1e-2 relative,
   * the precision bf16 weights have anyway); FALSE keeps it f32.  Turned off at start-up with
   * the BF16 weights (KIN_CUDA_WEIGHTS=f32, KIN_CUDA_EXACT=1). */
  KIN_CUDA_OPTION_FAST_ATTENTION,
} KinCudaOption;

/* Sets an option; FALSE when @be is not the CUDA backend or the value is refused. */
gboolean    kin_backend_cuda_set_option (KinBackend *be, KinCudaOption option, int value);

/* KIN_CUDA_PROFILE=1 (a tuning aid: every op waits for the device before and after it, and its
 * time is summed per op and shape; the table goes to stderr at exit): forget what was summed so
 * far, or print it now with times divided by @per (e.g. per forward; @what names it) and forget
 * it.  No-ops when not profiling. */
void        kin_backend_cuda_profile_reset (void);
void        kin_backend_cuda_profile_print (int per, const char *what);

/* Graph replays queued since start-up (tests check that a graphed run really replayed). */
guint64     kin_backend_cuda_graph_launches (KinBackend *be);
/* Gives the allocator's cached, unused device memory back to CUDA (also done on its own when
 * an allocation fails). */
gboolean    kin_backend_cuda_trim (KinBackend *be);

G_END_DECLS
