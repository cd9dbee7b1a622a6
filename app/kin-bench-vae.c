/* kin-bench-vae.c — `kinora-cli bench vae`: an SD-VAE-shaped decoder (block_out_channels
 * 128, 256, 512, 512, 2 layers per block, 4 latent channels, 32 groups) with random f32 weights,
 * decoding --frames frames (default one) of --size through the video path (micro-batches of
 * --micro-batch frames, tiled automatically above 512²) on any backend (--backend).  Prints
 * seconds, ms per frame, GFLOP/s beside the plain matrix product at the decoder's im2col shapes
 * (raw OpenBLAS sgemm on the CPU, the backend's f32 matmul elsewhere; measured in the same run,
 * after the decode so that the peak memory is the decoder's), their ratio, and peak memory.
 * `--frames 16 --size 512` is the target: a 16-frame 512² clip. */
#include "kin-bench.h"
#include "kin-backend.h"
#include "kin-error.h"
#include "kin-vae.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest column count used for the sgemm baseline: the rate is flat beyond it, and a full
 * 256² im2col matrix at 2304 rows would cost 600 MB of baseline buffers. */
#define SGEMM_MAX_COLS 16384

KinVae *
kin_bench_vae_random_decoder (KinBackend *be, KinVaeConfig *cfg, GError **error)
{
  kin_vae_config_init_sd (cfg);
  g_autoptr (KinWeights) ws = kin_vae_random_weights (cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_DECODER, 1);
  return kin_vae_new (be, ws, cfg, KIN_VAE_DECODER, error);
}

double
kin_bench_vae_bytes (int frames, int micro_batch, int width, int height)
{
  /* weights (~50 M f32), per micro-batch a few 128-channel activations at full size (frames
   * above 512² are tiled, which bounds them), the output video and its host copy */
  double px = (double) width * height, tile_px = MIN (px, 512.0 * 512.0);
  return 200e6 + (double) MIN (micro_batch, frames) * tile_px * 128 * 4 * 4 +
         (double) frames * px * 3 * 4 * 2;
}

/* Distinct im2col GEMM shapes of the decoder (M = cout, N = oh·ow, K = cin·k·k) with their FLOP
 * share, and the rate a plain matrix product reaches on them combined by FLOP weight: OpenBLAS
 * sgemm on the CPU, the backend's own f32 matmul elsewhere. */
static double
gemm_baseline (KinBackend *be, const KinVaeConfig *cfg, int h, int w, int reps)
{
  gboolean cpu = g_strcmp0 (be->name, "cpu") == 0;
  int n = kin_vae_decoder_convs (cfg, 1, h, w, NULL, 0);
  g_autofree KinConv2d *convs = g_new (KinConv2d, n);
  kin_vae_decoder_convs (cfg, 1, h, w, convs, n);
  g_autofree gboolean *done = g_new0 (gboolean, n);
  double total = 0, flops = 0, seconds = 0;
  for (int i = 0; i < n; i++)
    total += 2.0 * convs[i].cout * (double) convs[i].h * convs[i].w * convs[i].cin * convs[i].kh * convs[i].kw;
  for (int i = 0; i < n; i++) {
    if (done[i])
      continue;
    int m = convs[i].cout, cols = convs[i].h * convs[i].w, k = convs[i].cin * convs[i].kh * convs[i].kw;
    int count = 0;
    for (int j = i; j < n; j++)
      if (!done[j] && convs[j].cout == m && convs[j].h * convs[j].w == cols &&
          convs[j].cin * convs[j].kh * convs[j].kw == k) {
        done[j] = TRUE;
        count++;
      }
    double f = 2.0 * m * (double) cols * k * count;
    double rate = cpu ? kin_bench_sgemm_gflops (m, MIN (cols, SGEMM_MAX_COLS), k, reps)
                      : kin_bench_matmul_gflops (be, m, MIN (cols, SGEMM_MAX_COLS), k, reps);
    if (rate <= 0)
      return -1;
    printf ("  %s [%4d × %5d] · [%5d × %4d]ᵀ %7.1f GFLOP/s  (×%d, %5.1f %% of conv FLOPs)\n",
            cpu ? "sgemm " : "matmul", m, k, cols, k, rate, count, 100.0 * f / total);
    flops += f;
    seconds += f / (rate * 1e9);
  }
  return flops / seconds / 1e9;
}

typedef struct {
  KinVae *vae;
  KinBackend *be;
  KinTensor *latents;
  KinVaeDecodeOptions opts;
  KinTensor *out;
  GError *error;
} DecodeJob;

static void
run_decode (void *data)
{
  DecodeJob *j = data;
  g_clear_pointer (&j->out, kin_tensor_free);
  if (j->error == NULL)
    j->out = kin_vae_decode_video (j->vae, j->latents, &j->opts, &j->error);
  j->be->synchronize (j->be);
}

static KinTensor *
random_latents (KinBackend *be, int frames, int h, int w, GError **error)
{
  int64_t shape[5] = { 1, 4, frames, h, w };
  size_t n = (size_t) 4 * frames * h * w;
  g_autofree float *v = g_try_new (float, n);
  if (v == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "out of host memory for the latents");
    return NULL;
  }
  g_autoptr (GRand) r = g_rand_new_with_seed (5);
  for (size_t i = 0; i < n; i++)     /* roughly the spread of scaled SD latents */
    v[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  return kin_tensor_from_host_f32 (be, v, 5, shape, error);
}

typedef struct {
  char *size, *backend;
  int reps, tile, frames, micro_batch;
  gboolean untiled;
} VaeOptions;

static gboolean
parse_options (VaeOptions *o, int *argc, char ***argv, GError **error)
{
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &o->backend, "cpu, cuda or auto (default auto)", "NAME" },
    { "size", 's', 0, G_OPTION_ARG_STRING, &o->size, "Frame size: 256 (default), 512, 480p, 720p, 1080p or WxH (multiples of 8)", "SIZE" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &o->frames, "Frames to decode (default 1; 16 with --size 512 is a 16-frame 512² clip)", "N" },
    { "micro-batch", 'm', 0, G_OPTION_ARG_INT, &o->micro_batch, "Frames per decode chunk (default 4, as the pipeline)", "N" },
    { "reps", 'r', 0, G_OPTION_ARG_INT, &o->reps, "Timed decodes after a warm-up (default 1; 0 = one run, no warm-up)", "N" },
    { "tile", 't', 0, G_OPTION_ARG_INT, &o->tile, "Tile edge in latent pixels (default 32)", "N" },
    { "untiled", 'u', 0, G_OPTION_ARG_NONE, &o->untiled, "Never tile, whatever the size", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— SD-VAE-shaped decoder throughput and memory");
  g_option_context_add_main_entries (ctx, entries, NULL);
  return g_option_context_parse (ctx, argc, argv, error);
}

static const char *
check_options (const VaeOptions *o, int *W, int *H)
{
  if (o->size != NULL && !kin_bench_parse_size (o->size, 8, W, H))
    return "--size takes 256, 512, 480p, 720p, 1080p or WxH (multiples of 8 from 8 to 8192)";
  if (o->reps < 0 || o->reps > 10000)
    return "--reps takes 0 to 10000";
  if (o->frames < 1 || o->frames > 4096)
    return "--frames takes 1 to 4096";
  if (o->micro_batch < 1 || o->micro_batch > 4096)
    return "--micro-batch takes 1 to 4096";
  if (o->tile < 0 || o->tile > 1024)
    return "--tile takes 1 to 1024 latent pixels (0 = the default)";
  return NULL;
}

static void
vae_options_clear (VaeOptions *o)
{
  g_free (o->size);
  g_free (o->backend);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (VaeOptions, vae_options_clear)

static gboolean
video_finite (const KinTensor *t)
{
  g_autofree float *out = kin_tensor_to_host_f32 (t);
  if (out == NULL)
    return FALSE;
  for (int64_t i = 0; i < kin_tensor_numel (t); i++)
    if (!isfinite (out[i]))
      return FALSE;
  return TRUE;
}

/* Prints the measured lines and the baseline; returns the exit status. */
static int
report (KinBackend *be, const KinVaeConfig *cfg, const VaeOptions *o, const KinVaeDecodeOptions *opts,
        int h, int w, gboolean tiled, double build_s, double s, gboolean finite)
{
  double flops = tiled ? kin_vae_decoder_tiled_flops (cfg, o->frames, h, w, &opts->tiling)
                       : kin_vae_decoder_flops (cfg, o->frames, h, w);
  double useful = kin_vae_decoder_flops (cfg, o->frames, h, w);
  double rate = flops / s / 1e9;
  printf ("  weights built          %8.2f s\n", build_s);
  printf ("  decode                 %8.3f s    %d frame%s, %.1f ms per frame, %.1f GFLOP done", s,
          o->frames, o->frames == 1 ? "" : "s", s * 1e3 / o->frames, flops / 1e9);
  if (tiled) {
    KinVaeTilePlan plan;
    kin_vae_tile_plan (cfg, 1, h, w, &opts->tiling, &plan);
    printf (" (%.1f GFLOP untiled; %d × %d tiles of %d² latents, %d up block%s in one pass)",
            useful / 1e9, plan.tiles_y, plan.tiles_x, plan.tile_h, MAX (plan.untiled_stages, 0),
            plan.untiled_stages == 1 ? "" : "s");
  }
  printf ("\n");
  printf ("  decoder                %8.1f GFLOP/s\n", rate);
  kin_bench_print_peak_memory (be, g_strcmp0 (be->name, "cpu") == 0 && o->frames == 1
                                   ? "(target at 720p ≤ 2048 MiB)" : NULL);
  fflush (stdout);
  double base = gemm_baseline (be, cfg, h, w, 3);
  if (base <= 0) {
    fprintf (stderr, "kinora-cli bench vae: the baseline matmul failed (out of memory?)\n");
    return 1;
  }
  printf ("  %s (im2col shapes) %8.1f GFLOP/s\n", g_strcmp0 (be->name, "cpu") == 0 ? "sgemm " : "matmul", base);
  printf ("  ratio                  %8.2f        (target ≥ 0.50)\n", rate / base);
  printf ("  output finite          %s\n", finite ? "yes" : "NO");
  return finite ? 0 : 1;
}

int
kin_bench_vae (int argc, char **argv)
{
  g_auto (VaeOptions) o = { NULL, NULL, 1, 0, 1, 4, FALSE };
  g_autoptr (GError) error = NULL;
  int W = 256, H = 256;
  const char *bad = NULL;
  if (!parse_options (&o, &argc, &argv, &error) || (bad = check_options (&o, &W, &H)) != NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", error ? error->message : bad);
    return 2;
  }
  int status = 0;
  KinBackend *be = kin_bench_backend ("vae", o.backend, &status);
  if (be == NULL)
    return status;
  KinVaeConfig cfg;
  kin_vae_config_init_sd (&cfg);
  int h = H / 8, w = W / 8;
  KinVaeDecodeOptions opts = { .micro_batch = o.micro_batch,
                               .tiling_mode = o.untiled ? KIN_VAE_TILING_OFF : KIN_VAE_TILING_AUTO,
                               .tiling = { .tile = o.tile } };
  gboolean tiled = !o.untiled && (int64_t) h * w > 64 * 64;
  g_autofree char *label = kin_bench_backend_label (be, o.backend);
  printf ("bench vae — SD-VAE-shaped decoder: block_out_channels 128,256,512,512, 2 layers per block, "
          "latent 4 ch, 32 groups, random f32 weights, %d frame%s %d×%d (%s, micro-batch %d)\n",
          o.frames, o.frames == 1 ? "" : "s", W, H, tiled ? "tiled" : "one pass", MIN (o.micro_batch, o.frames));
  printf ("  backend                %s\n", label);
  g_autofree char *fit = o.untiled ? NULL : kin_bench_fit_problem (be, kin_bench_vae_bytes (o.frames, o.micro_batch, W, H),
                                                                   "use fewer --frames, a smaller --micro-batch or --size");
  if (fit != NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", fit);
    return 1;
  }
  fflush (stdout);

  kin_bench_reset_peak_memory (be);
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (KinVae) vae = kin_bench_vae_random_decoder (be, &cfg, &error);
  if (vae == NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", error->message);
    return 1;
  }
  double build_s = (g_get_monotonic_time () - t0) / 1e6;
  DecodeJob job = { vae, be, random_latents (be, o.frames, h, w, &error), opts, NULL, NULL };
  if (job.latents == NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", error->message);
    return 1;
  }
  double s;
  if (o.reps == 0) {
    gint64 t1 = g_get_monotonic_time ();
    run_decode (&job);
    s = (g_get_monotonic_time () - t1) / 1e6;
  } else {
    s = kin_bench_time (run_decode, &job, o.reps);
  }
  kin_tensor_free (job.latents);
  if (job.error != NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", job.error->message);
    g_error_free (job.error);
    kin_tensor_free (job.out);
    return 1;
  }
  gboolean finite = video_finite (job.out);
  kin_tensor_free (job.out);
  g_clear_pointer (&vae, kin_vae_free);
  return report (be, &cfg, &o, &opts, h, w, tiled, build_s, s, finite);
}
