/* kin-noise.c — Philox4x32-10 (Salmon et al., SC'11) and Box–Muller; see kin-noise.h. */
#include "kin-noise.h"
#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void
kin_philox4x32_10 (const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t) PHILOX_M0 * c0, p1 = (uint64_t) PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t) (p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t) p1;
    uint32_t n2 = (uint32_t) (p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t) p0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static void
block_normals (uint64_t seed, uint64_t block, float v[4])
{
  uint32_t ctr[4] = { (uint32_t) block, (uint32_t) (block >> 32), 0, 0 };
  uint32_t key[2] = { (uint32_t) seed, (uint32_t) (seed >> 32) };
  uint32_t w[4];
  kin_philox4x32_10 (ctr, key, w);
  for (int p = 0; p < 2; p++) {
    double u1 = (w[2 * p] + 0.5) / 4294967296.0, u2 = (w[2 * p + 1] + 0.5) / 4294967296.0;
    double r = sqrt (-2.0 * log (u1)), th = 2.0 * G_PI * u2;
    v[2 * p] = (float) (r * cos (th));
    v[2 * p + 1] = (float) (r * sin (th));
  }
}

void
kin_noise_at (uint64_t seed, uint64_t first_block, float *out, size_t n)
{
  size_t nb = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (nb > 8192)
  for (size_t b = 0; b < nb; b++) {
    float v[4];
    block_normals (seed, first_block + b, v);
    for (size_t j = 0; j < 4 && b * 4 + j < n; j++)
      out[b * 4 + j] = v[j];
  }
}

void
kin_noise_init (KinNoise *ns, uint64_t seed)
{
  ns->seed = seed;
  ns->block = 0;
}

void
kin_noise_fill (KinNoise *ns, float *out, size_t n)
{
  kin_noise_at (ns->seed, ns->block, out, n);
  ns->block += (n + 3) / 4;
}

uint64_t
kin_noise_random_seed (void)
{
  uint64_t s = ((uint64_t) g_random_int () << 32) | g_random_int ();
  return s ? s : 1;
}
