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
//    The running sum stays per lane (the quad's partial sums add up once, at the end).
//  - P·V: the accumulators of the two 8-key fragments 2j, 2j+1, rounded to bf16 pairs, are
//    exactly the A fragment of the 16-key slice j (a0 = S[2j].c0c1, a1 = S[2j].c2c3,
//    a2 = S[2j+1].c0c1, a3 = S[2j+1].c2c3): P never leaves the registers.  O is 2·ND accumulator
//    fragments (16 rows × 8 channels each), rescaled per row by the softmax correction.
//
// Masked keys (past kv_lens, bias −∞) score −∞; a row whose scores are all −∞ so far uses 0 as its
// maximum (no −∞ − −∞); rows without keys give zeros.  The lengths travel as launch parameters
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

struct MmaArgs {
  const float *q, *k, *v;
  float *out;
  int64_t q_stride, kv_stride, out_stride;
  int heads, lq, lk, head_dim;
  float scale;
  const float *bias;  // [heads, lq, lk] or NULL
  int has_lens;       // 0: lk keys for every sequence
  // 8-byte (two-float) accesses allowed: base 8-byte aligned, stride and head_dim even
  int q2, k2, v2, out2;
  int32_t lens[MMA_LENS_MAX];  // sequence b's keys, clamped to [0, lk]
};

struct __align__ (8) MmaF2 {
  float x, y;
};
struct __align__ (8) MmaU2 {
  uint32_t x, y;
};

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

// the two bf16 of a pair as floats (exact)
static __device__ __forceinline__ float
mma_lo (uint32_t w)
{
  const uint32_t u = w << 16;
#ifdef KIN_CUDA_EMULATOR
  float f;
  memcpy (&f, &u, 4);
  return f;
#else
  return __uint_as_float (u);
#endif
}
static __device__ __forceinline__ float
mma_hi (uint32_t w)
{
  const uint32_t u = w & 0xffff0000u;
#ifdef KIN_CUDA_EMULATOR
  float f;
  memcpy (&f, &u, 4);
  return f;
#else
  return __uint_as_float (u);
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
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
#endif
}

// One tile of keys [t0, t0 + MMA_BK) from global memory into the buffer @buf as bf16 (zeros past
// lk and head_dim), by the whole block.
template <int ND>
static __device__ __forceinline__ void
mma_load_tile (uint32_t *buf, const MmaArgs &a, const float *kb, const float *vb, int t0, int lk)
{
  typedef MmaShape<ND> S;
  const int D = a.head_dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint32_t *sK = buf, *sV = buf + S::K_WORDS;

  // K: item = (key j, channel pair cp); consecutive threads take consecutive pairs of a row
  constexpr int NCP = S::DP / 2;
  for (int idx = threadIdx.x; idx < MMA_BK * NCP; idx += MMA_WARPS * 32) {
    const int j = idx / NCP, cp = idx % NCP, c = 2 * cp, key = t0 + j;
    float x0 = 0.0f, x1 = 0.0f;
    if (key < lk && c < D) {
      const float *p = kb + (int64_t) key * a.kv_stride + c;
      if (a.k2) {
        const MmaF2 f = *(const MmaF2 *) p;
        x0 = f.x;
        x1 = f.y;
      } else {
        x0 = p[0];
        x1 = c + 1 < D ? p[1] : 0.0f;
      }
    }
    sK[j * S::LDK + mma_perm (cp)] = mma_pack (x0, x1);
  }

  // V, transposed: a warp takes 8 key pairs (one 16-key slice) × 4 channel pairs; lane = key
  // pair (low 3 bits) + 8 · channel pair, so that the 4 lanes of a key row read 32 contiguous
  // bytes and the stores spread over the banks (at most 2 lanes a bank)
  constexpr int NCHUNK = (MMA_BK / 16) * (S::DP / 8);
  for (int ch = warp; ch < NCHUNK; ch += MMA_WARPS) {
    const int kp = (ch % (MMA_BK / 16)) * 8 + (lane & 7);
    const int cp = (ch / (MMA_BK / 16)) * 4 + (lane >> 3);
    const int key = t0 + 2 * kp, c = 2 * cp;
    float v00 = 0.0f, v01 = 0.0f, v10 = 0.0f, v11 = 0.0f;  // v[key + i][c + j] = vij
    if (c < D) {
      const float *p = vb + (int64_t) key * a.kv_stride + c;
      if (a.v2) {
        if (key < lk) {
          const MmaF2 f = *(const MmaF2 *) p;
          v00 = f.x;
          v01 = f.y;
        }
        if (key + 1 < lk) {
          const MmaF2 f = *(const MmaF2 *) (p + a.kv_stride);
          v10 = f.x;
          v11 = f.y;
        }
      } else {
        const bool c1 = c + 1 < D;
        if (key < lk) {
          v00 = p[0];
          v01 = c1 ? p[1] : 0.0f;
        }
        if (key + 1 < lk) {
          v10 = p[a.kv_stride];
          v11 = c1 ? p[a.kv_stride + 1] : 0.0f;
        }
      }
    }
    const int w = mma_perm (kp);
    sV[c * S::LDV + w] = mma_pack (v00, v10);
    sV[(c + 1) * S::LDV + w] = mma_pack (v01, v11);
  }
}

// One tile for this warp's 16 rows: S = Q·Kᵀ, online softmax, O = O·corr + P·V.  PARTIAL: the
// tile has fewer than MMA_BK keys (nkeys): slices past them are skipped, the rest masked.
template <int ND, bool BIAS, bool PARTIAL>
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
  const float mn0 = fmaxf (m0, mx0), mn1 = fmaxf (m1, mx1);
  const float mu0 = mn0 == -INFINITY ? 0.0f : mn0;  // nothing seen yet: avoid −∞ − −∞
  const float mu1 = mn1 == -INFINITY ? 0.0f : mn1;
  const float corr0 = exp2f (m0 - mu0), corr1 = exp2f (m1 - mu1);
  m0 = mn0;
  m1 = mn1;
#pragma unroll
  for (int nt = 0; nt < 2 * ND; nt++) {
    o[nt][0] *= corr0;
    o[nt][1] *= corr0;
    o[nt][2] *= corr1;
    o[nt][3] *= corr1;
  }

  // P (bf16, in registers as A fragments) · V; the sums are of the rounded p that P·V uses
  float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
  for (int j = 0; j < MMA_BK / 16; j++) {
    if (PARTIAL && j * 16 >= nkeys)
      continue;
    uint32_t pa[4];
    pa[0] = mma_pack (exp2f (s[2 * j][0] - mu0), exp2f (s[2 * j][1] - mu0));
    pa[1] = mma_pack (exp2f (s[2 * j][2] - mu1), exp2f (s[2 * j][3] - mu1));
    pa[2] = mma_pack (exp2f (s[2 * j + 1][0] - mu0), exp2f (s[2 * j + 1][1] - mu0));
    pa[3] = mma_pack (exp2f (s[2 * j + 1][2] - mu1), exp2f (s[2 * j + 1][3] - mu1));
    ps0 += (mma_lo (pa[0]) + mma_hi (pa[0])) + (mma_lo (pa[2]) + mma_hi (pa[2]));
    ps1 += (mma_lo (pa[1]) + mma_hi (pa[1])) + (mma_lo (pa[3]) + mma_hi (pa[3]));
    const uint32_t *vr = sV + g * S::LDV + j * 8 + 2 * t;
#pragma unroll
    for (int nt = 0; nt < 2 * ND; nt++)
      mma_16816 (o[nt], pa, mma_lds64 (vr + nt * 8 * S::LDV));
  }
  l0 = l0 * corr0 + ps0;
  l1 = l1 * corr1 + ps1;
}

// at least 16 warps per multiprocessor up to head_dim 80 (≤ 128 registers); one block beyond
template <int ND, bool BIAS>
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
        float x0 = 0.0f, x1 = 0.0f;
        if (r < a.lq && c < D) {
          const float *p = qb_ + (int64_t) r * a.q_stride + c;
          if (a.q2) {
            const MmaF2 f = *(const MmaF2 *) p;
            x0 = f.x;
            x1 = f.y;
          } else {
            x0 = p[0];
            x1 = c + 1 < D ? p[1] : 0.0f;
          }
        }
        qf[kc][e] = mma_pack (x0 * qs, x1 * qs);
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
    mma_load_tile<ND> (sbuf, a, kb, vb, 0, lk);
  for (int it = 0; it < ntiles; it++) {
    // tile it is in its buffer; every warp is done with tile it − 1 (the other buffer)
    __syncthreads ();
    const int t0 = it * MMA_BK;
    if (it + 1 < ntiles)
      mma_load_tile<ND> (sbuf + ((it + 1) & 1) * S::BUF_WORDS, a, kb, vb, t0 + MMA_BK, lk);
    if (!active)
      continue;
    const uint32_t *buf = sbuf + (it & 1) * S::BUF_WORDS;
    const float *bt0 = BIAS ? b0 + t0 : NULL, *bt1 = BIAS ? b1 + t0 : NULL;
    if (t0 + MMA_BK <= lk)
      mma_tile<ND, BIAS, false> (buf, qf, o, m0, m1, l0, l1, bt0, bt1, MMA_BK);
    else
      mma_tile<ND, BIAS, true> (buf, qf, o, m0, m1, l0, l1, bt0, bt1, lk - t0);
  }
  if (!active)
    return;

  // the rows' sums over their quads; no keys, or all −∞: zeros
  l0 += __shfl_xor_sync (0xffffffffu, l0, 1);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 1);
  l0 += __shfl_xor_sync (0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 2);
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

template <int ND, bool BIAS>
static int
launch_mma (KinCudaCtx *ctx, const MmaArgs &a, int nb)
{
  const size_t bytes = MmaShape<ND>::BYTES;
  if (bytes > 48 * 1024)
    CUDA_TRY (cudaFuncSetAttribute (k_attn_mma<ND, BIAS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) bytes));
  const int nqb = (a.lq + MMA_BQ - 1) / MMA_BQ;
  const unsigned blocks = (unsigned) ((int64_t) nb * a.heads * nqb);
  k_attn_mma<ND, BIAS><<<blocks, MMA_WARPS * 32, bytes, ctx->stream>>> (a, nqb);
  LAUNCH_CHECK ();
  return KIN_CUDA_OK;
}

template <bool BIAS>
static int
launch_mma_d (KinCudaCtx *ctx, const MmaArgs &a, int nb)
{
  switch ((a.head_dim + 15) / 16) {
  case 1: return launch_mma<1, BIAS> (ctx, a, nb);
  case 2: return launch_mma<2, BIAS> (ctx, a, nb);
  case 3: return launch_mma<3, BIAS> (ctx, a, nb);
  case 4: return launch_mma<4, BIAS> (ctx, a, nb);
  case 5: return launch_mma<5, BIAS> (ctx, a, nb);
  case 6: return launch_mma<6, BIAS> (ctx, a, nb);
  case 7: return launch_mma<7, BIAS> (ctx, a, nb);
  default: return launch_mma<8, BIAS> (ctx, a, nb);
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
  memset (&a, 0, sizeof a);
  a.q_stride = d->q_stride;
  a.kv_stride = d->kv_stride;
  a.out_stride = d->out_stride;
  a.heads = d->heads;
  a.lq = d->lq;
  a.lk = d->lk;
  a.head_dim = d->head_dim;
  a.scale = d->scale;
  a.bias = d->bias;
  a.has_lens = d->kv_lens != NULL;
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
    for (int i = 0; a.has_lens && i < nb; i++) {
      const int32_t v = d->kv_lens[b0 + i];
      a.lens[i] = v < 0 ? 0 : v > d->lk ? d->lk : v;
    }
    const int rc = a.bias != NULL ? launch_mma_d<true> (ctx, a, nb) : launch_mma_d<false> (ctx, a, nb);
    if (rc != KIN_CUDA_OK)
      return rc;
  }
  return KIN_CUDA_OK;
}
