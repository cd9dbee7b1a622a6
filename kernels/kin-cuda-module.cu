// kinora-cuda.so — the CUDA backend module, opened by the engine with GModule.
//
// For now it answers device discovery only; the op table follows once the CPU op table settles.
// Every entry point is extern "C" and never throws or aborts: failures are reported as a status
// code plus a message that the engine turns into a GError.

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {

// ABI version of this module's entry points; the engine refuses a module with another one.
int kin_cuda_abi_version(void) { return 1; }

// Fills @msg with a one-line description of the devices (or why there is none) and returns the
// number of usable CUDA devices.  0 when there is no driver or no device.
int kin_cuda_discover(char *msg, size_t msg_len)
{
  int count = 0;  // stays 0 when the call fails without a driver
  cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    snprintf(msg, msg_len, "no CUDA device: %s", cudaGetErrorString(st));
    return 0;
  }
  if (count <= 0) {
    snprintf(msg, msg_len, "no CUDA device found");
    return 0;
  }
  cudaDeviceProp prop;
  memset(&prop, 0, sizeof prop);
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    snprintf(msg, msg_len, "%d CUDA device(s); properties unavailable", count);
    return count;
  }
  snprintf(msg, msg_len, "%d CUDA device(s); device 0: %s, sm_%d%d, %.1f GiB", count, prop.name,
           prop.major, prop.minor, (double) prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  return count;
}

}  // extern "C"
