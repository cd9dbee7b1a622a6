// kin-cuda-attention-short.cu — attention path 5: short key sequences staged in shared memory
// (lk ≤ 64, head_dim ≤ 128; f32 throughout, like paths 1–3: ~1e-6 from the CPU).  Made for the
// STDiT's temporal attention (batch 2048, 16 heads, lq = lk = 16, head_dim 72), where paths 1
// and 2 read K and V many times over; this one reads q, k and v once and writes out once.
//
// Work units.  A query tile is 16 rows of one (b, h); one warp takes one tile.  A slot is one
// (b, h) and a chunk of T consecutive tiles (T = min(4, ⌈lq/16⌉)), whose T warps share the
// slot's K and V.  A block holds G slots (G·T ≤ 4 warps; G ≤ 4/T, fewer when the shared memory
// would pass SS_SMEM_BUDGET): G = 3, T = 1 (3 warps, 96 threads) at the temporal shape.  Blocks
// take G consecutive slots, grid-stride.
//
// Shared memory of a block, in floats (every part a multiple of 4: 16-byte aligned):
//   per slot  sK [KP][LDQ]   keys 0 … len−1 of the slot (KP = 16·⌈lk/16⌉ rows: the score loop
//                            reads all KP rows; rows ≥ len are never staged, their scores are
//                            replaced by −∞), channels ≥ head_dim zeroed
//             sV [lk][D4]    values 0 … len−1
//   per warp  sQ [16][LDQ]   the warp's query rows (channels ≥ head_dim zeroed); after the scores
//                            the same space holds Pᵀ [KP][SS_PLD]: the normalised probabilities,
//                            key-major (P·V reads the 16 rows of one key as 4 float4 broadcasts)
// D4 = head_dim rounded up to 4; LDQ = D4 or D4 + 4 such that LDQ/4 is odd (8 rows read as
// float4 at one channel fall into 8 different 4-bank groups).  Temporal shape: slot 2368 floats,
// warp 1216, block of 3 slots 43008 bytes (4 warps would be 57344).
//
// Staging: the T warps of a slot copy its K, V and query rows global → shared with cp.async
// (16-byte copies when head_dim, the strides and the pointers allow, 4-byte otherwise;
// consecutive threads take consecutive channels of a row, so loads coalesce), all in flight at
// once, then cp.async.wait_all and a barrier among them: __syncwarp when T = 1 (the warps of a
// block are then independent), __syncthreads otherwise.  The only other barrier is the same one
// at the top of the next grid-stride iteration (shared memory is reused).
//
// Per warp (lane = 8·kg + rg):
//   scores   lane holds rows rg and rg+8 × keys kg, kg+4, …, kg+4(4KC−1) (2 × 4KC registers);
//            per 4 channels it reads 2 float4 of Q and 4KC float4 of K (32·KC FMAs).
//   softmax  exact, in f32: max (−∞ for keys ≥ len; an all −∞ row gives zeros), expf, sum,
//            ×1/sum (as the CPU), across the 4 lanes of a row with two xor-shuffles.
//   P·V      lane holds all 16 rows × channels lane + 32c, c < NC = ⌈head_dim/32⌉; per key j:
//            4 float4 broadcasts of Pᵀ[j] and NC scalars of V[j].  Rows < lq and channels
//            < head_dim are written straight from registers (32 consecutive floats per store).
//
// Key lengths travel in the launch parameters as bytes (lk ≤ 64), SS_LENS_MAX sequences per
// launch: no upload, no synchronisation, graph-capture safe.

#include "kin-cuda-common.h"
#include "kin-cuda-reduce.h"

#include <string.h>

#define SS_MAX_WARPS 4                 // warps per block
#define SS_ROWS 16                     // query rows per warp
#define SS_PLD 24                      // row stride of Pᵀ (floats): conflict-free stores
#define SS_LENS_MAX 2048               // sequences per launch when there are kv_lens
#ifndef SS_SMEM_BUDGET
#define SS_SMEM_BUDGET (48 * 1024)     // G shrinks until a block fits (at least one slot)
#endif
#ifndef SS_GRID_MAX
#define SS_GRID_MAX (1 << 24)          // blocks per launch (grid-stride beyond)
#endif

struct StagedArgs {
  const float *q, *k, *v;
  float *out;
  const float *bias;  // [heads, lq, lk] or NULL
  int64_t q_stride, kv_stride, out_stride;
  int64_t nslots;     // slots of this launch: (b·heads + h)·nchunks + chunk
  int heads, lq, lk, head_dim;
  int d4, ldq;        // head_dim rounded up to 4; row stride of sQ and sK
  int tiles;          // T: warps (query tiles) per slot
  int slots;          // G: slots per block
  int nchunks;        // slots per (b, h)
  int slot_floats;    // sK + sV
  int warp_floats;    // sQ / Pᵀ
  int kv_rows;        // KP
  int q_vec, kv_vec;  // 16-byte copies possible
  uint64_t magic_q, magic_kv;  // i / c = (i · magic) >> 32 for the staging divisors
  float scale;
  int has_lens;
  uint8_t lens[SS_LENS_MAX];   // clamped to [0, lk]
};

// floor(i / c) for 0 ≤ i < 2^32 / c, with magic = ⌊2^32 / c⌋ + 1 (the staging loops' i stays
// below 2^13 and c ≤ 128)
static __device__ __forceinline__ int
ss_div (int i, uint64_t magic)
{
  return (int) (((uint64_t) (uint32_t) i * magic) >> 32);
}

static uint64_t
ss_magic (int c)
{
  return ((uint64_t) 1 << 32) / (uint64_t) c + 1;
}

static __device__ __forceinline__ void
ss_copy16 (float *s, const float *g)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((unsigned) __cvta_generic_to_shared (s)),
                "l"(g)
                : "memory");
#else
  *(float4 *) s = *(const float4 *) g;
#endif
}

static __device__ __forceinline__ void
ss_copy4 (float *s, const float *g)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile ("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((unsigned) __cvta_generic_to_shared (s)),
                "l"(g)
                : "memory");
#else
  *s = *g;
#endif
}

static __device__ __forceinline__ void
ss_copy_wait (void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile ("cp.async.wait_all;\n" ::: "memory");
#endif
}

// A barrier among the warps that share data: one slot per warp (T = 1) shares nothing with the
// other warps of the block.  T is the same for the whole block.
static __device__ __forceinline__ void
ss_barrier (int T)
{
  if (T == 1)
    __syncwarp ();
  else
    __syncthreads ();
}

// Threads tid = 0 … nt−1 of a group copy rows 0 … n−1 of head_dim floats: source row i at src + i·ss, destination row i at
// dst + (i/16)·tstride + (i%16)·ld (K and V: tstride = 16·ld; Q: one warp region per 16 rows).
// Scalar copies zero channels head_dim … D4−1; 16-byte copies need head_dim = D4.
static __device__ __forceinline__ void
ss_stage (float *dst, int ld, int tstride, const float *src, int64_t ss, int n, int D, int D4,
          bool vec, uint64_t magic, int tid, int nt)
{
  if (vec) {
    const int c4 = D4 >> 2, total = n * c4;
    for (int i = tid; i < total; i += nt) {
      const int r = ss_div (i, magic), c = (i - r * c4) * 4;
      ss_copy16 (dst + (r >> 4) * tstride + (r & 15) * ld + c, src + (int64_t) r * ss + c);
    }
  } else {
    const int total = n * D4;
    for (int i = tid; i < total; i += nt) {
      const int r = ss_div (i, magic), c = i - r * D4;
      float *p = dst + (r >> 4) * tstride + (r & 15) * ld + c;
      if (c < D)
        ss_copy4 (p, src + (int64_t) r * ss + c);
      else
        *p = 0.0f;
    }
  }
}

template <int KC, int NC>  // KC = ⌈lk/16⌉ (4·KC keys per lane), NC = ⌈head_dim/32⌉
__global__ void __launch_bounds__ (SS_MAX_WARPS * 32)
k_attn_staged (StagedArgs a, int64_t nunits)
{
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int D = a.head_dim, D4 = a.d4, LDQ = a.ldq, T = a.tiles, G = a.slots;
  const int g = warp / T, t = warp % T;
  const int rg = lane & 7, kg = lane >> 3;
  float *const sQbase = smem + G * a.slot_floats;  // warp regions
  float *const sK = smem + g * a.slot_floats;
  float *const sV = sK + a.kv_rows * LDQ;
  float *sW = sQbase + warp * a.warp_floats;

  for (int64_t unit = blockIdx.x; unit < nunits; unit += gridDim.x) {
    if (unit != (int64_t) blockIdx.x)
      ss_barrier (T);  // the previous unit's shared memory is consumed

    // --- the T warps of slot g stage its K, V and query tiles ---
    const int64_t slot = unit * G + g;
    const bool live = slot < a.nslots;  // the same for the T warps of the slot
    int chunk = 0, h = 0, len = 0;
    int64_t b = 0;
    if (live) {
      if (a.nslots <= INT32_MAX) {  // 32-bit divisions (64-bit ones are slow)
        const uint32_t s32 = (uint32_t) slot, bh = s32 / (uint32_t) a.nchunks;
        chunk = (int) (s32 - bh * (uint32_t) a.nchunks);
        h = (int) (bh % (uint32_t) a.heads);
        b = bh / (uint32_t) a.heads;
      } else {
        const int64_t bh = slot / a.nchunks;
        chunk = (int) (slot - bh * a.nchunks);
        h = (int) (bh % a.heads);
        b = bh / a.heads;
      }
      len = a.has_lens ? a.lens[b] : a.lk;
      const int gtid = t * 32 + lane, gnt = T * 32;
      const int64_t kvoff = b * a.lk * a.kv_stride + (int64_t) h * D;
      ss_stage (sK, LDQ, SS_ROWS * LDQ, a.k + kvoff, a.kv_stride, len, D, D4, a.kv_vec, a.magic_kv,
                gtid, gnt);
      ss_stage (sV, D4, SS_ROWS * D4, a.v + kvoff, a.kv_stride, len, D, D4, a.kv_vec, a.magic_kv,
                gtid, gnt);
      const int r0 = chunk * T * SS_ROWS;
      const int nr = a.lq - r0 < T * SS_ROWS ? a.lq - r0 : T * SS_ROWS;
      ss_stage (sQbase + g * T * a.warp_floats, LDQ, a.warp_floats,
                a.q + (b * a.lq + r0) * a.q_stride + (int64_t) h * D, a.q_stride, nr, D, D4,
                a.q_vec, a.magic_q, gtid, gnt);
    }
    ss_copy_wait ();
    ss_barrier (T);

    // --- this warp's tile ---
    const int row0 = (chunk * T + t) * SS_ROWS;
    if (!live || row0 >= a.lq)
      continue;  // the whole warp (the next barrier is at the top of the next iteration)

    // scores of rows rg, rg + 8 × keys kg + 4i
    float s[2][4 * KC];
#pragma unroll
    for (int i = 0; i < 4 * KC; i++)
      s[0][i] = s[1][i] = 0.0f;
    {
      const float *q0 = sW + rg * LDQ, *q1 = q0 + 8 * LDQ, *kr = sK + kg * LDQ;
#pragma unroll 2
      for (int e = 0; e < D4; e += 4) {
        const float4 x0 = *(const float4 *) (q0 + e), x1 = *(const float4 *) (q1 + e);
#pragma unroll
        for (int i = 0; i < 4 * KC; i++) {
          const float4 y = *(const float4 *) (kr + 4 * i * LDQ + e);
          s[0][i] = fmaf (x0.x, y.x, s[0][i]);
          s[1][i] = fmaf (x1.x, y.x, s[1][i]);
          s[0][i] = fmaf (x0.y, y.y, s[0][i]);
          s[1][i] = fmaf (x1.y, y.y, s[1][i]);
          s[0][i] = fmaf (x0.z, y.z, s[0][i]);
          s[1][i] = fmaf (x1.z, y.z, s[1][i]);
          s[0][i] = fmaf (x0.w, y.w, s[0][i]);
          s[1][i] = fmaf (x1.w, y.w, s[1][i]);
        }
      }
    }

    // softmax of each row over its 4 lanes (kg = 0…3: lanes rg, rg+8, rg+16, rg+24)
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      const int row = row0 + rg + 8 * rr;
      const float *brow = a.bias != NULL && row < a.lq ? a.bias + ((int64_t) h * a.lq + row) * a.lk : NULL;
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < 4 * KC; i++) {
        const int key = kg + 4 * i;
        float v = -INFINITY;
        if (key < len) {
          v = s[rr][i] * a.scale;
          if (brow != NULL)
            v += brow[key];
        }
        s[rr][i] = v;
        mx = fmaxf (mx, v);
      }
      mx = fmaxf (mx, __shfl_xor_sync (KIN_FULL_MASK, mx, 8));
      mx = fmaxf (mx, __shfl_xor_sync (KIN_FULL_MASK, mx, 16));
      const float muse = mx == -INFINITY ? 0.0f : mx;  // all masked: every p is exp(−∞) = 0
      float sum = 0.0f;
#pragma unroll
      for (int i = 0; i < 4 * KC; i++) {
        s[rr][i] = expf (s[rr][i] - muse);
        sum += s[rr][i];
      }
      sum += __shfl_xor_sync (KIN_FULL_MASK, sum, 8);
      sum += __shfl_xor_sync (KIN_FULL_MASK, sum, 16);
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
      for (int i = 0; i < 4 * KC; i++)
        s[rr][i] *= inv;
    }

    // Pᵀ over sQ (every lane is done reading sQ)
    __syncwarp ();
#pragma unroll
    for (int i = 0; i < 4 * KC; i++) {
      float *pk = sW + (kg + 4 * i) * SS_PLD;
      pk[rg] = s[0][i];
      pk[rg + 8] = s[1][i];
    }
    __syncwarp ();

    // out = P·V: rows 0…15 × channels lane + 32c
    float o[SS_ROWS][NC];
#pragma unroll
    for (int r = 0; r < SS_ROWS; r++)
#pragma unroll
      for (int c = 0; c < NC; c++)
        o[r][c] = 0.0f;
#pragma unroll 2
    for (int j = 0; j < len; j++) {
      const float4 *pj = (const float4 *) (sW + j * SS_PLD);
      float p[SS_ROWS];
#pragma unroll
      for (int r4 = 0; r4 < SS_ROWS / 4; r4++) {
        const float4 x = pj[r4];
        p[4 * r4] = x.x;
        p[4 * r4 + 1] = x.y;
        p[4 * r4 + 2] = x.z;
        p[4 * r4 + 3] = x.w;
      }
      const float *vr = sV + j * D4;
#pragma unroll
      for (int c = 0; c < NC; c++) {
        const int e = lane + 32 * c;
        const float v = e < D ? vr[e] : 0.0f;
#pragma unroll
        for (int r = 0; r < SS_ROWS; r++)
          o[r][c] = fmaf (p[r], v, o[r][c]);
      }
    }

    float *ob = a.out + (b * a.lq + row0) * a.out_stride + (int64_t) h * D;
#pragma unroll
    for (int r = 0; r < SS_ROWS; r++) {
      if (row0 + r >= a.lq)
        break;
#pragma unroll
      for (int c = 0; c < NC; c++) {
        const int e = lane + 32 * c;
        if (e < D)
          ob[(int64_t) r * a.out_stride + e] = o[r][c];
      }
    }
  }
}

template <int KC, int NC>
static int
launch_staged (KinCudaCtx *ctx, const StagedArgs &a, int64_t nunits, size_t bytes)
{
  if (bytes > 48 * 1024)
    CUDA_TRY (cudaFuncSetAttribute (k_attn_staged<KC, NC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) bytes));
  const int64_t grid = nunits < SS_GRID_MAX ? nunits : SS_GRID_MAX;
  const unsigned threads = (unsigned) (a.slots * a.tiles * 32);
  k_attn_staged<KC, NC><<<(unsigned) grid, threads, bytes, ctx->stream>>> (a, nunits);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

template <int KC>
static int
launch_staged_nc (KinCudaCtx *ctx, const StagedArgs &a, int64_t nunits, size_t bytes)
{
  switch ((a.head_dim + 31) / 32) {
  case 1: return launch_staged<KC, 1> (ctx, a, nunits, bytes);
  case 2: return launch_staged<KC, 2> (ctx, a, nunits, bytes);
  case 3: return launch_staged<KC, 3> (ctx, a, nunits, bytes);
  default: return launch_staged<KC, 4> (ctx, a, nunits, bytes);
  }
}

int
kin_cuda_attention_short_staged (KinCudaCtx *ctx, const KinCudaAttention *d)
{
  if (d->batch <= 0 || d->heads <= 0 || d->lq <= 0 || d->lk <= 0 || d->head_dim <= 0)
    return BAD_INPUT ("attention: empty dimensions");
  if (d->lk > 64 || d->head_dim > 128)
    return BAD_INPUT ("attention path 5: lk %d > 64 or head_dim %d > 128", d->lk, d->head_dim);
  const int D = d->head_dim, D4 = (D + 3) & ~3, KC = (d->lk + 15) / 16;
  const int ldq = (D4 / 4) % 2 == 1 ? D4 : D4 + 4;
  const int ntiles = (d->lq + SS_ROWS - 1) / SS_ROWS;
  const int T = ntiles < SS_MAX_WARPS ? ntiles : SS_MAX_WARPS;
  const int nchunks = (ntiles + T - 1) / T;

  StagedArgs a;
  kin_attn_args_init (a, d);
  a.d4 = D4;
  a.ldq = ldq;
  a.tiles = T;
  a.nchunks = nchunks;
  a.kv_rows = 16 * KC;
  a.slot_floats = a.kv_rows * ldq + d->lk * D4;
  a.warp_floats = SS_ROWS * ldq > a.kv_rows * SS_PLD ? SS_ROWS * ldq : a.kv_rows * SS_PLD;
  // 16-byte copies: whole float4 inside the head (head_dim % 4 == 0), aligned rows and bases
  const bool d_vec = D % 4 == 0;
  a.q_vec = d_vec && d->q_stride % 4 == 0 && ((uintptr_t) d->q & 15) == 0;
  a.kv_vec = d_vec && d->kv_stride % 4 == 0 && (((uintptr_t) d->k | (uintptr_t) d->v) & 15) == 0;
  a.magic_q = ss_magic (a.q_vec ? D4 / 4 : D4);
  a.magic_kv = ss_magic (a.kv_vec ? D4 / 4 : D4);

  const int chunk = a.has_lens ? SS_LENS_MAX : d->batch;
  // slots per block: as many as SS_MAX_WARPS warps allow, fewer if the block would pass the
  // budget or there are not that many slots
  const int64_t max_slots = (int64_t) (chunk < d->batch ? chunk : d->batch) * d->heads * nchunks;
  int G = SS_MAX_WARPS / T;
  while (G > 1 && ((size_t) G * a.slot_floats + (size_t) G * T * a.warp_floats) * sizeof (float) > SS_SMEM_BUDGET)
    G--;
  if (G > max_slots)
    G = (int) max_slots;
  a.slots = G;
  const size_t bytes = ((size_t) G * a.slot_floats + (size_t) G * T * a.warp_floats) * sizeof (float);

  for (int b0 = 0; b0 < d->batch; b0 += chunk) {
    const int nb = d->batch - b0 < chunk ? d->batch - b0 : chunk;
    a.q = d->q + (int64_t) b0 * d->lq * d->q_stride;
    a.k = d->k + (int64_t) b0 * d->lk * d->kv_stride;
    a.v = d->v + (int64_t) b0 * d->lk * d->kv_stride;
    a.out = d->out + (int64_t) b0 * d->lq * d->out_stride;
    for (int i = 0; a.has_lens && i < nb; i++) {
      const int32_t l = d->kv_lens[b0 + i];
      a.lens[i] = (uint8_t) (l < 0 ? 0 : l > d->lk ? d->lk : l);
    }
    a.nslots = (int64_t) nb * d->heads * nchunks;
    const int64_t nunits = (a.nslots + G - 1) / G;
    int rc;
    switch (KC) {
    case 1: rc = launch_staged_nc<1> (ctx, a, nunits, bytes); break;
    case 2: rc = launch_staged_nc<2> (ctx, a, nunits, bytes); break;
    case 3: rc = launch_staged_nc<3> (ctx, a, nunits, bytes); break;
    default: rc = launch_staged_nc<4> (ctx, a, nunits, bytes); break;
    }
    if (rc != KIN_CUDA_OK)
      return rc;
  }
  return KIN_CUDA_OK;
}
