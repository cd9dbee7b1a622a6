/* kin-bench-vae.c — `kinora-cli bench vae`: an SD-VAE-shaped decoder (block_out_channels
 * 128, 256, 512, 512, 2 layers per block, 4 latent channels, 32 groups) with random f32 weights,
 * decoding one frame on the CPU backend through the video path (tiled automatically above 512²).
 * Prints seconds, GFLOP/s beside raw OpenBLAS sgemm at the decoder's im2col shapes (measured in
 * the same run, after the decode so that the peak RSS is the decoder's), their ratio, and peak
 * RSS. */
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

static gboolean
parse_size (const char *s, int *w, int *h)
{
  if (g_strcmp0 (s, "720p") == 0)
    *w = 1280, *h = 720;
  else if (g_strcmp0 (s, "1080p") == 0)
    *w = 1920, *h = 1080;
  else if (g_strcmp0 (s, "480p") == 0)
    *w = 848, *h = 480;
  else if (strchr (s, 'x') != NULL)
    *w = atoi (s), *h = atoi (strchr (s, 'x') + 1);
  else
    *w = *h = atoi (s);
  return *w >= 8 && *h >= 8 && *w <= 8192 && *h <= 8192 && *w % 8 == 0 && *h % 8 == 0;
}

/* Distinct im2col GEMM shapes of the decoder (M = cout, N = oh·ow, K = cin·k·k) with their FLOP
 * share, and the rate plain sgemm reaches on them combined by FLOP weight. */
static double
sgemm_baseline (const KinVaeConfig *cfg, int h, int w, int reps)
{
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
    double rate = kin_bench_sgemm_gflops (m, MIN (cols, SGEMM_MAX_COLS), k, reps);
    printf ("  sgemm [%4d × %5d] · [%5d × %4d]ᵀ %7.1f GFLOP/s  (×%d, %5.1f %% of conv FLOPs)\n",
            m, k, cols, k, rate, count, 100.0 * f / total);
    flops += f;
    seconds += f / (rate * 1e9);
  }
  return flops / seconds / 1e9;
}

typedef struct {
  KinVae *vae;
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
}

static KinTensor *
random_latents (KinBackend *be, int h, int w, GError **error)
{
  int64_t shape[5] = { 1, 4, 1, h, w };
  g_autofree float *v = g_new (float, 4 * h * w);
  g_autoptr (GRand) r = g_rand_new_with_seed (5);
  for (int i = 0; i < 4 * h * w; i++)     /* roughly the spread of scaled SD latents */
    v[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  return kin_tensor_from_host_f32 (be, v, 5, shape, error);
}

int
kin_bench_vae (int argc, char **argv)
{
  g_autofree char *size = NULL;
  int reps = 1, tile = 0;
  gboolean untiled = FALSE;
  GOptionEntry entries[] = {
    { "size", 's', 0, G_OPTION_ARG_STRING, &size, "Frame size: 256 (default), 512, 480p, 720p, 1080p or WxH", "SIZE" },
    { "reps", 'r', 0, G_OPTION_ARG_INT, &reps, "Timed decodes after a warm-up (default 1; 0 = one run, no warm-up)", "N" },
    { "tile", 't', 0, G_OPTION_ARG_INT, &tile, "Tile edge in latent pixels (default 32)", "N" },
    { "untiled", 'u', 0, G_OPTION_ARG_NONE, &untiled, "Never tile, whatever the size", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— SD-VAE-shaped decoder throughput and memory");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  int W = 256, H = 256;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || reps < 0 ||
      (size != NULL && !parse_size (size, &W, &H))) {
    fprintf (stderr, "kinora-cli bench vae: %s\n",
             error ? error->message : "--size takes 256, 512, 480p, 720p, 1080p or WxH (multiples of 8)");
    return 2;
  }
  KinVaeConfig cfg;
  kin_vae_config_init_sd (&cfg);
  KinBackend *be = kin_backend_cpu ();
  int h = H / 8, w = W / 8;
  KinVaeDecodeOptions opts = { .micro_batch = 1,
                               .tiling_mode = untiled ? KIN_VAE_TILING_OFF : KIN_VAE_TILING_AUTO,
                               .tiling = { .tile = tile } };
  gboolean tiled = !untiled && (int64_t) h * w > 64 * 64;
  printf ("bench vae — SD-VAE-shaped decoder: block_out_channels 128,256,512,512, 2 layers per block, "
          "latent 4 ch, 32 groups, random f32 weights, 1 frame %d×%d (%s), backend %s, %d threads\n",
          W, H, tiled ? "tiled" : "one pass", be->name, omp_get_max_threads ());

  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (KinVae) vae = NULL;
  {
    g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_DECODER, 1);
    vae = kin_vae_new (be, ws, &cfg, KIN_VAE_DECODER, &error);
  }
  if (vae == NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", error->message);
    return 1;
  }
  double build_s = (g_get_monotonic_time () - t0) / 1e6;
  DecodeJob job = { vae, random_latents (be, h, w, &error), opts, NULL, NULL };
  if (job.latents == NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", error->message);
    return 1;
  }
  double s;
  if (reps == 0) {
    gint64 t1 = g_get_monotonic_time ();
    run_decode (&job);
    s = (g_get_monotonic_time () - t1) / 1e6;
  } else {
    s = kin_bench_time (run_decode, &job, reps);
  }
  double rss = kin_bench_peak_rss_mib ();
  if (job.error != NULL) {
    fprintf (stderr, "kinora-cli bench vae: %s\n", job.error->message);
    g_error_free (job.error);
    kin_tensor_free (job.latents);
    return 1;
  }
  gboolean finite = TRUE;
  g_autofree float *out = kin_tensor_to_host_f32 (job.out);
  for (int64_t i = 0; i < kin_tensor_numel (job.out); i++)
    finite = finite && isfinite (out[i]);
  kin_tensor_free (job.out);
  kin_tensor_free (job.latents);
  g_clear_pointer (&vae, kin_vae_free);

  double flops = tiled ? kin_vae_decoder_tiled_flops (&cfg, 1, h, w, &opts.tiling)
                       : kin_vae_decoder_flops (&cfg, 1, h, w);
  double useful = kin_vae_decoder_flops (&cfg, 1, h, w);
  double rate = flops / s / 1e9;
  double base = sgemm_baseline (&cfg, h, w, 3);
  printf ("  weights built          %8.2f s\n", build_s);
  printf ("  decode                 %8.3f s    %.1f GFLOP done", s, flops / 1e9);
  if (tiled) {
    KinVaeTilePlan plan;
    kin_vae_tile_plan (&cfg, 1, h, w, &opts.tiling, &plan);
    printf (" (%.1f GFLOP untiled; %d × %d tiles of %d² latents, %d up block%s in one pass)",
            useful / 1e9, plan.tiles_y, plan.tiles_x, plan.tile_h, MAX (plan.untiled_stages, 0),
            plan.untiled_stages == 1 ? "" : "s");
  }
  printf ("\n");
  printf ("  decoder                %8.1f GFLOP/s\n", rate);
  printf ("  sgemm (im2col shapes)  %8.1f GFLOP/s\n", base);
  printf ("  ratio                  %8.2f        (target ≥ 0.50)\n", rate / base);
  printf ("  peak RSS               %8.0f MiB    (target at 720p ≤ 2048 MiB)\n", rss);
  printf ("  output finite          %s\n", finite ? "yes" : "NO");
  return finite ? 0 : 1;
}
