/* kin-bench.h — `kinora-cli bench NAME …` entry points.  Each prints a table of measured
 * numbers (always beside a baseline measured in the same run) and returns an exit status. */
#pragma once

#include <glib.h>
#include "kin-backend.h"
#include "kin-stdit.h"
#include "kin-vae.h"

G_BEGIN_DECLS

/* Times @fn(@data) @reps times after one warm-up call; returns the median seconds. */
double kin_bench_time (void (*fn) (void *data), void *data, int reps);
/* The same with @warmup untimed calls first (0 allowed); @min/@max (may be NULL) get the fastest
 * and slowest timed call. */
double kin_bench_time_full (void (*fn) (void *data), void *data, int warmup, int iters,
                            double *min, double *max);
/* Peak resident set size of this process in MiB (VmHWM), or -1. */
double kin_bench_peak_rss_mib (void);
/* Raw OpenBLAS sgemm GFLOP/s for C[m,n] = A[m,k]·B[n,k]ᵀ, the baseline every bench prints. */
double kin_bench_sgemm_gflops (int m, int n, int k, int reps);

/* --- shared by the benches that take --backend --- */

/* The backend for --backend @choice ("cpu", "cuda", "auto"; NULL = auto).  NULL after printing
 * why to stderr, with *@status set: 2 for a bad value, 1 when "cuda" was asked for and only the
 * CPU is available (a bench must never report CPU numbers under a CUDA label). */
KinBackend *kin_bench_backend (const char *bench, const char *choice, int *status);
/* "cpu (2 threads, OpenBLAS Haswell)" / "cuda" — for the header line; g_free. */
char      *kin_bench_backend_label (KinBackend *be, const char *choice);
/* Forgets the backend's peak memory so far (no-op when it does not track memory). */
void       kin_bench_reset_peak_memory (KinBackend *be);
/* Prints "  peak memory   N MiB   <what it is>": the backend's peak allocation when it tracks
 * its memory, otherwise the process's peak RSS from getrusage (and says which).  Returns MiB. */
double     kin_bench_print_peak_memory (KinBackend *be, const char *target_note);
/* Bytes that can still be allocated on @be: the device's free memory when the backend knows its
 * total, otherwise MemAvailable of /proc/meminfo; -1 when unknown. */
double     kin_bench_available_bytes (KinBackend *be);
/* Refuses sizes that cannot fit before anything is allocated (an overcommitted allocation would
 * end in the OOM killer, not an error): NULL when @need bytes fit in what
 * kin_bench_available_bytes() reports (or it is unknown),
 * otherwise a message (free it) saying how much is needed and available, ending with @advice. */
char      *kin_bench_fit_problem (KinBackend *be, double need, const char *advice);
/* Fills @n values of @dtype (F32, F16 or BF16) uniformly in [mean − half, mean + half], seeded
 * per 64 Ki chunk so the values do not depend on the thread count. */
void       kin_bench_fill (void *dst, KinDType dtype, size_t n, double mean, double half, guint64 seed);
/* "bf16" / "f32" / "f16" → dtype; FALSE for anything else. */
gboolean   kin_bench_parse_dtype (const char *s, KinDType *out);
/* TFLOP/s of the backend's linear y[rows, out] = x[rows, in]·w[out, in]ᵀ + b with w in
 * @wdtype — the baseline of the model benches; -1 and @error when the buffers do not fit. */
double     kin_bench_linear_tflops (KinBackend *be, KinDType wdtype, int64_t rows, int64_t in,
                                    int64_t out, int warmup, int iters, GError **error);
/* GFLOP/s of the backend's f32 matmul C[m,n] = A[m,k]·B[n,k]ᵀ; -1 when the buffers do not fit. */
double     kin_bench_matmul_gflops (KinBackend *be, int m, int n, int k, int reps);
/* Parses "512", "WxH", "480p", "720p", "1080p"; TRUE when both are multiples of @multiple in
 * [@multiple, 8192]. */
gboolean   kin_bench_parse_size (const char *s, int multiple, int *w, int *h);
/* The frame size of the STDiT benches from --size (default 512×512) and --height/--width
 * (non-zero overrides): multiples of 16 from 16 to 8192.  NULL when fine, else the message. */
const char *kin_bench_frame_size (const char *size, int *height, int *width);

/* --- STDiT (kin-bench-stdit.c) --- */

/* Open-Sora 1.1 STDiT-XL/2 (STDiT2) with @depth blocks, finished through
 * kin_stdit_config_derive. */
gboolean   kin_bench_stdit_config (KinStditConfig *cfg, int depth, GError **error);

/* FLOPs of one forward (see kin-bench-stdit.c for the formula), in exact integers. */
typedef struct {
  int64_t linear;           /* every linear layer and the patch-embedding conv */
  int64_t attn_spatial;     /* QKᵀ and AV of the spatial self-attention, all blocks */
  int64_t attn_temporal;
  int64_t attn_cross;
  int64_t total;
} KinBenchStditFlops;

/* @batch samples of @frames × @h × @w latents, @caption_rows caption rows (y's L) of which
 * @caption_tokens are valid in every sample; without x_mask. */
void       kin_bench_stdit_flops (const KinStditConfig *cfg, int64_t batch, int64_t frames,
                                  int64_t h, int64_t w, int64_t caption_rows,
                                  int64_t caption_tokens, KinBenchStditFlops *out);
/* Rough bytes the model's weights (in @dtype) and one forward's activations take on a backend. */
double     kin_bench_stdit_bytes (const KinStditConfig *cfg, KinDType dtype, int64_t batch,
                                  int64_t frames, int64_t h, int64_t w);
/* An STDiT with random weights in @dtype (rope.freqs exact, F32) built in memory and loaded on
 * @be; the host copies are freed before it returns.  @weight_bytes (may be NULL) gets their size. */
KinStdit  *kin_bench_stdit_random (const KinStditConfig *cfg, KinDType dtype, KinBackend *be,
                                   double *weight_bytes, GError **error);

/* --- VAE (kin-bench-vae.c) --- */

/* An SD-VAE-shaped decoder (sd-vae-ft-ema config) with random f32 weights on @be. */
KinVae    *kin_bench_vae_random_decoder (KinBackend *be, KinVaeConfig *cfg, GError **error);
/* Rough bytes a decode of @frames frames of @width × @height px takes (weights included). */
double     kin_bench_vae_bytes (int frames, int micro_batch, int width, int height);

int kin_bench_ops (int argc, char **argv);
int kin_bench_t5 (int argc, char **argv);
int kin_bench_vae (int argc, char **argv);
int kin_bench_stdit (int argc, char **argv);
int kin_bench_generate (int argc, char **argv);

G_END_DECLS
