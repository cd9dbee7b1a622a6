// kin-cuda-attention-mma.cu — placeholder (being written): refuses, so that tests of this path fail
// until the kernel exists.
#include "kin-cuda-common.h"

int
kin_cuda_attention_mma (KinCudaCtx *ctx, const KinCudaAttention *d)
{
  return BAD_INPUT ("attention path not implemented yet");
}
