// kin-cuda-attention-mma.cu — attention path 6: flash attention on tensor cores through mma.sync
// (head_dim ≤ 128, any lk; bf16 operands, f32 scores, softmax and accumulation).
//
//   out[b, r, h] = Σ_j softmax_j (scale · q[b, r, h] · k[b, j, h] + bias[h, r, j]) · v[b, j, h]
//
// FlashAttention-2 on mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, everything per warp in
// registers.  A block of MMA_WARPS warps takes MMA_BQ query rows of one (b, h), 16 rows per warp;
// head_dim is zero-padded to DP = 16·ND channels.
//
//  - Q: each warp reads its 16 rows once, straight from global memory into A fragments (bf16 of
//    q · scale · log2 e: the scores come out in log2 units, for exp2).
//  - K, V: tiles of MMA_BK keys, rounded to bf16 into shared memory by the whole block, double
//    buffered (the block fills tile i+1 while it computes tile i: one barrier per tile).  K is
//    stored [key][channel], V transposed [channel][key], both with the two 32-bit words of a B
//    fragment (b0: k = 2t, 2t+1; b1: k = 2t+8, 2t+9) side by side, so that a lane loads its B
//    fragment with one 64-bit load (see mma_perm); row strides of 8 (mod 16) words make those
//    loads free of bank conflicts.  Zeros past the keys and past head_dim.
//  - S = Q·Kᵀ: MMA_BK/8 accumulator fragments (16 rows × 8 keys each).  The online softmax runs on
//    them: lane (g, t) holds keys 2t, 2t+1 of every 8-key group for rows g and g+8, so a row's
//    maximum is a max over the lane's values and over the 4 lanes of its quad (two xor shuffles).
//    The reference maximum of the exponentials moves only when some row of the warp would get
//    p > 2^MMA_SLACK (then O and the sums are rescaled); most tiles skip the rescaling.
//  - P·V: the accumulators of the two 8-key fragments 2j, 2j+1, rounded to bf16 pairs, are
//    exactly the A fragment of the 16-key slice j (a0 = S[2j].c0c1, a1 = S[2j].c2c3,
//    a2 = S[2j+1].c0c1, a3 = S[2j+1].c2c3): P never leaves the registers.  O is 2·ND accumulator
//    fragments (16 rows × 8 channels each).
//  - The rows' sums of p: when head_dim is not a multiple of 16 (the model's 72) and there is no
//    bias, the last padding channel of V (DP − 1) is 1, so P·V sums the (rounded) p in that column
//    of O for free; otherwise each lane adds up its p in f32 and the quad adds up at the end.
//
// Masked keys (past kv_lens, bias −∞) score −∞; a row whose scores are all −∞ so far uses 0 as its
// reference (no −∞ − −∞); rows without keys give zeros.  The lengths travel as launch parameters
// (MMA_LENS_MAX sequences per launch): no upload, no synchronisation, graph-capture safe.
//
// In the CPU emulator (KIN_CUDA_EMULATOR) the mma is tools/cuda-emu/inc/mma-sync.h, which applies
// the PTX ISA's lane layouts: a fragment mistake here shows up there as wrong results.

#include "kin-cuda-common.h"

#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#ifdef KIN_CUDA_EMULATOR
#include "mma-sync.h"
#endif

#define MMA_LENS_MAX 64
#ifndef MMA_WARPS
#define MMA_WARPS 8            // warps per block
#endif
#define MMA_BQ (MMA_WARPS * 16)  // query rows per block
#define MMA_BK 64              // keys per tile
#define MMA_LOG2E 1.4426950408889634f
#define MMA_SLACK 8.0f         // log2 of how far p may exceed 1 before the maxima move

struct MmaArgs {
  const float *q, *k, *v;
  float *out;
  int64_t q_stride, kv_stride, out_stride;
  int heads, lq, lk, head_dim;
  float scale;
  const float *bias;  // [heads, lq, lk] or NULL
  int has_lens;       // 0: lk keys for every sequence
  // 8-byte (two-float) accesses allowed: base 8-byte aligned, stride and head_dim even; k4:
  // 16-byte accesses to k (base 16-byte aligned, stride and head_dim multiples of 4)
  int q2, k2, v2, out2, k4;
  int32_t lens[MMA_LENS_MAX];  // sequence b's keys, clamped to [0, lk]
};

struct __align__ (8) MmaF2 {
  float x, y;
};
struct __align__ (8) MmaU2 {
  uint32_t x, y;
};

// Channels c and c+1 (c < D) of the row at @p: one 8-byte load where @pair allows (see q2, k2,
// v2), else two, with zero past head_dim D.
static __device__ __forceinline__ MmaF2
mma_load2 (const float *p, bool pair, int c, int D)
{
  if (pair)
    return *(const MmaF2 *) p;
  MmaF2 f = { p[0], c + 1 < D ? p[1] : 0.0f };
  return f;
}

// Shared memory of k_attn_mma<ND, ...>: two buffers, each
//   sK [MMA_BK][LDK] words   key j's channels as bf16 pairs (word order: mma_perm)
//   sV [DP][LDV] words       channel c's keys as bf16 pairs (V transposed; word order: mma_perm)
template <int ND>
struct MmaShape {
  static constexpr int DP = 16 * ND;
  static constexpr int LDK = ND % 2 ? 8 * ND : 8 * ND + 8;  // ≡ 8 (mod 16)
  static constexpr int LDV = MMA_BK / 2 + 8;                // ≡ 8 (mod 16)
  static constexpr int K_WORDS = MMA_BK * LDK;
  static constexpr int BUF_WORDS = K_WORDS + DP * LDV;
  static constexpr size_t BYTES = (size_t) 2 * BUF_WORDS * 4;
  static_assert (ND >= 1 && ND <= 8, "head_dim ≤ 128");
  static_assert (LDK % 16 == 8 && LDV % 16 == 8, "conflict-free 64-bit fragment loads");
  static_assert (MMA_BK % 16 == 0, "whole 16-key slices");
};

// Word position of bf16 pair p (elements 2p, 2p+1) in a row: within each group of 8 pairs
// (16 elements, one k16 slice), the pairs of a B fragment's b0 (elements 2t, 2t+1) and b1
// (elements 2t+8, 2t+9) sit at words 2t and 2t+1.
static __device__ __forceinline__ int
mma_perm (int p)
{
  return (p & ~7) | ((p & 3) << 1) | ((p >> 2) & 1);
}

// two floats as a bf16 pair: lo in the low 16 bits (the lower column/row index of a fragment)
static __device__ __forceinline__ uint32_t
mma_pack (float lo, float hi)
{
#ifdef KIN_CUDA_EMULATOR
  return (uint32_t) __float2bfloat16_rn (lo).x | ((uint32_t) __float2bfloat16_rn (hi).x << 16);
#else
  __nv_bfloat162 v = __floats2bfloat162_rn (lo, hi);  // .x = lo: the low half
  uint32_t r;
  memcpy (&r, &v, 4);
  return r;
#endif
}

// 2^x (x ≤ MMA_SLACK or −∞ here: results below 2^−126 flush to 0, which a probability can afford)
static __device__ __forceinline__ float
mma_exp2 (float x)
{
#ifdef KIN_CUDA_EMULATOR
  return exp2f (x);
#else
  float y;
  asm ("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

// whether @p holds for some lane of the warp (every lane must call it)
static __device__ __forceinline__ bool
mma_any (bool p)
{
#ifdef KIN_CUDA_EMULATOR
  return emu_any_sync (0xffffffffu, p);
#else
  return __any_sync (0xffffffffu, p);
#endif
}

// a B fragment {b0, b1}: two adjacent words of shared memory
static __device__ __forceinline__ MmaU2
mma_lds64 (const uint32_t *p)
{
#ifdef KIN_CUDA_EMULATOR
  if (((uintptr_t) p & 7) != 0) {
    fprintf (stderr, "emu: mma B fragment load %p not 8-byte aligned\n", (const void *) p);
    abort ();
  }
#endif
  return *(const MmaU2 *) p;
}

// d = A·B + d for one m16n8k16 tile (bf16 A, B; f32 accumulators), the whole warp
static __device__ __forceinline__ void
mma_16816 (float d[4], const uint32_t a[4], MmaU2 b)
{
#ifdef KIN_CUDA_EMULATOR
  const uint32_t bb[2] = { b.x, b.y };
  emu_mma_m16n8k16_bf16 (d, a, bb, d);
#else
  asm ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
       "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
       : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
       : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
#endif
}

// One tile of keys [t0, t0 + MMA_BK) from global memory into the buffer @buf as bf16 (zeros past
// lk and head_dim), by the whole block.  Each thread's items keep their place in the tile from one
// tile to the next (no index arithmetic per item beyond a stride).  ONES: channel DP − 1 of V
// (padding) is 1 for the keys (0 past them), so that P·V sums the probabilities in that column.
template <int ND, bool ONES>
static __device__ __forceinline__ void
mma_load_tile (uint32_t *buf, const MmaArgs &a, const float *kb, const float *vb, int t0, int lk)
{
  typedef MmaShape<ND> S;
  constexpr int NT = MMA_WARPS * 32;
  const int D = a.head_dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint32_t *sK = buf, *sV = buf + S::K_WORDS;
  const int64_t ks = a.kv_stride;

  // K: thread = (channel quad cq, first row r0), then every RP-th row; consecutive threads take
  // consecutive quads of a row (threads past RP·NCQ idle)
  if (a.k4) {
    constexpr int NCQ = S::DP / 4, RP = NT / NCQ, PASSES = (MMA_BK + RP - 1) / RP;
    const int cq = threadIdx.x % NCQ, r0 = threadIdx.x / NCQ, c = 4 * cq;
    if (r0 < RP) {
      const bool cin = c < D;  // head_dim is a multiple of 4: the whole quad
      const float *p = kb + (int64_t) (t0 + r0) * ks + c;
      uint32_t *row = sK + r0 * S::LDK;
      const int w0 = mma_perm (2 * cq), w1 = mma_perm (2 * cq + 1);
#pragma unroll
      for (int i = 0; i < PASSES; i++) {
        const int j = r0 + i * RP;
        if (PASSES * RP > MMA_BK && j >= MMA_BK)
          break;
        float4 x = make_float4 (0.0f, 0.0f, 0.0f, 0.0f);
        if (cin && t0 + j < lk)
          x = *(const float4 *) (p + (int64_t) (i * RP) * ks);
        row[i * RP * S::LDK + w0] = mma_pack (x.x, x.y);
        row[i * RP * S::LDK + w1] = mma_pack (x.z, x.w);
      }
    }
  } else {
    constexpr int NCP = S::DP / 2;
    for (int idx = threadIdx.x; idx < MMA_BK * NCP; idx += NT) {
      const int j = idx / NCP, cp = idx % NCP, c = 2 * cp, key = t0 + j;
      MmaF2 f = { 0.0f, 0.0f };
      if (key < lk && c < D)
        f = mma_load2 (kb + (int64_t) key * ks + c, a.k2, c, D);
      sK[j * S::LDK + mma_perm (cp)] = mma_pack (f.x, f.y);
    }
  }

  // V, transposed: a warp takes 8 key pairs (one 16-key slice) × 4 channel pairs at a time; lane =
  // key pair (low 3 bits) + 8 · channel pair, so that the 4 lanes of a key row read 32 contiguous
  // bytes and the stores spread over the banks (at most 2 lanes a bank).  A warp keeps its slice
  // (warp % KS) and steps through the channels.
  constexpr int KS = MMA_BK / 16, CG = S::DP / 8, STEP = MMA_WARPS / KS;
  constexpr int PASSES = (CG + STEP - 1) / STEP;
  static_assert (MMA_WARPS % KS == 0, "whole slices per pass");
  const int kp = (warp % KS) * 8 + (lane & 7), key = t0 + 2 * kp;
  const bool k0 = key < lk, k1 = key + 1 < lk;
  const int c0 = ((warp / KS) * 4 + (lane >> 3)) * 2;  // first channel pair
  const float *p = vb + (int64_t) key * ks + c0;
  uint32_t *col = sV + c0 * S::LDV + mma_perm (kp);
#pragma unroll
  for (int i = 0; i < PASSES; i++) {
    const int c = c0 + 8 * STEP * i;
    if (CG % STEP != 0 && c >= S::DP)
      break;
    MmaF2 v0 = { 0.0f, 0.0f }, v1 = { 0.0f, 0.0f };  // v[key][c, c+1], v[key + 1][c, c+1]
    if (c < D) {
      const float *pc = p + 8 * STEP * i;
      if (k0)
        v0 = mma_load2 (pc, a.v2, c, D);
      if (k1)
        v1 = mma_load2 (pc + ks, a.v2, c, D);
    }
    if (ONES && c + 1 == S::DP - 1) {  // the ones column (padding: head_dim < DP)
      v0.y = k0 ? 1.0f : 0.0f;
      v1.y = k1 ? 1.0f : 0.0f;
    }
    col[8 * STEP * i * S::LDV] = mma_pack (v0.x, v1.x);
    col[(8 * STEP * i + 1) * S::LDV] = mma_pack (v0.y, v1.y);
  }
}

// One tile for this warp's 16 rows: S = Q·Kᵀ, online softmax, O = O·corr + P·V.  PARTIAL: the
// tile has fewer than MMA_BK keys (nkeys): slices past them are skipped, the rest masked.  ONES:
// the sums of p come out of P·V (column DP − 1 of O), else l0, l1 keep this lane's part.
template <int ND, bool BIAS, bool ONES, bool PARTIAL>
static __device__ __forceinline__ void
mma_tile (const uint32_t *buf, const uint32_t (&qf)[ND][4], float (&o)[2 * ND][4], float &m0,
          float &m1, float &l0, float &l1, const float *b0, const float *b1, int nkeys)
{
  typedef MmaShape<ND> S;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const uint32_t *sK = buf, *sV = buf + S::K_WORDS;
  constexpr int NS = MMA_BK / 8;  // 8-key score fragments

  // scores (log2 units: q carries scale · log2 e)
  float s[NS][4];
#pragma unroll
  for (int n = 0; n < NS; n++) {
    s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
    if (!PARTIAL || n * 8 < nkeys) {
      const uint32_t *kr = sK + (n * 8 + g) * S::LDK + 2 * t;
#pragma unroll
      for (int kc = 0; kc < ND; kc++)
        mma_16816 (s[n], qf[kc], mma_lds64 (kr + kc * 8));
    }
  }
  // bias, mask; the rows' maxima over the tile
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int n = 0; n < NS; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int key = n * 8 + 2 * t + (e & 1);
      float x = s[n][e];
      if (PARTIAL && key >= nkeys)
        x = -INFINITY;
      else if (BIAS)
        x = fmaf ((e < 2 ? b0 : b1)[key], MMA_LOG2E, x);
      s[n][e] = x;
      if (e < 2)
        mx0 = fmaxf (mx0, x);
      else
        mx1 = fmaxf (mx1, x);
    }
  mx0 = fmaxf (mx0, __shfl_xor_sync (0xffffffffu, mx0, 1));
  mx1 = fmaxf (mx1, __shfl_xor_sync (0xffffffffu, mx1, 1));
  mx0 = fmaxf (mx0, __shfl_xor_sync (0xffffffffu, mx0, 2));
  mx1 = fmaxf (mx1, __shfl_xor_sync (0xffffffffu, mx1, 2));
  // The reference maxima m0, m1 move (and O, l are rescaled) only when a row of the warp would
  // otherwise get p > 2^MMA_SLACK; in between p may exceed 1 (harmless in f32 and bf16).  The
  // first finite score always moves them (−∞ + slack = −∞).
  const bool move = mx0 > m0 + MMA_SLACK || mx1 > m1 + MMA_SLACK;
  if (mma_any (move)) {
    const float mn0 = fmaxf (m0, mx0), mn1 = fmaxf (m1, mx1);
    const float corr0 = mma_exp2 (m0 - (mn0 == -INFINITY ? 0.0f : mn0));  // no −∞ − −∞
    const float corr1 = mma_exp2 (m1 - (mn1 == -INFINITY ? 0.0f : mn1));
    m0 = mn0;
    m1 = mn1;
#pragma unroll
    for (int nt = 0; nt < 2 * ND; nt++) {
      o[nt][0] *= corr0;
      o[nt][1] *= corr0;
      o[nt][2] *= corr1;
      o[nt][3] *= corr1;
    }
    if (!ONES) {
      l0 *= corr0;
      l1 *= corr1;
    }
  }
  const float mu0 = m0 == -INFINITY ? 0.0f : m0;  // nothing seen yet: p = 0 for −∞
  const float mu1 = m1 == -INFINITY ? 0.0f : m1;

  // P (bf16, in registers as A fragments) · V
  float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
  for (int j = 0; j < MMA_BK / 16; j++) {
    if (PARTIAL && j * 16 >= nkeys)
      continue;
    float p[2][4];
#pragma unroll
    for (int u = 0; u < 2; u++) {
      p[u][0] = mma_exp2 (s[2 * j + u][0] - mu0);
      p[u][1] = mma_exp2 (s[2 * j + u][1] - mu0);
      p[u][2] = mma_exp2 (s[2 * j + u][2] - mu1);
      p[u][3] = mma_exp2 (s[2 * j + u][3] - mu1);
      if (!ONES) {
        ps0 += p[u][0] + p[u][1];
        ps1 += p[u][2] + p[u][3];
      }
    }
    uint32_t pa[4];
    pa[0] = mma_pack (p[0][0], p[0][1]);
    pa[1] = mma_pack (p[0][2], p[0][3]);
    pa[2] = mma_pack (p[1][0], p[1][1]);
    pa[3] = mma_pack (p[1][2], p[1][3]);
    const uint32_t *vr = sV + g * S::LDV + j * 8 + 2 * t;
#pragma unroll
    for (int nt = 0; nt < 2 * ND; nt++)
      mma_16816 (o[nt], pa, mma_lds64 (vr + nt * 8 * S::LDV));
  }
  if (!ONES) {
    l0 += ps0;
    l1 += ps1;
  }
}

// at least 16 warps per multiprocessor up to head_dim 80 (≤ 128 registers); one block beyond
template <int ND, bool BIAS, bool ONES>
__global__ void __launch_bounds__ (MMA_WARPS * 32, ND <= 5 ? 16 / MMA_WARPS : 1)
k_attn_mma (MmaArgs a, int nqb)
{
  typedef MmaShape<ND> S;
  extern __shared__ float smem[];
  uint32_t *sbuf = (uint32_t *) smem;
  const int D = a.head_dim;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  // blockIdx.x = (b*heads + h)*nqb + qb
  const int qb = (int) (blockIdx.x % nqb);
  const int64_t bh = blockIdx.x / nqb;
  const int h = (int) (bh % a.heads);
  const int64_t b = bh / a.heads;
  const int lk = a.has_lens ? a.lens[b] : a.lk;  // the same for the whole block
  const float *qb_ = a.q + b * a.lq * a.q_stride + (int64_t) h * D;
  const float *kb = a.k + b * a.lk * a.kv_stride + (int64_t) h * D;
  const float *vb = a.v + b * a.lk * a.kv_stride + (int64_t) h * D;
  const int w0 = qb * MMA_BQ + warp * 16;  // the warp's first row
  const int r0 = w0 + g, r1 = r0 + 8;      // this lane's rows
  const bool active = w0 < a.lq;           // (warp-uniform) some of the warp's rows exist

  // this warp's rows of q · scale · log2 e as A fragments (zeros past lq and head_dim)
  uint32_t qf[ND][4];
  {
    const float qs = a.scale * MMA_LOG2E;
#pragma unroll
    for (int kc = 0; kc < ND; kc++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e & 1 ? r1 : r0, c = kc * 16 + 2 * t + (e >> 1) * 8;
        MmaF2 f = { 0.0f, 0.0f };
        if (r < a.lq && c < D)
          f = mma_load2 (qb_ + (int64_t) r * a.q_stride + c, a.q2, c, D);
        qf[kc][e] = mma_pack (f.x * qs, f.y * qs);
      }
  }
  // bias rows (rows past lq read row lq − 1's, in bounds; their results are never written)
  const float *b0 = NULL, *b1 = NULL;
  if (BIAS) {
    const float *bh_ = a.bias + (int64_t) h * a.lq * a.lk;
    b0 = bh_ + (int64_t) (r0 < a.lq ? r0 : a.lq - 1) * a.lk;
    b1 = bh_ + (int64_t) (r1 < a.lq ? r1 : a.lq - 1) * a.lk;
  }

  float o[2 * ND][4];
#pragma unroll
  for (int nt = 0; nt < 2 * ND; nt++)
    o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // l: this lane's part of the sum

  const int ntiles = (lk + MMA_BK - 1) / MMA_BK;
  if (ntiles > 0)
    mma_load_tile<ND, ONES> (sbuf, a, kb, vb, 0, lk);
  for (int it = 0; it < ntiles; it++) {
    // tile it is in its buffer; every warp is done with tile it − 1 (the other buffer)
    __syncthreads ();
    const int t0 = it * MMA_BK;
    if (it + 1 < ntiles)
      mma_load_tile<ND, ONES> (sbuf + ((it + 1) & 1) * S::BUF_WORDS, a, kb, vb, t0 + MMA_BK, lk);
    if (!active)
      continue;
    const uint32_t *buf = sbuf + (it & 1) * S::BUF_WORDS;
    const float *bt0 = BIAS ? b0 + t0 : NULL, *bt1 = BIAS ? b1 + t0 : NULL;
    if (t0 + MMA_BK <= lk)
      mma_tile<ND, BIAS, ONES, false> (buf, qf, o, m0, m1, l0, l1, bt0, bt1, MMA_BK);
    else
      mma_tile<ND, BIAS, ONES, true> (buf, qf, o, m0, m1, l0, l1, bt0, bt1, lk - t0);
  }
  if (!active)
    return;

  // the rows' sums: the ones column of O (ONES) or the quad's parts added up; no keys, or all −∞:
  // zeros
  if (ONES) {
    // column DP − 1: element 1 (row g) and 3 (row g + 8) of the last fragment, on lane t = 3
    // (fixed indices: o stays in registers)
    l0 = __shfl_sync (0xffffffffu, o[2 * ND - 1][1], lane | 3);
    l1 = __shfl_sync (0xffffffffu, o[2 * ND - 1][3], lane | 3);
  } else {
    l0 += __shfl_xor_sync (0xffffffffu, l0, 1);
    l1 += __shfl_xor_sync (0xffffffffu, l1, 1);
    l0 += __shfl_xor_sync (0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync (0xffffffffu, l1, 2);
  }
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  // the valid rows' head_dim channels only (padding channels and other columns of out untouched)
  float *ob = a.out + b * a.lq * a.out_stride + (int64_t) h * D;
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int r = half ? r1 : r0;
    if (r >= a.lq)
      continue;
    const float inv = half ? inv1 : inv0;
    float *orow = ob + (int64_t) r * a.out_stride;
#pragma unroll
    for (int nt = 0; nt < 2 * ND; nt++) {
      const int c = nt * 8 + 2 * t;
      const float x0 = o[nt][2 * half] * inv, x1 = o[nt][2 * half + 1] * inv;
      if (c >= D)
        continue;
      if (a.out2) {
        MmaF2 f;
        f.x = x0;
        f.y = x1;
        *(MmaF2 *) (orow + c) = f;
      } else {
        orow[c] = x0;
        if (c + 1 < D)
          orow[c + 1] = x1;
      }
    }
  }
}

template <int ND, bool BIAS, bool ONES>
static int
launch_mma (KinCudaCtx *ctx, const MmaArgs &a, int nb)
{
  const size_t bytes = MmaShape<ND>::BYTES;
  if (bytes > 48 * 1024)
    CUDA_TRY (cudaFuncSetAttribute (k_attn_mma<ND, BIAS, ONES>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) bytes));
  const int nqb = (a.lq + MMA_BQ - 1) / MMA_BQ;
  const unsigned blocks = (unsigned) ((int64_t) nb * a.heads * nqb);
  k_attn_mma<ND, BIAS, ONES><<<blocks, MMA_WARPS * 32, bytes, ctx->stream>>> (a, nqb);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

// head_dim padded to 16·ND channels; ONES: a padding channel sums the probabilities (kernels with a
// bias do without: fewer kernels to build)
template <bool BIAS, bool ONES>
static int
launch_mma_d (KinCudaCtx *ctx, const MmaArgs &a, int nb)
{
  switch ((a.head_dim + 15) / 16) {
  case 1: return launch_mma<1, BIAS, ONES> (ctx, a, nb);
  case 2: return launch_mma<2, BIAS, ONES> (ctx, a, nb);
  case 3: return launch_mma<3, BIAS, ONES> (ctx, a, nb);
  case 4: return launch_mma<4, BIAS, ONES> (ctx, a, nb);
  case 5: return launch_mma<5, BIAS, ONES> (ctx, a, nb);
  case 6: return launch_mma<6, BIAS, ONES> (ctx, a, nb);
  case 7: return launch_mma<7, BIAS, ONES> (ctx, a, nb);
  default: return launch_mma<8, BIAS, ONES> (ctx, a, nb);
  }
}

// 8-byte accesses to row r's channels c, c+1 (c even) of a head: base aligned, strides even
static inline int
pairs_ok (const float *base, int64_t stride, int head_dim)
{
  return ((uintptr_t) base & 7) == 0 && (stride & 1) == 0 && (head_dim & 1) == 0;
}

int
kin_cuda_attention_mma (KinCudaCtx *ctx, const KinCudaAttention *d)
{
  if (d->batch <= 0 || d->heads <= 0 || d->lq <= 0 || d->lk <= 0 || d->head_dim <= 0)
    return BAD_INPUT ("attention: empty dimensions");
  if (d->head_dim > 128)
    return BAD_INPUT ("attention path 6: head_dim %d > 128", d->head_dim);
  const int64_t per_seq = (int64_t) d->heads * ((d->lq + MMA_BQ - 1) / MMA_BQ);  // blocks
  if (per_seq > INT32_MAX)
    return BAD_INPUT ("attention path 6: %d heads × %d rows too many blocks", d->heads, d->lq);

  MmaArgs a;
  kin_attn_args_init (a, d);
  // sequences per launch: every one without kv_lens, MMA_LENS_MAX with them; a grid fits in int
  int64_t chunk = a.has_lens ? MMA_LENS_MAX : d->batch;
  if (chunk * per_seq > INT32_MAX)
    chunk = INT32_MAX / per_seq;
  for (int b0 = 0; b0 < d->batch; b0 += (int) chunk) {
    const int nb = d->batch - b0 < chunk ? d->batch - b0 : (int) chunk;
    a.q = d->q + (int64_t) b0 * d->lq * d->q_stride;
    a.k = d->k + (int64_t) b0 * d->lk * d->kv_stride;
    a.v = d->v + (int64_t) b0 * d->lk * d->kv_stride;
    a.out = d->out + (int64_t) b0 * d->lq * d->out_stride;
    a.q2 = pairs_ok (a.q, a.q_stride, a.head_dim);
    a.k2 = pairs_ok (a.k, a.kv_stride, a.head_dim);
    a.v2 = pairs_ok (a.v, a.kv_stride, a.head_dim);
    a.out2 = pairs_ok (a.out, a.out_stride, a.head_dim);
    a.k4 = ((uintptr_t) a.k & 15) == 0 && (a.kv_stride & 3) == 0 && (a.head_dim & 3) == 0;
    for (int i = 0; a.has_lens && i < nb; i++) {
      const int32_t v = d->kv_lens[b0 + i];
      a.lens[i] = v < 0 ? 0 : v > d->lk ? d->lk : v;
    }
    const int rc = a.bias != NULL       ? launch_mma_d<true, false> (ctx, a, nb)
                   : a.head_dim % 16 != 0 ? launch_mma_d<false, true> (ctx, a, nb)
                                          : launch_mma_d<false, false> (ctx, a, nb);
    if (rc != KIN_CUDA_OK)
      return rc;
  }
  return KIN_CUDA_OK;
}
