// kin-cuda-attention.cu — multi-head attention (CPU twin: cpu_attention).
//
//   out[b, r, h] = Σ_j softmax_j (scale · q[b, r, h] · k[b, j, h] + bias[h, r, j]) · v[b, j, h]
//
// over keys j < kv_lens[b] (all lk without kv_lens); a row without keys, or whose scores are all
// −∞, is zero.  Six paths, chosen by head_dim, lk and KIN_CUDA_OPT_FAST_ATTENTION
// (KIN_CUDA_OPT_ATTENTION can force one; KIN_CUDA_ATTENTION=N in the engine):
//
//  1. short: lk ≤ 64, head_dim ≤ 128 (temporal attention: keys = frames).  One warp per query
//     row; lane j holds the score of keys j and j+32; exact two-pass softmax.
//  2. flash: head_dim ≤ 128, any lk.  A block of 4 warps takes 16 query rows of one (b, h); tiles
//     of 32 keys and values go through shared memory; each warp keeps its rows' running max,
//     running sum and output accumulator in registers (online softmax), lane = key for the
//     scores and lane = output channel for the accumulation.
//  3. gemm: any head_dim (the VAE's single 512-channel head).  Scores of a band of query rows
//     for all heads with one strided-batched cuBLAS call, a masked softmax kernel, then P·V with
//     a second call.  The band is sized to the scratch budget.
//  4. tensor-core flash (WMMA): head_dim ≤ 128, any lk.  A block of 8 warps takes 128 query rows
//     of one (b, h), 16 per warp; q, k and v are rounded to bf16 into shared memory (head_dim
//     zero-padded to a multiple of 16), tiles of 64 keys.  Per tile each warp computes its 16×64
//     scores with WMMA (bf16 operands, f32 accumulation), goes through them in f32 in shared
//     memory for the online softmax (two lanes per row), writes the probabilities as bf16 and
//     accumulates P·V into f32 accumulator fragments, which the row's correction factor rescales.
//  5. short, staged (kin-cuda-attention-short.cu): lk ≤ 64, head_dim ≤ 128, f32; the sequence's
//     K, V and query rows go through shared memory once (cp.async), every value read once.
//  6. tensor-core flash on mma.sync (kin-cuda-attention-mma.cu): head_dim ≤ 128, any lk; scores
//     and probabilities stay in registers (FlashAttention-2 style), bf16 operands.
//
// Auto: head_dim > 128 → 3; lk ≤ 64 → 5; otherwise 6, or 2 when KIN_CUDA_OPT_FAST_ATTENTION is 0
// (f32 weights: the golden cases).  Paths 4 and 6 are a few 1e-3 relative from the CPU (bf16
// operands); paths 1, 2, 3 and 5 are f32 throughout and agree to ~1e-6.
//
// Measured on an H100 (ms per call, KIN_CUDA_PROFILE=1 bench stdit; path 2 in an earlier run on
// the same kind of card, the others in one run):
//                                                     path 1   path 2   path 4   path 5   path 6
//   spatial  batch 32, 16 heads, 1024 × 1024, hd 72       —     25.9     2.57       —     1.68
//   cross    batch 2, 16 heads, 16384 × 200 (lens)        —      3.30     0.48       —     0.33
//   temporal batch 2048, 16 heads, 16 × 16              1.20     1.10     1.58     0.23     1.54

#include "kin-cuda-common.h"
#include "kin-cuda-reduce.h"

#include <cuda_bf16.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

// What auto picks for short key sequences (lk ≤ 64) and, when attention may be bf16, for the
// others (see the top of the file; chosen by measurements on an H100)
#define KIN_ATTN_AUTO_SHORT 5
#define KIN_ATTN_AUTO_FAST 6

// Key lengths travel in the launch parameters, up to this many sequences per launch (calls with
// more sequences and kv_lens are split into launches of at most this many): no device copy of
// the lengths, no upload, no synchronisation, and a graph capture records them with the launch.
#define ATTN_LENS_MAX 64

struct AttnArgs {
  const float *q, *k, *v;
  float *out;
  int64_t q_stride, kv_stride, out_stride;
  int heads, lq, lk, head_dim;
  float scale;
  const float *bias;    // [heads, lq, lk] or NULL
  int has_lens;         // 0: lk keys for every sequence
  int32_t lens[ATTN_LENS_MAX];  // sequence b's keys, clamped to [0, lk]
};

// --- 1. short sequences ---

#define SHORT_WARPS 4

template <int NC>  // NC = ceil(head_dim / 32): output channels per lane
__global__ void __launch_bounds__ (SHORT_WARPS * 32)
k_attn_short (AttnArgs a, int64_t items)
{
  const int lane = threadIdx.x & 31, D = a.head_dim;
  const int64_t item = (int64_t) blockIdx.x * SHORT_WARPS + (threadIdx.x >> 5);
  if (item >= items)  // the whole warp leaves; this kernel has no block-wide barrier
    return;
  // item = (b*heads + h)*lq + row
  const int row = (int) (item % a.lq);
  const int64_t bh = item / a.lq;
  const int h = (int) (bh % a.heads);
  const int64_t b = bh / a.heads;
  const int lk = a.has_lens ? a.lens[b] : a.lk;

  const float *qr = a.q + (b * a.lq + row) * a.q_stride + (int64_t) h * D;
  const float *kb = a.k + b * a.lk * a.kv_stride + (int64_t) h * D;
  const float *vb = a.v + b * a.lk * a.kv_stride + (int64_t) h * D;
  float qv[NC];
#pragma unroll
  for (int c = 0; c < NC; c++) {
    int e = lane + 32 * c;
    qv[c] = e < D ? qr[e] : 0.0f;
  }

  // scores: key j's lands in lane j%32, in s0 (j < 32) or s1 (j ≥ 32)
  float s0 = -INFINITY, s1 = -INFINITY;
  for (int j = 0; j < lk; j++) {
    const float *kr = kb + (int64_t) j * a.kv_stride;
    float part = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int e = lane + 32 * c;
      if (e < D)
        part += qv[c] * kr[e];
    }
    float s = kin_warp_sum (part) * a.scale;
    if (a.bias)
      s += a.bias[((int64_t) h * a.lq + row) * a.lk + j];
    if (lane == (j & 31)) {
      if (j < 32)
        s0 = s;
      else
        s1 = s;
    }
  }

  float mx = kin_warp_max (fmaxf (s0, s1));
  float muse = mx == -INFINITY ? 0.0f : mx;  // all masked: every p is exp(−∞) = 0
  float p0 = expf (s0 - muse), p1 = expf (s1 - muse);
  float sum = kin_warp_sum (p0 + p1);
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

  float acc[NC];
#pragma unroll
  for (int c = 0; c < NC; c++)
    acc[c] = 0.0f;
  for (int j = 0; j < lk; j++) {
    float pj = __shfl_sync (KIN_FULL_MASK, j < 32 ? p0 : p1, j & 31);
    const float *vr = vb + (int64_t) j * a.kv_stride;
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int e = lane + 32 * c;
      if (e < D)
        acc[c] += pj * vr[e];
    }
  }
  float *orow = a.out + (b * a.lq + row) * a.out_stride + (int64_t) h * D;
#pragma unroll
  for (int c = 0; c < NC; c++) {
    int e = lane + 32 * c;
    if (e < D)
      orow[e] = acc[c] * inv;
  }
}

// --- 2. flash ---

#define FA_WARPS 4
#define FA_ROWS 4                     // query rows per warp
#define FA_BQ (FA_WARPS * FA_ROWS)    // query rows per block
#define FA_BK 32                      // keys per tile (one per lane)

static size_t
flash_smem_bytes (int d)
{
  // sQ [FA_BQ][d], sK [FA_BK][d+1] (padded: lane = key reads a column without bank conflicts),
  // sV [FA_BK][d]
  return ((size_t) FA_BQ * d + (size_t) FA_BK * (d + 1) + (size_t) FA_BK * d) * sizeof (float);
}

template <int NC>
__global__ void __launch_bounds__ (FA_WARPS * 32)
k_attn_flash (AttnArgs a, int nqb)
{
  extern __shared__ float smem[];
  const int D = a.head_dim;
  float *sQ = smem;
  float *sK = sQ + FA_BQ * D;
  float *sV = sK + FA_BK * (D + 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  // blockIdx.x = (b*heads + h)*nqb + qb
  const int qb = (int) (blockIdx.x % nqb);
  const int64_t bh = blockIdx.x / nqb;
  const int h = (int) (bh % a.heads);
  const int64_t b = bh / a.heads;
  const int q0 = qb * FA_BQ;
  const int lk = a.has_lens ? a.lens[b] : a.lk;  // the same for the whole block

  for (int idx = threadIdx.x; idx < FA_BQ * D; idx += blockDim.x) {
    int r = idx / D, e = idx % D, row = q0 + r;
    sQ[idx] = row < a.lq ? a.q[(b * a.lq + row) * a.q_stride + (int64_t) h * D + e] : 0.0f;
  }

  float m[FA_ROWS], l[FA_ROWS], acc[FA_ROWS][NC];
#pragma unroll
  for (int rr = 0; rr < FA_ROWS; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; c++)
      acc[rr][c] = 0.0f;
  }

  for (int t0 = 0; t0 < lk; t0 += FA_BK) {
    __syncthreads ();  // sQ is loaded; the previous tile is consumed
    for (int idx = threadIdx.x; idx < FA_BK * D; idx += blockDim.x) {
      int j = idx / D, e = idx % D, key = t0 + j;
      float kv = 0.0f, vv = 0.0f;
      if (key < lk) {
        int64_t off = (b * a.lk + key) * a.kv_stride + (int64_t) h * D + e;
        kv = a.k[off];
        vv = a.v[off];
      }
      sK[j * (D + 1) + e] = kv;
      sV[j * D + e] = vv;
    }
    __syncthreads ();

    const int key = t0 + lane;
#pragma unroll
    for (int rr = 0; rr < FA_ROWS; rr++) {
      const int rl = warp * FA_ROWS + rr, row = q0 + rl;
      if (row >= a.lq)  // the same for the whole warp
        continue;
      float s = -INFINITY;
      if (key < lk) {
        const float *qrow = sQ + rl * D, *krow = sK + lane * (D + 1);
        float dot = 0.0f;
        for (int e = 0; e < D; e++)
          dot += qrow[e] * krow[e];
        s = dot * a.scale;
        if (a.bias)
          s += a.bias[((int64_t) h * a.lq + row) * a.lk + key];
      }
      float mnew = fmaxf (m[rr], kin_warp_max (s));
      float muse = mnew == -INFINITY ? 0.0f : mnew;  // nothing seen yet: avoid −∞ − −∞
      float corr = expf (m[rr] - muse);
      float p = expf (s - muse);
      l[rr] = l[rr] * corr + kin_warp_sum (p);
      m[rr] = mnew;
#pragma unroll
      for (int c = 0; c < NC; c++)
        acc[rr][c] *= corr;
      for (int j = 0; j < FA_BK; j++) {
        float pj = __shfl_sync (KIN_FULL_MASK, p, j);
        const float *vrow = sV + j * D;
#pragma unroll
        for (int c = 0; c < NC; c++) {
          int e = lane + 32 * c;
          if (e < D)
            acc[rr][c] += pj * vrow[e];
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < FA_ROWS; rr++) {
    const int row = q0 + warp * FA_ROWS + rr;
    if (row >= a.lq)
      continue;
    float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
    float *orow = a.out + (b * a.lq + row) * a.out_stride + (int64_t) h * D;
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int e = lane + 32 * c;
      if (e < D)
        orow[e] = acc[rr][c] * inv;
    }
  }
}

// --- 4. tensor-core flash ---

#ifndef TC_WARPS
#define TC_WARPS 8             // warps per block (8 measured ~15 % faster than 4 on an H100)
#endif
#define TC_BQ (TC_WARPS * 16)  // query rows per block: 16 per warp (one WMMA row of tiles)
#define TC_BK 64               // keys per tile
#define TC_LDS (TC_BK + 4)     // row stride of the f32 scores (floats)
#define TC_LDP (TC_BK + 8)     // row stride of the bf16 probabilities (elements)
#define TC_LOG2E 1.4426950408889634f

// Shared memory of k_attn_tc<ND> (head_dim zero-padded to DP = 16·ND channels), in this order
// from a 128-byte aligned base (every part a multiple of 128 bytes long):
//   sK, sV [TC_BK][LDH] bf16    the tile's keys and values (zeros past lk and head_dim)
//   sS     [TC_BQ][TC_LDS] f32  scores, 16 rows per warp; before the key loop: the Q tile,
//                               [TC_BQ][LDH] bf16
//   sP     [TC_BQ][TC_LDP] bf16 probabilities; before the key loop: a 16×16 f32 matrix of row
//                               numbers (reading it into an accumulator fragment tells each
//                               lane which row each of its elements is in)
//   sRow   [TC_BQ] f32          per row: the tile's correction factor; at the end 1/l
// After the key loop the output tile, [TC_BQ][LDO] f32, overlays sK, sV, sS and sP.
// Row strides are padded by 16 bytes (LDH = DP + 8, LDO = DP + 4): WMMA needs a multiple of 16
// bytes, and the 16-byte shift per row spreads a fragment's rows over the banks.
template <int ND>
struct TcShape {
  static constexpr int DP = 16 * ND;
  static constexpr int LDH = DP + 8;
  static constexpr int LDO = DP + 4;
  static constexpr int KV_BYTES = TC_BK * LDH * 2;
  static constexpr int S_BYTES = TC_BQ * TC_LDS * 4;
  static constexpr int P_BYTES = TC_BQ * TC_LDP * 2;
  static constexpr int ROW_BYTES = TC_BQ * 4;
  static constexpr int BYTES = 2 * KV_BYTES + S_BYTES + P_BYTES + ROW_BYTES;
  static_assert (ND >= 1 && ND <= 8, "head_dim ≤ 128");
  static_assert (TC_BQ * LDH * 2 <= S_BYTES, "the Q tile fits where the scores go");
  static_assert (16 * 16 * 4 <= P_BYTES, "the row-number matrix fits where P goes");
  static_assert (TC_BQ * LDO * 4 <= 2 * KV_BYTES + S_BYTES + P_BYTES, "the output tile fits");
  static_assert (KV_BYTES % 128 == 0 && S_BYTES % 128 == 0 && P_BYTES % 128 == 0, "alignment");
};

// four f32 as bf16 at @p (8-byte aligned), one 8-byte store
struct __align__ (8) TcBf16x4 {
  __nv_bfloat16 v[4];
};
static __device__ __forceinline__ void
tc_store4 (__nv_bfloat16 *p, float4 x)
{
  TcBf16x4 t;
  t.v[0] = __float2bfloat16_rn (x.x);
  t.v[1] = __float2bfloat16_rn (x.y);
  t.v[2] = __float2bfloat16_rn (x.z);
  t.v[3] = __float2bfloat16_rn (x.w);
  *(TcBf16x4 *) p = t;
}

// Row r's scores of the tile in log2 units: scale·q·k·log2(e) (+ bias·log2(e)); −∞ past the keys.
// Lanes 2r and 2r+1 take the even and the odd columns: at step i = 0, 1, …, 31 column 2i + ce
// for even i, 2i + co for odd i.  Rows 0–7 use ce = co = lane & 1; rows 8–15 swap the column
// pairs of steps i and i+1 (ce = (lane & 1) + 2, co = (lane & 1) − 2), because rows r and r + 8
// lie 8·TC_LDS words apart, a multiple of 32 banks: this way the 32 lanes read 32 different banks
// at every step (row r starts at bank 4r mod 32).
template <bool BIAS>
static __device__ __forceinline__ float
tc_score (const float *srow, const float *btile, int c, int nkeys, float sl2)
{
  if (c >= nkeys)
    return -INFINITY;
  return BIAS ? fmaf (srow[c], sl2, btile[c] * TC_LOG2E) : srow[c] * sl2;
}

// the maximum over this lane's columns of row r
template <bool BIAS>
static __device__ __forceinline__ float
tc_row_max (const float *srow, const float *btile, int nkeys, float sl2, int ce, int co)
{
  float mt = -INFINITY;
#pragma unroll 8
  for (int i = 0; i < TC_BK / 2; i++)
    mt = fmaxf (mt, tc_score<BIAS> (srow, btile, 2 * i + (i & 1 ? co : ce), nkeys, sl2));
  return mt;
}

// p = 2^(score − muse) as bf16 into row r of P, for this lane's columns; returns their sum (of the
// rounded values: what P·V will use)
template <bool BIAS>
static __device__ __forceinline__ float
tc_row_exp (const float *srow, const float *btile, __nv_bfloat16 *prow, int nkeys, float sl2,
            float muse, int ce, int co)
{
  float sum = 0.0f;
#pragma unroll 8
  for (int i = 0; i < TC_BK / 2; i++) {
    const int c = 2 * i + (i & 1 ? co : ce);
    const __nv_bfloat16 p = __float2bfloat16_rn (exp2f (tc_score<BIAS> (srow, btile, c, nkeys, sl2) - muse));
    prow[c] = p;
    sum += __bfloat162float (p);
  }
  return sum;
}

// dynamic shared memory to ask for: the layout plus slack for aligning its base
template <int ND>
static size_t
tc_smem_bytes (void)
{
  return (size_t) TcShape<ND>::BYTES + 128;
}

// at least 16 warps per multiprocessor up to head_dim 80 (≤ 128 registers; 8 warps: 2 blocks,
// 2 × 76 KB of shared memory for head_dim 72); for larger head_dim (more accumulators) ≥ 12
// warps with 4 warps a block, registers unbounded with 8 (1 block)
template <int ND>
__global__ void __launch_bounds__ (TC_WARPS * 32, (ND <= 5 ? 16 : 12) / TC_WARPS)
k_attn_tc (AttnArgs a, int nqb)
{
  using namespace nvcuda;
  typedef TcShape<ND> S;
  typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;
  extern __shared__ float smem[];
  // WMMA wants 256-bit aligned tile addresses: align the base (the parts keep it)
  char *base = (char *) (((uintptr_t) smem + 127) & ~(uintptr_t) 127);
  __nv_bfloat16 *sK = (__nv_bfloat16 *) base;
  __nv_bfloat16 *sV = (__nv_bfloat16 *) (base + S::KV_BYTES);
  float *sS = (float *) (base + 2 * S::KV_BYTES);
  __nv_bfloat16 *sP = (__nv_bfloat16 *) (base + 2 * S::KV_BYTES + S::S_BYTES);
  float *sRow = (float *) (base + 2 * S::KV_BYTES + S::S_BYTES + S::P_BYTES);
  __nv_bfloat16 *sQ = (__nv_bfloat16 *) sS;  // before the key loop
  float *sIdx = (float *) sP;                // before the key loop
  float *sO = (float *) base;                // after the key loop

  const int D = a.head_dim;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // blockIdx.x = (b*heads + h)*nqb + qb
  const int qb = (int) (blockIdx.x % nqb);
  const int64_t bh = blockIdx.x / nqb;
  const int h = (int) (bh % a.heads);
  const int64_t b = bh / a.heads;
  const int q0 = qb * TC_BQ;
  const int lk = a.has_lens ? a.lens[b] : a.lk;  // the same for the whole block
  const float *qb_ = a.q + b * a.lq * a.q_stride + (int64_t) h * D;
  const float *kb = a.k + b * a.lk * a.kv_stride + (int64_t) h * D;
  const float *vb = a.v + b * a.lk * a.kv_stride + (int64_t) h * D;

  // loads by float4 when every row of q (resp. k and v) starts 16-byte aligned and head_dim is a
  // multiple of 4 (then a group of 4 channels is all inside head_dim or all padding)
  const bool q4 = ((D | a.q_stride) & 3) == 0 && ((uintptr_t) qb_ & 15) == 0;
  const bool kv4 = ((D | a.kv_stride) & 3) == 0 && (((uintptr_t) kb | (uintptr_t) vb) & 15) == 0;

  // the Q tile as bf16 (zeros past lq and head_dim), the row-number matrix
  if (q4) {
    for (int idx = threadIdx.x; idx < TC_BQ * S::DP / 4; idx += TC_WARPS * 32) {
      const int r = idx / (S::DP / 4), e = idx % (S::DP / 4) * 4, row = q0 + r;
      float4 x = make_float4 (0.0f, 0.0f, 0.0f, 0.0f);
      if (row < a.lq && e < D)
        x = *(const float4 *) (qb_ + (int64_t) row * a.q_stride + e);
      tc_store4 (sQ + r * S::LDH + e, x);
    }
  } else {
    for (int idx = threadIdx.x; idx < TC_BQ * S::DP; idx += TC_WARPS * 32) {
      const int r = idx / S::DP, e = idx % S::DP, row = q0 + r;
      const float x = row < a.lq && e < D ? qb_[(int64_t) row * a.q_stride + e] : 0.0f;
      sQ[r * S::LDH + e] = __float2bfloat16_rn (x);
    }
  }
  for (int idx = threadIdx.x; idx < 256; idx += TC_WARPS * 32)
    sIdx[idx] = (float) (idx >> 4);
  __syncthreads ();

  // this warp's 16 query rows as A fragments, kept for the whole loop
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf[ND];
#pragma unroll
  for (int kt = 0; kt < ND; kt++)
    wmma::load_matrix_sync (qf[kt], sQ + warp * 16 * S::LDH + kt * 16, S::LDH);
  // which of the warp's 16 rows each accumulator element of this lane belongs to (the same
  // mapping for every accumulator fragment of this type; no layout is assumed)
  int rowof[Acc::num_elements];
  {
    Acc idxf;
    wmma::load_matrix_sync (idxf, sIdx, 16, wmma::mem_row_major);
#pragma unroll
    for (int i = 0; i < Acc::num_elements; i++)
      rowof[i] = (int) idxf.x[i];
  }
  Acc of[ND];  // the unnormalised output, rows × DP channels
#pragma unroll
  for (int nt = 0; nt < ND; nt++)
    wmma::fill_fragment (of[nt], 0.0f);
  // sQ and sIdx are overwritten (scores, probabilities) only after the loop's first barrier,
  // which every warp reaches after reading them

  // softmax: lanes 2r and 2r+1 share row r of the warp's 16 (see tc_row_max for the columns)
  const int r = lane >> 1, odd = lane & 1;
  const int ce = odd + (r >> 3) * 2, co = odd - (r >> 3) * 2;
  const int row = q0 + warp * 16 + r;
  // bias row (rows past lq read row lq − 1's, in bounds; their results are never written)
  const float *brow = a.bias != NULL
                          ? a.bias + ((int64_t) h * a.lq + (row < a.lq ? row : a.lq - 1)) * a.lk
                          : NULL;
  const float sl2 = a.scale * TC_LOG2E;  // scores in log2 units: exp2 instead of exp
  float *sSw = sS + warp * 16 * TC_LDS;
  __nv_bfloat16 *sPw = sP + warp * 16 * TC_LDP;
  float *sRw = sRow + warp * 16;
  const float *srow = sSw + r * TC_LDS;
  __nv_bfloat16 *prow = sPw + r * TC_LDP;
  float m = -INFINITY, l = 0.0f;  // running max (log2 units) and sum of row r

  for (int t0 = 0; t0 < lk; t0 += TC_BK) {
    __syncthreads ();  // every warp is done with the previous tile (and with sQ, sIdx)
    if (kv4) {
      for (int idx = threadIdx.x; idx < TC_BK * S::DP / 4; idx += TC_WARPS * 32) {
        const int j = idx / (S::DP / 4), e = idx % (S::DP / 4) * 4, key = t0 + j;
        float4 kx = make_float4 (0.0f, 0.0f, 0.0f, 0.0f), vx = kx;
        if (key < lk && e < D) {
          const int64_t off = (int64_t) key * a.kv_stride + e;
          kx = *(const float4 *) (kb + off);
          vx = *(const float4 *) (vb + off);
        }
        tc_store4 (sK + j * S::LDH + e, kx);
        tc_store4 (sV + j * S::LDH + e, vx);
      }
    } else {
      for (int idx = threadIdx.x; idx < TC_BK * S::DP; idx += TC_WARPS * 32) {
        const int j = idx / S::DP, e = idx % S::DP, key = t0 + j;
        float kx = 0.0f, vx = 0.0f;
        if (key < lk && e < D) {
          const int64_t off = (int64_t) key * a.kv_stride + e;
          kx = kb[off];
          vx = vb[off];
        }
        sK[j * S::LDH + e] = __float2bfloat16_rn (kx);
        sV[j * S::LDH + e] = __float2bfloat16_rn (vx);
      }
    }
    __syncthreads ();
    const int nkeys = lk - t0 < TC_BK ? lk - t0 : TC_BK;
    const int nsub = (nkeys + 15) / 16;  // 16-key column tiles holding keys (block-uniform)

    // S = Q·Kᵀ for the warp's 16 rows (column tiles past the keys are left out: masked below)
    for (int nt = 0; nt < nsub; nt++) {
      Acc sf;
      wmma::fill_fragment (sf, 0.0f);
#pragma unroll
      for (int kt = 0; kt < ND; kt++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
        wmma::load_matrix_sync (kf, sK + nt * 16 * S::LDH + kt * 16, S::LDH);
        wmma::mma_sync (sf, qf[kt], kf, sf);
      }
      wmma::store_matrix_sync (sSw + nt * 16, sf, TC_LDS, wmma::mem_row_major);
    }
    __syncwarp ();  // the scores are visible to every lane of the warp

    // online softmax of row r over this tile, in f32
    const float *btile = brow != NULL ? brow + t0 : NULL;
    float mt = btile != NULL ? tc_row_max<true> (srow, btile, nkeys, sl2, ce, co)
                             : tc_row_max<false> (srow, btile, nkeys, sl2, ce, co);
    mt = fmaxf (mt, __shfl_xor_sync (KIN_FULL_MASK, mt, 1));
    const float mnew = fmaxf (m, mt);
    const float muse = mnew == -INFINITY ? 0.0f : mnew;  // nothing seen yet: avoid −∞ − −∞
    const float corr = exp2f (m - muse);
    float sum = btile != NULL ? tc_row_exp<true> (srow, btile, prow, nkeys, sl2, muse, ce, co)
                              : tc_row_exp<false> (srow, btile, prow, nkeys, sl2, muse, ce, co);
    sum += __shfl_xor_sync (KIN_FULL_MASK, sum, 1);
    l = l * corr + sum;
    m = mnew;
    if (odd == 0)
      sRw[r] = corr;
    __syncwarp ();  // P and the correction factors are visible to every lane of the warp

    // O = O·corr (per row) + P·V
    {
      float cr[Acc::num_elements];
#pragma unroll
      for (int i = 0; i < Acc::num_elements; i++)
        cr[i] = sRw[rowof[i]];
#pragma unroll
      for (int nt = 0; nt < ND; nt++)
#pragma unroll
        for (int i = 0; i < Acc::num_elements; i++)
          of[nt].x[i] *= cr[i];
    }
    for (int kt = 0; kt < nsub; kt++) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf;
      wmma::load_matrix_sync (pf, sPw + kt * 16, TC_LDP);
#pragma unroll
      for (int nt = 0; nt < ND; nt++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
        wmma::load_matrix_sync (vf, sV + kt * 16 * S::LDH + nt * 16, S::LDH);
        wmma::mma_sync (of[nt], pf, vf, of[nt]);
      }
    }
  }

  __syncthreads ();  // every warp is done with sK, sV, sS and sP: the output tile goes there
  if (odd == 0)
    sRw[r] = l > 0.0f ? 1.0f / l : 0.0f;  // no keys, or all −∞: zeros
#pragma unroll
  for (int nt = 0; nt < ND; nt++)
    wmma::store_matrix_sync (sO + warp * 16 * S::LDO + nt * 16, of[nt], S::LDO, wmma::mem_row_major);
  __syncthreads ();
  // the valid rows' head_dim channels only (padding channels and other columns of out untouched)
  float *ob = a.out + b * a.lq * a.out_stride + (int64_t) h * D;
  for (int idx = threadIdx.x; idx < TC_BQ * D; idx += TC_WARPS * 32) {
    const int rr = idx / D, e = idx % D, orow = q0 + rr;
    if (orow < a.lq)
      ob[(int64_t) orow * a.out_stride + e] = sO[rr * S::LDO + e] * sRow[rr];
  }
}

template <int ND>
static int
launch_tc (KinCudaCtx *ctx, const AttnArgs &a, int batch)
{
  const size_t bytes = tc_smem_bytes<ND> ();
  if (bytes > 48 * 1024)
    CUDA_TRY (cudaFuncSetAttribute (k_attn_tc<ND>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) bytes));
  const int nqb = (a.lq + TC_BQ - 1) / TC_BQ;
  const unsigned blocks = (unsigned) ((int64_t) batch * a.heads * nqb);
  k_attn_tc<ND><<<blocks, TC_WARPS * 32, bytes, ctx->stream>>> (a, nqb);
  return KIN_CUDA_OK;
}

static inline int
clamp_len (int32_t v, int lk)
{
  return v < 0 ? 0 : v > lk ? lk : v;
}

// --- 3. cuBLAS + masked softmax ---

#define SM_THREADS 256

// Rows of s: (h, r) for h < heads, r < nr, at s + (h*nr + r)*ld; len valid entries each.
// bias row of (h, r): bias + h*bias_hstride + r*ld.  In place; entries ≥ len are not touched.
__global__ void
k_attn_softmax (float *s, int nr, int64_t ld, int len, const float *bias, int64_t bias_hstride)
{
  __shared__ double red[32];
  __shared__ float redf[32];
  const int64_t h = blockIdx.x / nr, r = blockIdx.x % nr;
  float *row = s + (int64_t) blockIdx.x * ld;
  const float *brow = bias ? bias + h * bias_hstride + r * ld : NULL;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    float v = row[j] + (brow ? brow[j] : 0.0f);
    row[j] = v;
    mx = v > mx ? v : mx;
  }
  mx = kin_block_max (mx, redf);
  if (mx == -INFINITY) {
    for (int j = threadIdx.x; j < len; j += blockDim.x)
      row[j] = 0.0f;
    return;
  }
  double sum = 0;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    float e = expf (row[j] - mx);
    row[j] = e;
    sum += e;
  }
  float inv = (float) (1.0 / kin_block_sum (sum, red));
  for (int j = threadIdx.x; j < len; j += blockDim.x)
    row[j] *= inv;
}

static int
attn_gemm (KinCudaCtx *ctx, const KinCudaAttention *d)
{
  const int H = d->heads, LQ = d->lq, LK = d->lk, D = d->head_dim;
  if (d->q_stride < D || d->kv_stride < D || d->out_stride < D)  // cuBLAS leading dimensions
    return BAD_INPUT ("attention: row strides below head_dim %d", D);
  const size_t row_bytes = (size_t) H * LK * sizeof (float);  // one query row, all heads
  int64_t nr_max = (int64_t) (ctx->scratch_budget / row_bytes);
  nr_max = nr_max < 1 ? 1 : nr_max > LQ ? LQ : nr_max;
  if (!kin_fits_int ((int64_t) H * nr_max))
    nr_max = INT32_MAX / H;
  void *ws = NULL;
  int rc = kin_cuda_workspace (ctx, (size_t) nr_max * row_bytes, &ws);
  if (rc != KIN_CUDA_OK)
    return rc;
  float *S = (float *) ws;  // [H][nr][LK]
  for (int64_t b = 0; b < d->batch; b++) {
    const int lk = d->kv_lens ? clamp_len (d->kv_lens[b], LK) : LK;
    const float *kb = d->k + b * LK * d->kv_stride, *vb = d->v + b * LK * d->kv_stride;
    for (int r0 = 0; r0 < LQ; r0 += (int) nr_max) {
      const int nr = (int) (LQ - r0 < nr_max ? LQ - r0 : nr_max);
      const float *qb = d->q + (b * LQ + r0) * d->q_stride;
      float *ob = d->out + (b * LQ + r0) * d->out_stride;
      if (lk == 0) {  // no keys: zeros, as on the CPU
        CUDA_TRY (cudaMemset2DAsync (ob, (size_t) d->out_stride * sizeof (float), 0,
                                     (size_t) H * D * sizeof (float), (size_t) nr, ctx->stream));
        continue;
      }
      // S[h][r][j] = scale · q[r, h] · k[j, h]   (per head: [nr, D] · [lk, D]ᵀ)
      rc = kin_cuda_gemm_rm (ctx, false, true, nr, lk, D, d->scale, qb, d->q_stride, D, kb,
                             d->kv_stride, D, 0.0f, S, LK, (int64_t) nr * LK, H);
      if (rc != KIN_CUDA_OK)
        return rc;
      k_attn_softmax<<<(unsigned) (H * nr), SM_THREADS, 0, ctx->stream>>> (
          S, nr, LK, lk, d->bias ? d->bias + (int64_t) r0 * LK : NULL, (int64_t) LQ * LK);
      LAUNCH_CHECK ();
      // out[r, h] = P[h][r][:lk] · v[:lk, h]
      rc = kin_cuda_gemm_rm (ctx, false, false, nr, D, lk, 1.0f, S, LK, (int64_t) nr * LK, vb,
                             d->kv_stride, D, 0.0f, ob, d->out_stride, D, H);
      if (rc != KIN_CUDA_OK)
        return rc;
    }
  }
  return KIN_CUDA_OK;
}

// --- dispatch ---

template <int NC>
static void
launch_small_d (KinCudaCtx *ctx, const AttnArgs &a, int batch, bool shortk)
{
  if (shortk) {
    int64_t items = (int64_t) batch * a.heads * a.lq;
    unsigned blocks = (unsigned) ((items + SHORT_WARPS - 1) / SHORT_WARPS);
    k_attn_short<NC><<<blocks, SHORT_WARPS * 32, 0, ctx->stream>>> (a, items);
  } else {
    int nqb = (a.lq + FA_BQ - 1) / FA_BQ;
    unsigned blocks = (unsigned) ((int64_t) batch * a.heads * nqb);
    k_attn_flash<NC><<<blocks, FA_WARPS * 32, flash_smem_bytes (a.head_dim), ctx->stream>>> (a, nqb);
  }
}

int
kin_cuda_attention (KinCudaCtx *ctx, const KinCudaAttention *d)
{
  if (d->batch <= 0 || d->heads <= 0 || d->lq <= 0 || d->lk <= 0 || d->head_dim <= 0)
    return BAD_INPUT ("attention: empty dimensions");
  const int D = d->head_dim;
  const bool small_d = D <= 128;
  int path = ctx->opt_attention;
  if (((path == 1 || path == 5) && !(small_d && d->lk <= 64)) ||
      ((path == 2 || path == 4 || path == 6) && !small_d))
    path = 0;
  if (path == 5)
    return kin_cuda_attention_short_staged (ctx, d);
  if (path == 6)
    return kin_cuda_attention_mma (ctx, d);
  if (path == 0)
    path = !small_d ? 3 : d->lk <= 64 ? KIN_ATTN_AUTO_SHORT : ctx->opt_fast_attention ? KIN_ATTN_AUTO_FAST : 2;
  if (path == 5)
    return kin_cuda_attention_short_staged (ctx, d);
  if (path == 6)
    return kin_cuda_attention_mma (ctx, d);
  if (path != 3) {
    // blocks per launch (a launch takes at most every sequence)
    int64_t units = path == 1   ? ((int64_t) d->batch * d->heads * d->lq + SHORT_WARPS - 1) / SHORT_WARPS
                    : path == 2 ? (int64_t) d->batch * d->heads * ((d->lq + FA_BQ - 1) / FA_BQ)
                                : (int64_t) d->batch * d->heads * ((d->lq + TC_BQ - 1) / TC_BQ);
    if (!kin_fits_int (units))
      path = 3;
  }

  if (path == 3)
    return attn_gemm (ctx, d);

  AttnArgs a;
  kin_attn_args_init (a, d);
  const bool shortk = path == 1;
  // without kv_lens one launch takes every sequence; with them, ATTN_LENS_MAX at a time
  const int chunk = a.has_lens ? ATTN_LENS_MAX : d->batch;
  for (int b0 = 0; b0 < d->batch; b0 += chunk) {
    const int nb = d->batch - b0 < chunk ? d->batch - b0 : chunk;
    a.q = d->q + (int64_t) b0 * d->lq * d->q_stride;
    a.k = d->k + (int64_t) b0 * d->lk * d->kv_stride;
    a.v = d->v + (int64_t) b0 * d->lk * d->kv_stride;
    a.out = d->out + (int64_t) b0 * d->lq * d->out_stride;
    for (int i = 0; a.has_lens && i < nb; i++)
      a.lens[i] = clamp_len (d->kv_lens[b0 + i], d->lk);
    if (path == 4) {
      int rc;
      switch ((D + 15) / 16) {
      case 1: rc = launch_tc<1> (ctx, a, nb); break;
      case 2: rc = launch_tc<2> (ctx, a, nb); break;
      case 3: rc = launch_tc<3> (ctx, a, nb); break;
      case 4: rc = launch_tc<4> (ctx, a, nb); break;
      case 5: rc = launch_tc<5> (ctx, a, nb); break;
      case 6: rc = launch_tc<6> (ctx, a, nb); break;
      case 7: rc = launch_tc<7> (ctx, a, nb); break;
      default: rc = launch_tc<8> (ctx, a, nb); break;
      }
      if (rc != KIN_CUDA_OK)
        return rc;
      LAUNCH_CHECK ();
      continue;
    }
    switch ((D + 31) / 32) {
    case 1: launch_small_d<1> (ctx, a, nb, shortk); break;
    case 2: launch_small_d<2> (ctx, a, nb, shortk); break;
    case 3: launch_small_d<3> (ctx, a, nb, shortk); break;
    default: launch_small_d<4> (ctx, a, nb, shortk); break;
    }
    LAUNCH_CHECK ();
  }
  return KIN_CUDA_OK;
}
