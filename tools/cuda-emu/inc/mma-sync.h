// mma-sync.h — the emulator's mma.sync: the warp-collective
//
//   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {d0..d3}, {a0..a3}, {b0, b1}, {c0..c3}
//
// as a function of each lane's registers, with the per-lane fragment layouts of the PTX ISA
// ("Matrix Fragments for mma.m16n8k16 with floating point type").  With groupID = lane >> 2 and
// threadID_in_group = lane % 4 (g and t below), each 32-bit register holds two bf16 elements, the
// lower column (A, C) or row (B) index in the low 16 bits:
//
//   A (16×16, row major)  a0: row g,     cols 2t, 2t+1        a1: row g + 8, cols 2t, 2t+1
//                         a2: row g,     cols 2t+8, 2t+9      a3: row g + 8, cols 2t+8, 2t+9
//   B (16×8, "col")       b0: rows 2t, 2t+1 of column g       b1: rows 2t+8, 2t+9 of column g
//   C, D (16×8, f32)      c0, c1: row g, cols 2t, 2t+1        c2, c3: row g + 8, cols 2t, 2t+1
//
// (elements a0..a7 in the ISA's numbering: a_i is in register i/2, half i%2.)  Every lane of the
// warp must call it (as on a device: .aligned); it is a barrier of the warp.  Products of bf16
// values are exact in f32; they are summed in f32 in k order, then C is added.  The point of this
// emulation is that a kernel which puts the wrong element in a register gets a wrong result here.
#pragma once
#include "emu.h"

namespace emu_mma_sync {

struct Regs {
  uint32_t a[4], b[2];
  float c[4];
};
inline Regs stage[32][32];  // [warp][lane]: every lane's operands, for its warp to read

static inline float bf16_bits (uint32_t h)
{
  uint32_t u = (h & 0xffffu) << 16;
  float f;
  memcpy (&f, &u, 4);
  return f;
}

}  // namespace emu_mma_sync

static inline void emu_mma_m16n8k16_bf16 (float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
  using namespace emu_mma_sync;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Regs &mine = stage[warp][lane];
  for (int i = 0; i < 4; i++) {
    mine.a[i] = a[i];
    mine.c[i] = c[i];
  }
  mine.b[0] = b[0];
  mine.b[1] = b[1];
  emu_warp_barrier ();  // every lane's registers are staged

  // the whole A, B and C from the 32 lanes' fragments; each element must come from exactly one
  // lane (checked: a layout table that missed or doubled an element would abort here)
  float A[16][16], B[16][8], C[16][8];
  int na[16][16] = {}, nb[16][8] = {}, nc[16][8] = {};
  for (int L = 0; L < 32; L++) {
    const Regs &r = stage[warp][L];
    const int g = L >> 2, t = L & 3;
    for (int hi = 0; hi < 2; hi++) {
      const int col = 2 * t + hi;
      A[g][col] = bf16_bits (r.a[0] >> (16 * hi)), na[g][col]++;
      A[g + 8][col] = bf16_bits (r.a[1] >> (16 * hi)), na[g + 8][col]++;
      A[g][col + 8] = bf16_bits (r.a[2] >> (16 * hi)), na[g][col + 8]++;
      A[g + 8][col + 8] = bf16_bits (r.a[3] >> (16 * hi)), na[g + 8][col + 8]++;
      const int row = 2 * t + hi;  // of B
      B[row][g] = bf16_bits (r.b[0] >> (16 * hi)), nb[row][g]++;
      B[row + 8][g] = bf16_bits (r.b[1] >> (16 * hi)), nb[row + 8][g]++;
      C[g][col] = r.c[hi], nc[g][col]++;
      C[g + 8][col] = r.c[2 + hi], nc[g + 8][col]++;
    }
  }
  emu_warp_barrier ();  // every lane has read the stage (it may be refilled)
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++)
      if (na[i][j] != 1 || (j < 8 && (nb[i][j] != 1 || nc[i][j] != 1))) {
        fprintf (stderr, "emu: mma.sync fragment table broken at (%d, %d)\n", i, j);
        abort ();
      }

  // this lane's elements of D = A·B + C
  const int g = lane >> 2, t = lane & 3;
  for (int e = 0; e < 4; e++) {
    const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
    float s = 0.0f;
    for (int k = 0; k < 16; k++)
      s += A[row][k] * B[k][col];
    d[e] = s + C[row][col];
  }
}

// __any_sync (full mask only): whether @p holds for some lane of the warp; a barrier of the warp
static inline bool emu_any_sync (unsigned mask, bool p)
{
  if (mask != 0xffffffffu) { fprintf (stderr, "emu: partial __any_sync mask\n"); abort (); }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  emu_warp_slot[warp][lane] = p ? 1.0 : 0.0;
  emu_warp_barrier ();
  bool any = false;
  for (int l = 0; l < 32; l++)
    any = any || emu_warp_slot[warp][l] != 0.0;
  emu_warp_barrier ();
  return any;
}
