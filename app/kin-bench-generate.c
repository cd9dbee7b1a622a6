/* kin-bench-generate.c — `kinora-cli bench generate`: the denoising loop of a clip as the
 * pipeline runs it — IDDPM (v1.1 f32 tables) over --steps steps with classifier-free guidance
 * (CFG batch 2, scale 7, 3 channels), on the random-weight STDiT-XL/2 of `bench stdit` — then
 * the SD-VAE-shaped decoder (random f32 weights) on the latents, on any backend.
 *
 * The T5 encoder is not run: it encodes the prompt once and is released before sampling (memory
 * mode low), so it adds neither to the per-step time nor to the sampling peak; random caption
 * embeddings of --tokens valid tokens stand in for its output, and the model's own null caption
 * is the unconditional half, as in kin-pipeline.c.
 *
 * Prints total seconds, seconds per step, the sampling TFLOP/s (analytic forward count × 2
 * samples … see kin-bench-stdit.c) beside the backend's own linear at the dominant MLP shape
 * (same run), VAE decode seconds and ms per frame, and peak memory. */
#include "kin-bench.h"
#include "kin-buckets.h"
#include "kin-error.h"
#include "kin-iddpm.h"
#include "kin-noise.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MLP_CHUNK_ROWS 16384

typedef struct {
  const char *backend, *dtype, *size;
  int depth, frames, height, width, steps, tokens, micro_batch;
  double cfg;
  gint64 seed;
} GenOptions;

typedef struct {
  KinStdit *m;
  KinBackend *be;
  KinTensor *x, *out, *y;     /* x [2, C, T, h, w], out [2, 2C, T, h, w], y [2, L, Ccap] */
  int32_t *mask;              /* [L] */
  float height, width, frames, ar, fps;
  gint64 last;                /* monotonic time of the previous step's end */
  double *step_s;             /* [steps] */
  int steps;
} Gen;

static gboolean
model_call (gpointer user, const float *x, const float *timesteps, const guint8 *x_mask, float *out,
            GError **error)
{
  Gen *g = user;
  KinBackend *be = g->be;
  be->upload (be, g->x->data, x, kin_tensor_nbytes (g->x));
  KinStditInput in = { .x = g->x, .timestep = timesteps, .y = g->y, .mask = g->mask, .mask_rows = 1,
                       .height = &g->height, .width = &g->width, .num_frames = &g->frames,
                       .ar = &g->ar, .fps = &g->fps, .cond_rows = 1, .x_mask = x_mask };
  if (!kin_stdit_forward (g->m, &in, g->out, error))
    return FALSE;
  be->download (be, out, g->out->data, kin_tensor_nbytes (g->out));
  return TRUE;
}

static void
noise_call (gpointer user, float *out, size_t n)
{
  kin_noise_fill (user, out, n);
}

static gboolean
on_step (gpointer user, int step, int total, const float *x_cond)
{
  Gen *g = user;
  gint64 now = g_get_monotonic_time ();
  if (step >= 0 && step < g->steps)
    g->step_s[step] = (now - g->last) / 1e6;
  g->last = now;
  return TRUE;
}

static gboolean
parse_options (GenOptions *o, int *argc, char ***argv, GError **error)
{
  g_autofree char *backend = NULL, *dtype = NULL, *size = NULL;
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend, "cpu, cuda or auto (default auto)", "NAME" },
    { "dtype", 0, 0, G_OPTION_ARG_STRING, &dtype, "STDiT weight type: bf16 (default) or f32", "TYPE" },
    { "depth", 'd', 0, G_OPTION_ARG_INT, &o->depth, "Transformer blocks (default 28)", "N" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &o->frames, "Frames (default 16)", "N" },
    { "size", 's', 0, G_OPTION_ARG_STRING, &size, "Frame size in pixels: 512 (default), WxH, 480p, 720p (multiples of 16)", "SIZE" },
    { "height", 0, 0, G_OPTION_ARG_INT, &o->height, "Frame height in pixels (overrides --size)", "PX" },
    { "width", 0, 0, G_OPTION_ARG_INT, &o->width, "Frame width in pixels (overrides --size)", "PX" },
    { "steps", 'n', 0, G_OPTION_ARG_INT, &o->steps, "IDDPM steps (default 100)", "N" },
    { "cfg", 0, 0, G_OPTION_ARG_DOUBLE, &o->cfg, "Guidance scale (default 7)", "S" },
    { "tokens", 0, 0, G_OPTION_ARG_INT, &o->tokens, "Valid caption tokens of the 200 (default 120)", "N" },
    { "micro-batch", 0, 0, G_OPTION_ARG_INT, &o->micro_batch, "Frames per VAE decode chunk (default 4, as the pipeline)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &o->seed, "Noise seed (default 42)", "N" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— IDDPM denoising loop + VAE decode, time and memory");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, error))
    return FALSE;
  o->backend = g_intern_string (backend);
  o->dtype = g_intern_string (dtype);
  o->size = g_intern_string (size);
  return TRUE;
}

static const char *
check_options (GenOptions *o)
{
  const char *size_problem = kin_bench_frame_size (o->size, &o->height, &o->width);
  if (size_problem != NULL)
    return size_problem;
  if (o->depth < 1 || o->depth > 1000)
    return "--depth takes 1 to 1000";
  if (o->frames < 1 || o->frames > 1024)
    return "--frames takes 1 to 1024";
  if (o->steps < 1 || o->steps > 1000)
    return "--steps takes 1 to 1000";
  if (!(o->cfg >= 0 && o->cfg <= 100))
    return "--cfg takes 0 to 100";
  if (o->tokens < 1 || o->tokens > 200)
    return "--tokens takes 1 to 200 (the model's caption length)";
  if (o->micro_batch < 1 || o->micro_batch > 1024)
    return "--micro-batch takes 1 to 1024";
  return NULL;
}

static int
fail (const char *message)
{
  fprintf (stderr, "kinora-cli bench generate: %s\n", message);
  return 1;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* y = [random caption embeddings (first @tokens rows valid) ; the model's null caption], the
 * x / out buffers, and the v1.1 conditioning values of the official inference. */
static gboolean
prepare (Gen *g, const KinStditConfig *cfg, const GenOptions *o, GError **error)
{
  int T = o->frames, h = o->height / 8, w = o->width / 8;
  int64_t L = cfg->model_max_length, Cc = cfg->caption_channels;
  int64_t xs[5] = { 2, cfg->in_channels, T, h, w }, os[5] = { 2, cfg->out_channels, T, h, w };
  int64_t ys[3] = { 2, L, Cc };
  g_autofree float *null = kin_tensor_to_host_f32 (kin_stdit_get_null_caption (g->m));
  g_autofree float *y = g_try_new (float, 2 * L * Cc);
  if (null == NULL || y == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "out of host memory for the captions");
    return FALSE;
  }
  kin_bench_fill (y, KIN_DTYPE_F32, L * Cc, 0, 0.3, 202);       /* ~T5 output spread */
  memcpy (y + L * Cc, null, sizeof (float) * L * Cc);
  g->mask = g_new0 (int32_t, L);
  for (int i = 0; i < o->tokens; i++)
    g->mask[i] = 1;
  g->height = (float) o->height, g->width = (float) o->width, g->frames = (float) T;
  g->ar = g->height / g->width;
  g->fps = T == 1 ? KIN_CONDITION_FPS_IMAGE : KIN_CONDITION_FPS;
  return (g->y = kin_tensor_from_host_f32 (g->be, y, 3, ys, error)) != NULL &&
         (g->x = kin_tensor_new (g->be, KIN_DTYPE_F32, 5, xs, error)) != NULL &&
         (g->out = kin_tensor_new (g->be, KIN_DTYPE_F32, 5, os, error)) != NULL;
}

/* The chain: z from the seed, then kin_iddpm_sample; @sample gets [1, C, T, h, w]. */
static gboolean
sample_chain (Gen *g, const KinStditConfig *cfg, const GenOptions *o, float *sample, GError **error)
{
  int T = o->frames, h = o->height / 8, w = o->width / 8;
  size_t n = (size_t) cfg->in_channels * T * h * w;
  g_autofree float *z = g_new (float, n);
  KinNoise ns;
  kin_noise_init (&ns, (uint64_t) o->seed);
  kin_noise_fill (&ns, z, n);
  KinIddpmSchedule *sched = kin_iddpm_schedule_new (o->steps, 1000, KIN_IDDPM_TABLES_F32, error);
  if (sched == NULL)
    return FALSE;
  KinIddpmRun run = {
    .n = 1, .channels = cfg->in_channels, .frames = T, .height = h, .width = w,
    .cfg_scale = (float) o->cfg, .cfg_channels = 3, .frame_mask = NULL,
    .model = model_call, .model_data = g, .noise = noise_call, .noise_data = &ns,
    .on_step = on_step, .step_data = g,
  };
  /* as the pipeline: the first step eager, the second captured, the rest replayed (where the
   * backend has graphs; KIN_CUDA_GRAPHS=0 measures the eager step) */
  kin_stdit_set_graphs (g->m, kin_backend_has_graphs (g->be) &&
                        g_strcmp0 (g_getenv ("KIN_CUDA_GRAPHS"), "0") != 0);
  g->last = g_get_monotonic_time ();
  gboolean ok = kin_iddpm_sample (sched, &run, z, sample, error);
  kin_stdit_set_graphs (g->m, FALSE);
  kin_iddpm_schedule_free (sched);
  return ok;
}

static gboolean
all_finite (const float *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!isfinite (v[i]))
      return FALSE;
  return TRUE;
}

/* Decodes @sample; returns the seconds, or -1 with @error. */
static double
decode (KinVae *vae, KinBackend *be, const float *sample, const GenOptions *o, gboolean *finite,
        GError **error)
{
  int64_t ls[5] = { 1, 4, o->frames, o->height / 8, o->width / 8 };
  g_autoptr (KinTensor) lat = kin_tensor_from_host_f32 (be, sample, 5, ls, error);
  if (lat == NULL)
    return -1;
  KinVaeDecodeOptions opts = { .micro_batch = o->micro_batch, .tiling_mode = KIN_VAE_TILING_AUTO };
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (KinTensor) video = kin_vae_decode_video (vae, lat, &opts, error);
  be->synchronize (be);
  double s = (g_get_monotonic_time () - t0) / 1e6;
  if (video == NULL)
    return -1;
  g_autofree float *v = kin_tensor_to_host_f32 (video);
  *finite = *finite && v != NULL && all_finite (v, kin_tensor_numel (video));
  return s;
}

static void
print_header (const GenOptions *o, const KinStditConfig *cfg, KinDType dtype, KinBackend *be)
{
  g_autofree char *label = kin_bench_backend_label (be, o->backend);
  printf ("bench generate — IDDPM %d step%s, cfg %g on 3 channels (CFG batch 2), STDiT2 XL/2 shape "
          "(depth %d, hidden %d, %d heads) with random %s weights, %d frame%s %d×%d px (latent "
          "4×%d×%d×%d), then an SD-VAE-shaped decoder (random F32 weights, micro-batch %d)\n",
          o->steps, o->steps == 1 ? "" : "s", o->cfg, cfg->depth, cfg->hidden_size, cfg->num_heads, kin_dtype_name (dtype),
          o->frames, o->frames == 1 ? "" : "s", o->width, o->height, o->frames, o->height / 8, o->width / 8, o->micro_batch);
  printf ("  text encoder           not run: T5 encodes the prompt once and is released before "
          "sampling; random caption embeddings of %d tokens (of %d rows) stand in for it\n",
          o->tokens, cfg->model_max_length);
  printf ("  backend                %s\n", label);
  KinBenchStditFlops fl;
  kin_bench_stdit_flops (cfg, 2, o->frames, o->height / 8, o->width / 8, cfg->model_max_length,
                         o->tokens, &fl);
  double work = (double) fl.total * o->steps;
  if (g_strcmp0 (be->name, "cpu") == 0 && work > 5e12)
    printf ("  note                   %.0f TFLOP to run on the CPU: expect a long wait (a small run: "
            "--depth 1 --frames 2 --size 64 --steps 5)\n", work / 1e12);
}

static int
report (Gen *g, const KinStditConfig *cfg, const GenOptions *o, KinDType dtype, double sample_s,
        double decode_s, gboolean finite)
{
  int h = o->height / 8, w = o->width / 8;
  KinBenchStditFlops fl;
  kin_bench_stdit_flops (cfg, 2, o->frames, h, w, cfg->model_max_length, o->tokens, &fl);
  double per_step = sample_s / o->steps;
  double rate = (double) fl.total * o->steps / sample_s / 1e12;
  g_autofree double *sorted = g_memdup2 (g->step_s, sizeof (double) * o->steps);
  qsort (sorted, o->steps, sizeof (double), cmp_double);
  printf ("  sampling               %8.2f s     %d step%s, %.3f s per step (median %.3f, first %.3f "
          "incl. buffer setup)\n", sample_s, o->steps, o->steps == 1 ? "" : "s", per_step, sorted[o->steps / 2], g->step_s[0]);
  printf ("  sampling rate          %10.4f TFLOP/s  (%.3f TFLOP per step: one forward of the CFG pair)\n",
          rate, fl.total / 1e12);
  printf ("  VAE decode             %8.2f s     %d frame%s, %.1f ms per frame\n", decode_s, o->frames,
          o->frames == 1 ? "" : "s", decode_s * 1e3 / o->frames);
  printf ("  total                  %8.2f s     sampling + decode (building the random models not "
          "counted)\n", sample_s + decode_s);
  kin_bench_print_peak_memory (g->be, NULL);
  g_clear_pointer (&g->x, kin_tensor_free);
  g_clear_pointer (&g->out, kin_tensor_free);
  int64_t rows = MIN ((int64_t) 2 * o->frames * (h / 2) * (w / 2), MLP_CHUNK_ROWS);
  g_autoptr (GError) error = NULL;
  double base = kin_bench_linear_tflops (g->be, dtype, rows, cfg->hidden_size, cfg->mlp_hidden, 1,
                                         3, &error);
  if (base <= 0)
    return fail (error ? error->message : "the baseline linear failed");
  printf ("  baseline linear        %10.4f TFLOP/s  backend linear [%" G_GINT64_FORMAT " × %d]·[%d × %d]ᵀ "
          "%s (mlp.fc1), same run\n", base, rows, cfg->hidden_size, cfg->mlp_hidden,
          cfg->hidden_size, kin_dtype_name (dtype));
  printf ("  ratio                  %10.2f  sampling TFLOP/s ÷ baseline\n", rate / base);
  printf ("  output finite          %s\n", finite ? "yes" : "NO");
  return finite ? 0 : 1;
}

/* Sampling, then decoding, then the report. */
static int
run (Gen *g, KinVae *vae, const KinStditConfig *cfg, const GenOptions *o, KinDType dtype,
     float *sample, size_t n)
{
  g_autoptr (GError) error = NULL;
  if (!prepare (g, cfg, o, &error))
    return fail (error->message);
  gint64 t0 = g_get_monotonic_time ();
  if (!sample_chain (g, cfg, o, sample, &error))
    return fail (error->message);
  double sample_s = (g_get_monotonic_time () - t0) / 1e6;
  gboolean finite = all_finite (sample, n);
  double decode_s = decode (vae, g->be, sample, o, &finite, &error);
  if (decode_s < 0)
    return fail (error->message);
  return report (g, cfg, o, dtype, sample_s, decode_s, finite);
}

int
kin_bench_generate (int argc, char **argv)
{
  GenOptions o = { NULL, NULL, NULL, 28, 16, 0, 0, 100, 120, 4, 7.0, 42 };
  g_autoptr (GError) error = NULL;
  if (!parse_options (&o, &argc, &argv, &error)) {
    fprintf (stderr, "kinora-cli bench generate: %s\n", error->message);
    return 2;
  }
  const char *bad = check_options (&o);
  KinDType dtype = KIN_DTYPE_BF16;
  if (bad == NULL && o.dtype != NULL && !kin_bench_parse_dtype (o.dtype, &dtype))
    bad = "--dtype takes bf16, f16 or f32";
  if (bad != NULL) {
    fprintf (stderr, "kinora-cli bench generate: %s\n", bad);
    return 2;
  }
  int status = 0;
  KinBackend *be = kin_bench_backend ("generate", o.backend, &status);
  if (be == NULL)
    return status;
  KinStditConfig cfg;
  if (!kin_bench_stdit_config (&cfg, o.depth, &error))
    return fail (error->message);
  int h = o.height / 8, w = o.width / 8;
  print_header (&o, &cfg, dtype, be);
  double need = kin_bench_stdit_bytes (&cfg, dtype, 2, o.frames, h, w) + kin_bench_vae_bytes (o.frames, o.micro_batch, o.width, o.height);
  if (g_strcmp0 (be->name, "cpu") == 0)      /* host weights + loaded copy for a moment */
    need += kin_bench_stdit_bytes (&cfg, dtype, 0, 0, 0, 0);
  g_autofree char *fit = kin_bench_fit_problem (be, need, "use fewer --frames, a smaller --size or --depth");
  if (fit != NULL)
    return fail (fit);
  fflush (stdout);

  kin_bench_reset_peak_memory (be);
  gint64 t0 = g_get_monotonic_time ();
  double wbytes = 0;
  KinVaeConfig vcfg;
  g_autoptr (KinStdit) m = kin_bench_stdit_random (&cfg, dtype, be, &wbytes, &error);
  g_autoptr (KinVae) vae = m ? kin_bench_vae_random_decoder (be, &vcfg, &error) : NULL;
  if (vae == NULL)
    return fail (error->message);
  printf ("  models built           %8.2f s     STDiT %.2f GiB %s, VAE decoder F32\n",
          (g_get_monotonic_time () - t0) / 1e6, wbytes / (1 << 30), kin_dtype_name (dtype));
  fflush (stdout);

  Gen g = { .m = m, .be = be, .steps = o.steps, .step_s = g_new0 (double, o.steps) };
  size_t n = (size_t) cfg.in_channels * o.frames * h * w;
  g_autofree float *sample = g_new (float, n);
  int rc = run (&g, vae, &cfg, &o, dtype, sample, n);
  kin_tensor_free (g.x);
  kin_tensor_free (g.out);
  kin_tensor_free (g.y);
  g_free (g.mask);
  g_free (g.step_s);
  return rc;
}
