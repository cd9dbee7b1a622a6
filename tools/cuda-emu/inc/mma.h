// mma.h — the emulator's slice of WMMA (nvcuda::wmma): 16×16×16 fragments of bf16/half operands
// and f32 accumulators.  Every lane holds the whole 16×16 tile (num_elements = 256, element (r, c)
// of the fragment's matrix at x[16*r + c]), so a program that treats x[] layout-free (element-wise
// operations uniform over all elements, or a mapping it reads back from a loaded fragment)
// behaves as on a device.  Checked as a device would need: 256-bit aligned pointers, ldm a
// multiple of 16 bytes.  A store writes only the elements i ≡ lane (mod 32) from each lane, so
// that reading the stored tile back before a __syncwarp sees stale data here, as it could on a
// device.  Loads, stores and mma are not barriers (use __syncwarp).
#pragma once
#include "emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert (M == 16 && N == 16 && K == 16, "emu: only 16x16x16 fragments");
  enum { num_elements = 256 };
  T x[256];
};

namespace emu_detail {
static inline float to_f (float v) { return v; }
static inline float to_f (__nv_bfloat16 v) { return __bfloat162float (v); }
static inline float to_f (__half v) { return __half2float (v); }
template <typename T> static inline T from_f (float v);
template <> inline float from_f<float> (float v) { return v; }
template <> inline __nv_bfloat16 from_f<__nv_bfloat16> (float v) { return __float2bfloat16_rn (v); }
template <> inline __half from_f<__half> (float v) { return __float2half_rn (v); }

template <typename T>
static inline void check (const void *p, unsigned ldm, const char *what)
{
  if (((uintptr_t) p & 31) != 0) {
    fprintf (stderr, "emu: wmma %s: pointer %p not 256-bit aligned\n", what, p);
    abort ();
  }
  if ((ldm * sizeof (T)) % 16 != 0 || ldm < 16) {
    fprintf (stderr, "emu: wmma %s: ldm %u not a multiple of 16 bytes (or < 16)\n", what, ldm);
    abort ();
  }
}
}  // namespace emu_detail

// operands: the fragment's own layout decides how memory is read
template <typename Use, typename T>
inline void load_matrix_sync (fragment<Use, 16, 16, 16, T, row_major> &f, const T *p, unsigned ldm)
{
  emu_detail::check<T> (p, ldm, "load");
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++)
      f.x[16 * r + c] = p[(size_t) r * ldm + c];
}
template <typename Use, typename T>
inline void load_matrix_sync (fragment<Use, 16, 16, 16, T, col_major> &f, const T *p, unsigned ldm)
{
  emu_detail::check<T> (p, ldm, "load");
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++)
      f.x[16 * r + c] = p[(size_t) c * ldm + r];
}

// accumulators: the memory layout is an argument
template <typename T>
inline void load_matrix_sync (fragment<accumulator, 16, 16, 16, T> &f, const T *p, unsigned ldm, layout_t l)
{
  emu_detail::check<T> (p, ldm, "load");
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++)
      f.x[16 * r + c] = l == mem_row_major ? p[(size_t) r * ldm + c] : p[(size_t) c * ldm + r];
}
template <typename T>
inline void store_matrix_sync (T *p, const fragment<accumulator, 16, 16, 16, T> &f, unsigned ldm, layout_t l)
{
  emu_detail::check<T> (p, ldm, "store");
  unsigned lane = threadIdx.x & 31;
  for (int i = (int) lane; i < 256; i += 32) {
    int r = i / 16, c = i % 16;
    p[l == mem_row_major ? (size_t) r * ldm + c : (size_t) c * ldm + r] = f.x[i];
  }
}

template <typename Use, typename T, typename Layout, typename V>
inline void fill_fragment (fragment<Use, 16, 16, 16, T, Layout> &f, const V &v)
{
  for (int i = 0; i < 256; i++)
    f.x[i] = emu_detail::from_f<T> ((float) v);
}

// d = a·b + c, f32 products and sums (d may be c)
template <typename T, typename LA, typename LB, typename TC>
inline void mma_sync (fragment<accumulator, 16, 16, 16, TC> &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                      const fragment<matrix_b, 16, 16, 16, T, LB> &b, const fragment<accumulator, 16, 16, 16, TC> &c)
{
  float af[256], bf[256], out[256];
  for (int i = 0; i < 256; i++) {
    af[i] = emu_detail::to_f (a.x[i]);
    bf[i] = emu_detail::to_f (b.x[i]);
  }
  for (int r = 0; r < 16; r++)
    for (int n = 0; n < 16; n++) {
      float s = 0.0f;
      for (int k = 0; k < 16; k++)
        s += af[16 * r + k] * bf[16 * k + n];
      out[16 * r + n] = s + emu_detail::to_f (c.x[16 * r + n]);
    }
  for (int i = 0; i < 256; i++)
    d.x[i] = emu_detail::from_f<TC> (out[i]);
}

}  // namespace wmma
}  // namespace nvcuda
