/* test-cuda-pipeline.c — the pipeline on the CUDA backend with a tiny random pack: a run whose
 * denoising steps replay a CUDA graph gives the same latents as an eager run (also with a frame
 * mask that changes during sampling, which re-captures); memory does not grow job by job; F32
 * linear weights are stored BF16 on the device; and (on the emulator, which can cap device
 * memory) a device out-of-memory is a recoverable OUT_OF_MEMORY error that says what to try.
 *
 * Exits 77 (skipped) when kin_backend_cuda() fails: no module, no driver or no device. */
#include "kin-backend-cuda.h"
#include "kin-error.h"
#include "kin-pipeline.h"
#include "kin-stdit-private.h"
#include "kin-test-pack.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static KinBackend *gpu;
static char *packdir;

static KinPipeline *
open_pack (KinBackend *be)
{
  g_autofree char *t = g_build_filename (packdir, "transformer", NULL);
  g_autofree char *e = g_build_filename (packdir, "text_encoder", NULL);
  g_autofree char *v = g_build_filename (packdir, "vae", NULL);
  KinModelPaths paths = { t, e, v };
  g_autoptr (GError) error = NULL;
  KinPipeline *p = kin_pipeline_new (&paths, be, KIN_MEMORY_BALANCED, &error);
  g_assert_no_error (error);
  return p;
}

/* Small enough for the emulator: 16×16 pixels (2×2 latents), 2 frames. */
static KinRequest
small_request (guint64 seed)
{
  KinRequest r = { .prompt = (char *) "a red circle moving right", .height = 16, .width = 16,
                   .frames = 2, .steps = 4, .guidance = 4.0f, .seed = seed };
  return r;
}

/* One generation; returns the clip and how many graph replays it queued. */
static KinClip *
run (KinPipeline *p, const KinRequest *r, gboolean graphs, guint64 *launches)
{
  g_autoptr (GError) error = NULL;
  kin_pipeline_set_graphs (p, graphs);
  guint64 before = kin_backend_cuda_graph_launches (gpu);
  KinClip *clip = kin_pipeline_generate (p, r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (clip);
  *launches = kin_backend_cuda_graph_launches (gpu) - before;
  return clip;
}

static void
expect_same (const char *what, const float *a, const float *b, size_t n)
{
  double md = 0, mx = 1e-30;
  for (size_t i = 0; i < n; i++) {
    g_assert_false (isnan (a[i]) || isnan (b[i]));
    md = MAX (md, fabs ((double) a[i] - b[i]));
    mx = MAX (mx, fabs ((double) b[i]));
  }
  g_test_message ("%s: max |difference| %.3e (max |reference| %.3f)", what, md, mx);
  /* the same kernels on the same data in the same order: equal on the emulator; a GPU may pick
   * other cuBLAS kernels inside a graph, so allow f32 noise there */
  g_assert_cmpfloat (md, <=, 1e-5 * mx);
}

static void
expect_same_latents (const char *what, const KinClip *a, const KinClip *b)
{
  expect_same (what, a->latents, b->latents,
               (size_t) a->latent_channels * a->latent_frames * a->latent_h * a->latent_w);
}

static gboolean
on_emulator (void)
{
  return strstr (kin_backend_cuda_describe (gpu), "emulated") != NULL;
}

/* Graphed sampling against eager sampling, memory after jobs, and out of memory, on one
 * pipeline (a generation on the emulator takes a while). */
static void
test_graphs (void)
{
  g_autoptr (KinPipeline) p = open_pack (gpu);
  uint64_t base, after_job, after_edit, peak, total;
  g_assert_true (kin_backend_memory_stats (gpu, &base, &peak, &total));
  kin_backend_reset_peak_memory (gpu);

  KinRequest r = small_request (11);
  guint64 eager_launches, graph_launches;
  g_autoptr (KinClip) eager = run (p, &r, FALSE, &eager_launches);
  g_autoptr (KinClip) graphed = run (p, &r, TRUE, &graph_launches);
  kin_backend_memory_stats (gpu, &after_job, &peak, NULL);
  g_assert_cmpuint (eager_launches, ==, 0);
  /* step 1 eager, step 2 captured and launched, steps 3 and 4 replayed */
  g_assert_cmpuint (graph_launches, ==, r.steps - 1);
  expect_same_latents ("graphed vs eager", graphed, eager);

  /* editing: frames join the denoising part-way, so the x_mask changes during sampling (the new
   * layout runs eagerly once, then is captured again) */
  KinRequest e = small_request (12);
  e.cond = KIN_COND_EDIT;
  e.edit_strength = 0.5f;
  e.cond_latents = eager->latents;
  e.cond_latent_channels = eager->latent_channels, e.cond_latent_frames = eager->latent_frames;
  e.cond_latent_h = eager->latent_h, e.cond_latent_w = eager->latent_w;
  e.steps = 6;
  guint64 l1, l2;
  g_autoptr (KinClip) edit_eager = run (p, &e, FALSE, &l1);
  g_autoptr (KinClip) edit_graphed = run (p, &e, TRUE, &l2);
  kin_backend_memory_stats (gpu, &after_edit, NULL, NULL);
  g_assert_cmpuint (l1, ==, 0);
  g_assert_cmpuint (l2, >, 0);
  g_assert_cmpuint (l2, <, (guint64) e.steps - 1);
  expect_same_latents ("graphed vs eager, edit with a changing frame mask", edit_graphed, edit_eager);

  /* what stays after a job (the transformer's activation buffers) does not grow job by job, and
   * the graphs' memory is given back */
  g_test_message ("models %.2f MiB, after a job %.2f MiB, peak %.2f MiB, device %.1f GiB",
                  base / 1048576.0, after_job / 1048576.0, peak / 1048576.0, total / 1073741824.0);
  g_assert_cmpuint (after_edit, ==, after_job);
  g_assert_cmpuint (peak, >=, after_job);
  g_assert_cmpuint (after_job, >=, base);

  if (!on_emulator ()) {
    g_test_message ("out of memory: needs the emulator's memory cap (KIN_CUDA_EMU_MEMORY_LIMIT)");
    return;
  }
  /* a device with 64 KiB to spare: a 16-frame 256×256 clip cannot fit */
  g_autoptr (GError) error = NULL;
  g_autofree char *cap = g_strdup_printf ("%" G_GUINT64_FORMAT, after_edit + (64 << 10));
  g_setenv ("KIN_CUDA_EMU_MEMORY_LIMIT", cap, TRUE);
  KinRequest big = r;
  big.height = big.width = 256;
  big.frames = 16;
  g_autoptr (KinClip) none = kin_pipeline_generate (p, &big, NULL, NULL, NULL, &error);
  g_unsetenv ("KIN_CUDA_EMU_MEMORY_LIMIT");
  g_assert_null (none);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY);
  g_test_message ("out of memory: %s", error->message);
  g_assert_nonnull (strstr (error->message, "try a smaller size or fewer frames, the CPU device, or low memory mode"));
  g_clear_error (&error);
  uint64_t after;
  kin_backend_memory_stats (gpu, &after, NULL, NULL);
  g_assert_cmpuint (after, <=, after_edit);  /* nothing of the failed job is left */
  /* recoverable: the same small request works again and gives the same clip */
  g_autoptr (KinClip) again = run (p, &r, TRUE, &graph_launches);
  expect_same_latents ("after out of memory", again, graphed);
}

static void
test_graphs_off (void)
{
  /* $KIN_CUDA_GRAPHS=0 turns them off for a new pipeline */
  g_setenv ("KIN_CUDA_GRAPHS", "0", TRUE);
  g_autoptr (KinPipeline) off = open_pack (gpu);
  g_unsetenv ("KIN_CUDA_GRAPHS");
  g_autoptr (GError) error = NULL;
  KinRequest r = small_request (3);
  r.steps = 3;
  guint64 before = kin_backend_cuda_graph_launches (gpu);
  g_autoptr (KinClip) c = kin_pipeline_generate (off, &r, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kin_backend_cuda_graph_launches (gpu), ==, before);
}

/* One STDiT forward of batch 2, 2 frames, h×w latents at t = 500 on random inputs (fixed by
 * @seed); returns the output on the host.  @y is shared between calls so that its address stays. */
static float *
stdit_forward (KinStdit *m, const KinTensor *y, int h, int w, guint32 seed)
{
  const KinStditConfig *cfg = kin_stdit_get_config (m);
  const int B = 2, T = 2, L = (int) y->shape[1];
  size_t n = (size_t) B * cfg->in_channels * T * h * w;
  g_autofree float *xh = g_new (float, n);
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    xh[i] = (float) g_rand_double_range (rand, -1, 1);
  int64_t xs[5] = { B, cfg->in_channels, T, h, w };
  g_autoptr (KinTensor) x = kin_tensor_from_host_f32 (gpu, xh, 5, xs, NULL);
  int64_t os[5] = { B, cfg->out_channels, T, h, w };
  g_autoptr (GError) error = NULL;
  g_autoptr (KinTensor) out = kin_tensor_new (gpu, KIN_DTYPE_F32, 5, os, &error);
  g_assert_no_error (error);
  g_autofree int32_t *mask = g_new (int32_t, (size_t) B * L);
  for (int i = 0; i < B * L; i++)
    mask[i] = i % L < 3 + i / L; /* 3 and 4 real tokens */
  const float ts[2] = { 500, 500 }, ph = 8.0f * h, pw = 8.0f * w, nf = T, ar = ph / pw, fps = 24;
  KinStditInput in = { .x = x, .timestep = ts, .y = y, .mask = mask, .height = &ph, .width = &pw,
                       .num_frames = &nf, .ar = &ar, .fps = &fps, .cond_rows = 1 };
  g_assert_true (kin_stdit_forward (m, &in, out, &error));
  g_assert_no_error (error);
  return kin_tensor_to_host_f32 (out);
}

/* A graphed model that changes size: the graph of the old size is dropped with its work buffers
 * and never replays on the new ones (even when they land at the old addresses); coming back to
 * the old size captures anew.  Each output against an eager model's. */
static void
test_graphs_new_sizes (void)
{
  g_autofree char *t = g_build_filename (packdir, "transformer", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinStdit) eager = kin_stdit_open (t, gpu, &error);
  g_assert_no_error (error);
  g_autoptr (KinStdit) g = kin_stdit_open (t, gpu, &error);
  g_assert_no_error (error);
  kin_stdit_set_graphs (g, TRUE);
  const KinStditConfig *cfg = kin_stdit_get_config (g);
  const int L = 6, C = cfg->caption_channels;
  g_autofree float *yh = g_new (float, (size_t) 2 * L * C);
  for (int i = 0; i < 2 * L * C; i++)
    yh[i] = (float) sin (0.37 * i);
  int64_t ys[3] = { 2, L, C };
  g_autoptr (KinTensor) y = kin_tensor_from_host_f32 (gpu, yh, 3, ys, NULL);
  const size_t na = (size_t) 2 * cfg->out_channels * 2 * 2 * 2;
  const size_t nb = (size_t) 2 * cfg->out_channels * 2 * 4 * 2;
  g_autofree float *ref_a = stdit_forward (eager, y, 2, 2, 1);
  g_autofree float *ref_b = stdit_forward (eager, y, 4, 2, 2);
  for (int i = 0; i < 3; i++) {  /* eager, capture, replay */
    g_autofree float *o = stdit_forward (g, y, 2, 2, 1);
    expect_same ("2×2 latents, graphed", o, ref_a, na);
  }
  g_assert_cmpuint (kin_stdit_graph_captures (g), ==, 1);
  g_assert_cmpuint (kin_stdit_graph_replays (g), ==, 2);
  for (int i = 0; i < 3; i++) {
    g_autofree float *o = stdit_forward (g, y, 4, 2, 2);
    expect_same ("4×2 latents after 2×2, graphed", o, ref_b, nb);
  }
  g_assert_cmpuint (kin_stdit_graph_captures (g), ==, 2);
  g_assert_cmpuint (kin_stdit_graph_replays (g), ==, 4);
  g_autofree float *back = stdit_forward (g, y, 2, 2, 1);  /* eager again: the old graph is gone */
  expect_same ("2×2 latents again", back, ref_a, na);
  g_assert_cmpuint (kin_stdit_graph_replays (g), ==, 4);
}

static void
test_bf16_weights (void)
{
  g_autofree char *t = g_build_filename (packdir, "transformer", NULL);
  g_autoptr (GError) error = NULL;
  /* the pack stores F32; the GPU gets BF16 linear weights, the CPU keeps F32 */
  g_autoptr (KinStdit) g = kin_stdit_open (t, gpu, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g->blocks[0].mlp_fc1.weight->dtype, ==, KIN_DTYPE_BF16);
  g_assert_cmpint (g->final_linear.weight->dtype, ==, KIN_DTYPE_BF16);
  g_assert_cmpint (g->blocks[0].mlp_fc1.bias->dtype, ==, KIN_DTYPE_F32);
  g_autoptr (KinStdit) c = kin_stdit_open (t, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  g_assert_cmpint (c->blocks[0].mlp_fc1.weight->dtype, ==, KIN_DTYPE_F32);
  /* and the option turns it off for models loaded afterwards */
  g_assert_true (kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_BF16_WEIGHTS, 0));
  g_autoptr (KinStdit) f = kin_stdit_open (t, gpu, &error);
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_BF16_WEIGHTS, 1);
  g_assert_no_error (error);
  g_assert_cmpint (f->blocks[0].mlp_fc1.weight->dtype, ==, KIN_DTYPE_F32);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr (GError) error = NULL;
  gpu = kin_backend_cuda (&error);
  if (gpu == NULL) {
    printf ("SKIP: %s\n", error->message);
    return 77;
  }
  printf ("# CUDA: %s\n", kin_backend_cuda_describe (gpu));
  packdir = g_dir_make_tmp ("kin-cuda-pack-XXXXXX", NULL);
  if (!kin_test_pack_write (packdir, 0, &error))
    g_error ("cannot write the test pack: %s", error->message);
  g_test_add_func ("/cuda-pipeline/bf16-weights", test_bf16_weights);
  g_test_add_func ("/cuda-pipeline/graphs-memory-oom", test_graphs);
  g_test_add_func ("/cuda-pipeline/graphs-off", test_graphs_off);
  g_test_add_func ("/cuda-pipeline/graphs-new-sizes", test_graphs_new_sizes);
  int rc = g_test_run ();
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", packdir);
  (void) !system (cmd);
  return rc;
}
