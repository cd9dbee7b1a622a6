// kin-cuda-reduce.h — warp and block reductions shared by the .cu files (device code is not
// linked across translation units, so these are header-only).
#pragma once

#include <cuda_runtime.h>
#include <math.h>

#define KIN_FULL_MASK 0xffffffffu

static __device__ __forceinline__ float
kin_warp_sum (float v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (KIN_FULL_MASK, v, o);
  return v;
}

static __device__ __forceinline__ float
kin_warp_max (float v)
{
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf (v, __shfl_xor_sync (KIN_FULL_MASK, v, o));
  return v;
}

// Sum over the block; every thread gets the same result.  @shared holds ≥ 32 doubles.  Every
// thread of the block must call it.
static __device__ __forceinline__ double
kin_block_sum (double v, double *shared)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (KIN_FULL_MASK, v, o);
  __syncthreads ();  // @shared may still be read by a previous call
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  double t = 0;
  for (int i = 0; i < nwarps; i++)  // a fixed order: every thread sums the same way
    t += shared[i];
  return t;
}

static __device__ __forceinline__ float
kin_block_max (float v, float *shared)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = kin_warp_max (v);
  __syncthreads ();
  if (lane == 0)
    shared[warp] = v;
  __syncthreads ();
  float t = -INFINITY;
  for (int i = 0; i < nwarps; i++)
    t = fmaxf (t, shared[i]);
  return t;
}
