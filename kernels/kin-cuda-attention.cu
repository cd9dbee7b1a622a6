// kin-cuda-attention.cu — multi-head attention (CPU twin: cpu_attention).
//
//   out[b, r, h] = Σ_j softmax_j (scale · q[b, r, h] · k[b, j, h] + bias[h, r, j]) · v[b, j, h]
//
// over keys j < kv_lens[b] (all lk without kv_lens); a row without keys, or whose scores are all
// −∞, is zero.  Three paths, chosen by head_dim and lk (KIN_CUDA_OPT_ATTENTION can force one):
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
//
// Everything is f32 (scores, exponentials, sums); results agree with the CPU to ~1e-6.

#include "kin-cuda-common.h"
#include "kin-cuda-reduce.h"

#include <stdlib.h>
#include <string.h>

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
  if ((path == 1 && !(small_d && d->lk <= 64)) || (path == 2 && !small_d))
    path = 0;
  if (path == 0)
    path = !small_d ? 3 : d->lk <= 64 ? 1 : 2;
  if (path != 3) {
    int64_t units = path == 1 ? ((int64_t) d->batch * d->heads * d->lq + SHORT_WARPS - 1) / SHORT_WARPS
                              : (int64_t) d->batch * d->heads * ((d->lq + FA_BQ - 1) / FA_BQ);
    if (!kin_fits_int (units))
      path = 3;
  }

  if (path == 3)
    return attn_gemm (ctx, d);

  AttnArgs a;
  memset (&a, 0, sizeof a);
  a.q_stride = d->q_stride;
  a.kv_stride = d->kv_stride;
  a.out_stride = d->out_stride;
  a.heads = d->heads;
  a.lq = d->lq;
  a.lk = d->lk;
  a.head_dim = D;
  a.scale = d->scale;
  a.bias = d->bias;
  a.has_lens = d->kv_lens != NULL;
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
