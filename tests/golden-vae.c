/* golden-vae.c — golden runner for the vae case: diffusers AutoencoderKL (encoder intermediates,
 * moments, posterior, decoder intermediates, decoded image) and Open-Sora's VideoAutoencoderKL
 * (folded frames, posterior sample with the recorded noise, ×0.18215, decode).  Everything is
 * read from the sidecar config and the tensor shapes, so other sizes and seeds run unchanged. */
#include "kin-golden.h"
#include "kin-error.h"
#include "kin-vae.h"
#include <stdio.h>

/* Compares each intermediate the model reports with golden.<name>, when it was recorded. */
static void
compare_tap (const char *name, const KinTensor *t, gpointer user_data)
{
  KinGoldenCase *gc = user_data;
  g_autofree char *golden = g_strconcat ("golden.", name, NULL);
  if (!kin_weights_contains (gc->tensors, golden))
    return;
  g_autofree float *host = kin_tensor_to_host_f32 (t);
  kin_golden_compare (gc, golden, host, (size_t) kin_tensor_numel (t));
}

/* Uploads input tensor @name with its stored shape. */
static KinTensor *
upload_input (KinGoldenCase *gc, const char *name, GError **error)
{
  const KinWeightEntry *e = kin_golden_entry (gc, name, error);
  if (e == NULL)
    return NULL;
  g_autofree float *data = kin_golden_tensor_f32 (gc, name, NULL, error);
  if (data == NULL)
    return NULL;
  return kin_tensor_from_host_f32 (gc->be, data, e->ndim, e->shape, error);
}

/* The diffusers config recorded in the sidecar ("vae"), or the shapes when it is absent. */
static gboolean
read_config (KinGoldenCase *gc, KinVaeConfig *cfg, GError **error)
{
  kin_vae_config_init_sd (cfg);
  JsonNode *node = kin_golden_config_node (gc, "vae");
  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node)) {
    if (!kin_vae_config_from_json_object (cfg, json_node_get_object (node), error))
      return FALSE;
  } else if (!kin_vae_config_infer (cfg, gc->tensors, error)) {
    return FALSE;
  }
  double sf = kin_golden_config_double (gc, "scaling_factor", cfg->scaling_factor);
  cfg->scaling_factor = (float) kin_golden_config_double (gc, "scale_factor", sf);
  return TRUE;
}

/* The image part: encoder → moments → posterior statistics → decode(mean). */
static gboolean
run_image (KinGoldenCase *gc, KinVae *vae, GError **error)
{
  const KinVaeConfig *cfg = kin_vae_get_config (vae);
  g_autoptr (KinTensor) image = upload_input (gc, "input.image", error);
  if (image == NULL)
    return FALSE;
  kin_vae_set_tap (vae, compare_tap, gc);
  g_autoptr (KinTensor) moments = kin_vae_encode_moments (vae, image, error);   /* [N, 2L, h, w] */
  if (moments == NULL)
    return FALSE;
  int64_t n = moments->shape[0], hw = moments->shape[2] * moments->shape[3];
  int L = cfg->latent_channels;
  size_t numel = (size_t) (n * L * hw);
  g_autofree float *m = kin_tensor_to_host_f32 (moments);
  g_autofree float *mean = g_new (float, numel);
  g_autofree float *logvar = g_new (float, numel);
  g_autofree float *std = g_new (float, numel);
  kin_vae_posterior_split (m, n, L, hw, mean, logvar, std);
  kin_golden_compare (gc, "golden.mean", mean, numel);
  kin_golden_compare (gc, "golden.logvar", logvar, numel);
  kin_golden_compare (gc, "golden.std", std, numel);
  int64_t zshape[4] = { n, L, moments->shape[2], moments->shape[3] };
  g_autoptr (KinTensor) z = kin_tensor_from_host_f32 (gc->be, mean, 4, zshape, error);
  if (z == NULL)
    return FALSE;
  g_autoptr (KinTensor) decoded = kin_vae_decode_frames (vae, z, error);         /* taps compare */
  kin_vae_set_tap (vae, NULL, NULL);
  return decoded != NULL;
}

/* All recorded posterior noise draws (golden.video.noise.0, .1, …) in call order. */
static float *
collect_noise (KinGoldenCase *gc, size_t *total)
{
  GArray *all = g_array_new (FALSE, FALSE, sizeof (float));
  for (int k = 0;; k++) {
    g_autofree char *name = g_strdup_printf ("golden.video.noise.%d", k);
    if (!kin_weights_contains (gc->tensors, name))
      break;
    size_t n = 0;
    g_autofree float *draw = kin_golden_tensor_f32 (gc, name, &n, NULL);
    if (draw != NULL)
      g_array_append_vals (all, draw, (guint) n);
  }
  *total = all->len;
  return (float *) g_array_free (all, FALSE);
}

/* The wrapper part: encode_video with the recorded noise, then decode_video. */
static gboolean
run_video (KinGoldenCase *gc, KinVae *vae, GError **error)
{
  if (!kin_weights_contains (gc->tensors, "input.video"))
    return TRUE;
  g_autoptr (KinTensor) video = upload_input (gc, "input.video", error);
  if (video == NULL)
    return FALSE;
  int mb = (int) kin_golden_config_int (gc, "micro_batch_size", 0);
  size_t n_noise = 0;
  g_autofree float *noise = collect_noise (gc, &n_noise);
  KinVaeEncodeOptions eo = { .micro_batch = mb, .use_mean = n_noise == 0, .noise = noise };
  g_autoptr (KinTensor) latent = kin_vae_encode_video (vae, video, &eo, error);  /* [B, L, T, h, w] */
  if (latent == NULL)
    return FALSE;
  g_autofree float *lat = kin_tensor_to_host_f32 (latent);
  kin_golden_compare (gc, "golden.video.latent", lat, (size_t) kin_tensor_numel (latent));
  KinVaeDecodeOptions dopt = { .micro_batch = mb, .tiling_mode = KIN_VAE_TILING_OFF };
  g_autoptr (KinTensor) decoded = kin_vae_decode_video (vae, latent, &dopt, error);
  if (decoded == NULL)
    return FALSE;
  g_autofree float *dec = kin_tensor_to_host_f32 (decoded);
  kin_golden_compare (gc, "golden.video.decoded", dec, (size_t) kin_tensor_numel (decoded));
  return TRUE;
}

gboolean
kin_golden_run_vae (KinGoldenCase *gc, GError **error)
{
  if (gc->tensors == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "case %s has no tensor file", gc->case_name);
    return FALSE;
  }
  KinVaeConfig cfg;
  if (!read_config (gc, &cfg, error))
    return FALSE;
  g_autoptr (KinVae) vae = kin_vae_new (gc->be, gc->tensors, &cfg, KIN_VAE_BOTH, error);
  if (vae == NULL)
    return FALSE;
  printf ("  config: %d blocks, %d layers, %d groups, latent %d, %s key names\n", cfg.n_blocks,
          cfg.layers_per_block, cfg.norm_num_groups, cfg.latent_channels,
          kin_vae_dialect_name (kin_vae_get_dialect (vae)));
  return run_image (gc, vae, error) && run_video (gc, vae, error);
}
