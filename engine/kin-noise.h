/* kin-noise.h — counter-based Gaussian noise (Philox4x32-10 + Box–Muller).
 *
 * Value j of the stream depends only on (seed, j): block c = j / 4 is Philox4x32-10 of the counter
 * (c, 0, 0, 0) under the key (seed low 32 bits, seed high 32 bits); its four 32-bit words become
 * two pairs of uniforms u = (w + 0.5) / 2^32 and each pair two normals by Box–Muller
 * (r = sqrt(−2 ln u1), θ = 2π u2 → r cos θ, r sin θ).  The arithmetic is integer except the last
 * transform, which is done in double and rounded to float, so every machine — and a GPU kernel that
 * follows the same recipe — produces the same latent for a seed.  Draws consume the stream in
 * blocks of four values, so a draw always starts on a block boundary. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct {
  uint64_t seed;
  uint64_t block;   /* next unused Philox block (4 values each) */
} KinNoise;

void kin_noise_init (KinNoise *ns, uint64_t seed);
/* Fills @out with the next @n standard normal values. */
void kin_noise_fill (KinNoise *ns, float *out, size_t n);
/* Values [first, first + n) of the stream of @seed, without state. */
void kin_noise_at (uint64_t seed, uint64_t first_block, float *out, size_t n);
/* The raw generator, for tests: ctr/key → 4 words. */
void kin_philox4x32_10 (const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* A seed from the system's entropy (for "random seed" in the UI/CLI); never 0. */
uint64_t kin_noise_random_seed (void);

G_END_DECLS
