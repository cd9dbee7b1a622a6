/* test-vae.c — SD VAE: configuration, the three key dialects, bad input, the video wrapper,
 * the posterior, 8-bit output, and tiled against untiled decoding, on small random VAEs. */
#include "kin-vae.h"
#include "kin-error.h"
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* 3 blocks of different widths so a wrong (unreversed) LDM decoder index cannot go unnoticed;
 * 32 groups (the SD default) so the config can also be inferred from shapes alone. */
static void
small_config (KinVaeConfig *cfg)
{
  kin_vae_config_init_sd (cfg);
  cfg->n_blocks = 3;
  cfg->block_out_channels[0] = 32;
  cfg->block_out_channels[1] = 64;
  cfg->block_out_channels[2] = 96;
  cfg->layers_per_block = 1;
}

static char *
make_tmpdir (void)
{
  GError *error = NULL;
  char *dir = g_dir_make_tmp ("kin-test-vae-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

static void
rm_rf (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)) != NULL) {
    g_autofree char *p = g_build_filename (dir, name, NULL);
    g_remove (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (dir);
}

typedef char *(*RenameFunc) (const char *name, int n_blocks, gboolean *as_conv);

/* Writes every tensor of @ws to @path, renamed by @rename (NULL = as is), skipping @skip.
 * Attention projections that the rename marks as_conv get the LDM shape [C, C, 1, 1]. */
static void
write_set (KinWeights *ws, const char *path, RenameFunc rename, int n_blocks, const char *skip)
{
  guint n = kin_weights_count (ws), k = 0;
  g_autofree char **names = g_new0 (char *, n);
  g_autofree KinDType *dtypes = g_new0 (KinDType, n);
  g_autofree int *ndims = g_new0 (int, n);
  g_autofree int64_t *shapes = g_new0 (int64_t, (gsize) n * KIN_MAX_DIMS);
  g_autofree const int64_t **shape_ptrs = g_new0 (const int64_t *, n);
  g_autofree const void **datas = g_new0 (const void *, n);
  for (guint i = 0; i < n; i++) {
    const KinWeightEntry *e = kin_weights_nth (ws, i);
    if (skip && strcmp (e->name, skip) == 0)
      continue;
    gboolean as_conv = FALSE;
    names[k] = rename ? rename (e->name, n_blocks, &as_conv) : g_strdup (e->name);
    dtypes[k] = e->dtype;
    ndims[k] = e->ndim;
    memcpy (shapes + k * KIN_MAX_DIMS, e->shape, sizeof (int64_t) * e->ndim);
    if (as_conv && e->ndim == 2) {
      ndims[k] = 4;
      shapes[k * KIN_MAX_DIMS + 2] = shapes[k * KIN_MAX_DIMS + 3] = 1;
    }
    shape_ptrs[k] = shapes + k * KIN_MAX_DIMS;
    datas[k] = e->data;
    k++;
  }
  GError *error = NULL;
  gboolean ok = kin_safetensors_write (path, k, (const char *const *) names, dtypes, ndims,
                                       shape_ptrs, datas, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  for (guint i = 0; i < k; i++)
    g_free (names[i]);
}

static char *
regex_sub (const char *s, const char *pattern, const char *repl)
{
  g_autoptr (GRegex) re = g_regex_new (pattern, 0, 0, NULL);
  return g_regex_replace (re, s, -1, 0, repl, 0, NULL);
}

/* diffusers → old diffusers attention names, written independently of kin-vae.c's table. */
static char *
rename_old (const char *name, int n_blocks, gboolean *as_conv)
{
  static const char *const map[][2] = {
    { "attentions.0.to_q.", "attentions.0.query." }, { "attentions.0.to_k.", "attentions.0.key." },
    { "attentions.0.to_v.", "attentions.0.value." }, { "attentions.0.to_out.0.", "attentions.0.proj_attn." },
  };
  for (guint i = 0; i < G_N_ELEMENTS (map); i++)
    if (strstr (name, map[i][0]) != NULL)
      return regex_sub (name, map[i][0], map[i][1]);
  return g_strdup (name);
}

static gboolean
reverse_cb (const GMatchInfo *info, GString *res, gpointer data)
{
  int n_blocks = GPOINTER_TO_INT (data);
  g_autofree char *idx = g_match_info_fetch (info, 1);
  g_autofree char *rest = g_match_info_fetch (info, 2);
  g_string_append_printf (res, "decoder.up.%d.%s", n_blocks - 1 - atoi (idx), rest);
  return FALSE;
}

/* diffusers → LDM (spec §3.5 table), with attention projections as 1×1 convs. */
static char *
rename_ldm (const char *name, int n_blocks, gboolean *as_conv)
{
  g_autofree char *a = regex_sub (name, "encoder\\.down_blocks\\.(\\d+)\\.resnets\\.(\\d+)\\.",
                                  "encoder.down.\\1.block.\\2.");
  g_autofree char *b = regex_sub (a, "encoder\\.down_blocks\\.(\\d+)\\.downsamplers\\.0\\.",
                                  "encoder.down.\\1.downsample.");
  g_autofree char *c = regex_sub (b, "decoder\\.up_blocks\\.(\\d+)\\.resnets\\.", "decoder.up_blocks.\\1.block.");
  g_autofree char *d = regex_sub (c, "decoder\\.up_blocks\\.(\\d+)\\.upsamplers\\.0\\.", "decoder.up_blocks.\\1.upsample.");
  g_autoptr (GRegex) rev = g_regex_new ("decoder\\.up_blocks\\.(\\d+)\\.(.*)", 0, 0, NULL);
  g_autofree char *e = g_regex_replace_eval (rev, d, -1, 0, 0, reverse_cb, GINT_TO_POINTER (n_blocks), NULL);
  g_autofree char *f = regex_sub (e, "mid_block\\.resnets\\.0\\.", "mid.block_1.");
  g_autofree char *g = regex_sub (f, "mid_block\\.resnets\\.1\\.", "mid.block_2.");
  g_autofree char *h = regex_sub (g, "mid_block\\.attentions\\.0\\.group_norm\\.", "mid.attn_1.norm.");
  g_autofree char *i = regex_sub (h, "mid_block\\.attentions\\.0\\.to_([qkv])\\.", "mid.attn_1.\\1.");
  g_autofree char *j = regex_sub (i, "mid_block\\.attentions\\.0\\.to_out\\.0\\.", "mid.attn_1.proj_out.");
  g_autofree char *k = regex_sub (j, "conv_shortcut", "nin_shortcut");
  char *l = regex_sub (k, "conv_norm_out", "norm_out");
  *as_conv = strstr (l, "attn_1.") != NULL && strstr (l, ".weight") != NULL && strstr (l, ".norm.") == NULL;
  return l;
}

static char *
rename_ldm_prefixed (const char *name, int n_blocks, gboolean *as_conv)
{
  g_autofree char *l = rename_ldm (name, n_blocks, as_conv);
  return g_strconcat ("first_stage_model.", l, NULL);
}

static float
urand (guint32 *s)
{
  *s = *s * 1664525u + 1013904223u;
  return (float) ((*s >> 8) / 16777216.0);
}

/* A host tensor of uniform values in [lo, hi), uploaded. */
static KinTensor *
random_tensor (int ndim, const int64_t *shape, guint32 seed, float lo, float hi)
{
  int64_t n = 1;
  for (int d = 0; d < ndim; d++)
    n *= shape[d];
  g_autofree float *v = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    v[i] = lo + (hi - lo) * urand (&seed);
  GError *error = NULL;
  KinTensor *t = kin_tensor_from_host_f32 (kin_backend_cpu (), v, ndim, shape, &error);
  g_assert_no_error (error);
  return t;
}

static double
max_abs_diff (const KinTensor *a, const KinTensor *b, double *max_ref)
{
  g_assert_cmpint (kin_tensor_numel (a), ==, kin_tensor_numel (b));
  g_autofree float *x = kin_tensor_to_host_f32 (a);
  g_autofree float *y = kin_tensor_to_host_f32 (b);
  double m = 0, r = 0;
  for (int64_t i = 0; i < kin_tensor_numel (a); i++) {
    m = MAX (m, fabs ((double) x[i] - y[i]));
    r = MAX (r, fabs ((double) y[i]));
  }
  if (max_ref)
    *max_ref = r;
  return m;
}

static KinVae *
load_ok (const char *path, KinVaeParts parts)
{
  GError *error = NULL;
  KinVae *vae = kin_vae_load (kin_backend_cpu (), path, parts, &error);
  g_assert_no_error (error);
  g_assert_nonnull (vae);
  return vae;
}

/* ---- configuration ------------------------------------------------------------------------ */

static const char sd_config_json[] =
  "{\"_class_name\": \"AutoencoderKL\", \"_diffusers_version\": \"0.4.2\", \"act_fn\": \"silu\","
  " \"block_out_channels\": [128, 256, 512, 512],"
  " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],"
  " \"in_channels\": 3, \"latent_channels\": 4, \"layers_per_block\": 2, \"norm_num_groups\": 32,"
  " \"out_channels\": 3, \"sample_size\": 256,"
  " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}";

static JsonObject *
parse_object (JsonParser *parser, const char *text)
{
  GError *error = NULL;
  json_parser_load_from_data (parser, text, -1, &error);
  g_assert_no_error (error);
  return json_node_get_object (json_parser_get_root (parser));
}

static void
test_config_json (void)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  KinVaeConfig cfg;
  kin_vae_config_init_sd (&cfg);
  cfg.block_out_channels[0] = 7;   /* overwritten by the file */
  GError *error = NULL;
  g_assert_true (kin_vae_config_from_json_object (&cfg, parse_object (parser, sd_config_json), &error));
  g_assert_no_error (error);
  g_assert_cmpint (cfg.n_blocks, ==, 4);
  g_assert_cmpint (cfg.block_out_channels[0], ==, 128);
  g_assert_cmpint (cfg.block_out_channels[3], ==, 512);
  g_assert_cmpint (cfg.layers_per_block, ==, 2);
  g_assert_cmpint (cfg.norm_num_groups, ==, 32);
  g_assert_cmpfloat (cfg.scaling_factor, ==, 0.18215f);   /* not in the file: the default */
  g_assert_cmpfloat (cfg.norm_eps, ==, 1e-6f);
  g_assert_true (cfg.use_quant_conv && cfg.use_post_quant_conv && cfg.mid_block_add_attention);
  g_assert_cmpint (kin_vae_config_factor (&cfg), ==, 8);

  /* block types that disagree with block_out_channels */
  g_autoptr (JsonParser) p2 = json_parser_new ();
  kin_vae_config_init_sd (&cfg);
  g_assert_false (kin_vae_config_from_json_object (&cfg, parse_object (p2,
      "{\"block_out_channels\": [32, 64], \"down_block_types\": [\"A\", \"B\", \"C\"]}"), &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE);
  g_assert_nonnull (strstr (error->message, "down_block_types"));
  g_clear_error (&error);

  /* a group count that does not divide a block */
  g_autoptr (JsonParser) p3 = json_parser_new ();
  kin_vae_config_init_sd (&cfg);
  g_assert_false (kin_vae_config_from_json_object (&cfg, parse_object (p3,
      "{\"block_out_channels\": [32, 48], \"norm_num_groups\": 32}"), &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "norm_num_groups 32 does not divide block_out_channels[1] = 48"));
  g_clear_error (&error);

  g_autoptr (JsonParser) p5 = json_parser_new ();
  kin_vae_config_init_sd (&cfg);
  g_assert_false (kin_vae_config_from_json_object (&cfg, parse_object (p5,
      "{\"block_out_channels\": [32, 64], \"up_block_types\": [\"UpDecoderBlock2D\", \"AttnUpDecoderBlock2D\"]}"), &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "AttnUpDecoderBlock2D"));
  g_clear_error (&error);

  g_autoptr (JsonParser) p4 = json_parser_new ();
  kin_vae_config_init_sd (&cfg);
  g_assert_false (kin_vae_config_from_json_object (&cfg, parse_object (p4, "{\"act_fn\": \"gelu\"}"), &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED);
  g_clear_error (&error);
}

static void
test_config_infer (void)
{
  KinVaeConfig cfg, inferred;
  small_config (&cfg);
  cfg.latent_channels = 6;
  cfg.layers_per_block = 2;
  cfg.in_channels = 5;
  cfg.out_channels = 2;
  static const KinVaeDialect dialects[] = { KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_DIALECT_DIFFUSERS_OLD,
                                            KIN_VAE_DIALECT_LDM };
  static const KinVaeParts parts[] = { KIN_VAE_BOTH, KIN_VAE_DECODER, KIN_VAE_ENCODER };
  for (guint d = 0; d < G_N_ELEMENTS (dialects); d++)
    for (guint p = 0; p < G_N_ELEMENTS (parts); p++) {
      g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, dialects[d], parts[p], 1);
      kin_vae_config_init_sd (&inferred);
      GError *error = NULL;
      g_assert_true (kin_vae_config_infer (&inferred, ws, &error));
      g_assert_no_error (error);
      g_assert_cmpint (inferred.n_blocks, ==, 3);
      for (int i = 0; i < 3; i++)
        g_assert_cmpint (inferred.block_out_channels[i], ==, cfg.block_out_channels[i]);
      g_assert_cmpint (inferred.layers_per_block, ==, 2);
      g_assert_cmpint (inferred.latent_channels, ==, 6);
      if (parts[p] & KIN_VAE_ENCODER)
        g_assert_cmpint (inferred.in_channels, ==, 5);
      if (parts[p] & KIN_VAE_DECODER)
        g_assert_cmpint (inferred.out_channels, ==, 2);
      g_assert_true (inferred.mid_block_add_attention);
    }
}

static void
test_sizes (void)
{
  KinVaeConfig cfg;
  kin_vae_config_init_sd (&cfg);
  /* post_quant 1, conv_in 1, mid 4, up blocks 7 + 7 + 8 + 7, conv_out 1 */
  g_assert_cmpint (kin_vae_decoder_convs (&cfg, 1, 32, 32, NULL, 0), ==, 36);
  KinConv2d convs[64];
  int n = kin_vae_decoder_convs (&cfg, 1, 32, 32, convs, 64);
  g_assert_cmpint (convs[n - 1].cin, ==, 128);
  g_assert_cmpint (convs[n - 1].cout, ==, 3);
  g_assert_cmpint (convs[n - 1].h, ==, 256);
  double conv_flops = 0;
  for (int i = 0; i < n; i++)
    conv_flops += 2.0 * convs[i].cout * convs[i].h * convs[i].w * convs[i].cin * convs[i].kh * convs[i].kw;
  double attn = 4 * 2.0 * 1024 * 512 * 512 + 2 * 2.0 * 1024.0 * 1024 * 512;
  g_assert_cmpfloat (fabs (kin_vae_decoder_flops (&cfg, 1, 32, 32) - conv_flops - attn), <, 1.0);

  /* the tile plan at 720p with the defaults: trunk and up block 0 in one pass (118 MiB between
   * stages), then 4 × 7 tiles of 32 latents */
  KinVaeTilePlan plan;
  g_assert_false (kin_vae_tile_plan (&cfg, 1, 32, 32, NULL, &plan));
  g_assert_cmpfloat (kin_vae_decoder_tiled_flops (&cfg, 1, 32, 32, NULL), ==,
                     kin_vae_decoder_flops (&cfg, 1, 32, 32));
  g_assert_true (kin_vae_tile_plan (&cfg, 1, 90, 160, NULL, &plan));
  g_assert_cmpint (plan.untiled_stages, ==, 1);
  g_assert_cmpint (plan.tiles_y, ==, 4);
  g_assert_cmpint (plan.tiles_x, ==, 7);
  g_assert_cmpint (plan.tile_h, ==, 32);
  double untiled = kin_vae_decoder_flops (&cfg, 1, 90, 160);
  double tiled = kin_vae_decoder_tiled_flops (&cfg, 1, 90, 160, NULL);
  g_assert_cmpfloat (tiled, >, 1.5 * untiled);
  g_assert_cmpfloat (tiled, <, 2.5 * untiled);
  /* everything tiled: 28 whole 32×32 decodes */
  KinVaeTiling all = { .trunk_mib = -1 };
  g_assert_cmpfloat (fabs (kin_vae_decoder_tiled_flops (&cfg, 1, 90, 160, &all) -
                           28 * kin_vae_decoder_flops (&cfg, 1, 32, 32)), <, 1e3);
  /* SD decoder at 256×256: about 620 GFLOP, most of it in the 256- and 128-channel convolutions
   * at full resolution (a sanity bound, not a reference value) */
  g_assert_cmpfloat (conv_flops, >, 5.5e11);
  g_assert_cmpfloat (conv_flops, <, 7e11);
}

/* ---- dialects ----------------------------------------------------------------------------- */

static KinTensor *
decode_small (KinVae *vae, guint32 seed)
{
  int64_t zs[4] = { 2, 4, 3, 5 };
  g_autoptr (KinTensor) z = random_tensor (4, zs, seed, -2, 2);
  GError *error = NULL;
  KinTensor *y = kin_vae_decode_frames (vae, z, &error);
  g_assert_no_error (error);
  g_assert_cmpint (y->shape[2], ==, 12);
  g_assert_cmpint (y->shape[3], ==, 20);
  return y;
}

static KinTensor *
encode_small (KinVae *vae, guint32 seed)
{
  int64_t xs[4] = { 1, 3, 16, 24 };
  g_autoptr (KinTensor) x = random_tensor (4, xs, seed, -1, 1);
  GError *error = NULL;
  KinTensor *m = kin_vae_encode_moments (vae, x, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m->shape[1], ==, 8);
  g_assert_cmpint (m->shape[2], ==, 4);
  g_assert_cmpint (m->shape[3], ==, 6);
  return m;
}

static void
test_dialects (void)
{
  KinVaeConfig cfg;
  small_config (&cfg);
  g_autofree char *dir = make_tmpdir ();
  g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_BOTH, 7);
  struct { const char *file; RenameFunc rename; KinVaeDialect dialect; } files[] = {
    { "diffusers.safetensors", NULL, KIN_VAE_DIALECT_DIFFUSERS },
    { "old.safetensors", rename_old, KIN_VAE_DIALECT_DIFFUSERS_OLD },
    { "ldm.safetensors", rename_ldm, KIN_VAE_DIALECT_LDM },
    { "sd-full.safetensors", rename_ldm_prefixed, KIN_VAE_DIALECT_LDM },
  };
  g_autoptr (KinTensor) ref_dec = NULL;
  g_autoptr (KinTensor) ref_enc = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (files); i++) {
    g_autofree char *path = g_build_filename (dir, files[i].file, NULL);
    write_set (ws, path, files[i].rename, cfg.n_blocks, NULL);
    /* no config.json: everything comes from the shapes */
    g_autoptr (KinVae) vae = load_ok (path, KIN_VAE_BOTH);
    g_assert_cmpint (kin_vae_get_dialect (vae), ==, files[i].dialect);
    g_assert_cmpint (kin_vae_get_config (vae)->block_out_channels[2], ==, 96);
    g_autoptr (KinTensor) dec = decode_small (vae, 3);
    g_autoptr (KinTensor) enc = encode_small (vae, 4);
    if (ref_dec == NULL) {
      ref_dec = g_steal_pointer (&dec);
      ref_enc = g_steal_pointer (&enc);
    } else {
      g_assert_cmpfloat (max_abs_diff (dec, ref_dec, NULL), ==, 0.0);
      g_assert_cmpfloat (max_abs_diff (enc, ref_enc, NULL), ==, 0.0);
    }
  }
  /* the random generator's own dialects give the same model */
  for (KinVaeDialect d = KIN_VAE_DIALECT_DIFFUSERS_OLD; d <= KIN_VAE_DIALECT_LDM; d++) {
    g_autoptr (KinWeights) other = kin_vae_random_weights (&cfg, d, KIN_VAE_BOTH, 7);
    GError *error = NULL;
    g_autoptr (KinVae) vae = kin_vae_new (kin_backend_cpu (), other, NULL, KIN_VAE_BOTH, &error);
    g_assert_no_error (error);
    g_assert_cmpint (kin_vae_get_dialect (vae), ==, d);
    g_autoptr (KinTensor) dec = decode_small (vae, 3);
    g_assert_cmpfloat (max_abs_diff (dec, ref_dec, NULL), ==, 0.0);
  }
  rm_rf (dir);
}

/* A diffusers folder: config.json (here with 16 groups, which shapes cannot tell) + weights. */
static void
test_load_folder (void)
{
  KinVaeConfig cfg;
  small_config (&cfg);
  cfg.norm_num_groups = 16;
  cfg.scaling_factor = 0.5f;
  g_autofree char *dir = make_tmpdir ();
  g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS_OLD, KIN_VAE_BOTH, 9);
  g_autofree char *path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *cpath = g_build_filename (dir, "config.json", NULL);
  write_set (ws, path, NULL, cfg.n_blocks, NULL);
  const char *json = "{\"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [32, 64, 96],"
                     " \"layers_per_block\": 1, \"norm_num_groups\": 16, \"scaling_factor\": 0.5,"
                     " \"latent_channels\": 4}";
  g_assert_true (g_file_set_contents (cpath, json, -1, NULL));
  g_autoptr (KinVae) vae = load_ok (dir, KIN_VAE_DECODER);
  g_assert_cmpint (kin_vae_get_config (vae)->norm_num_groups, ==, 16);
  g_assert_cmpfloat (kin_vae_get_config (vae)->scaling_factor, ==, 0.5f);
  /* same result as building it from the in-memory set with the same config */
  GError *error = NULL;
  g_autoptr (KinVae) ref = kin_vae_new (kin_backend_cpu (), ws, &cfg, KIN_VAE_DECODER, &error);
  g_assert_no_error (error);
  g_autoptr (KinTensor) a = decode_small (vae, 5);
  g_autoptr (KinTensor) b = decode_small (ref, 5);
  g_assert_cmpfloat (max_abs_diff (a, b, NULL), ==, 0.0);
  /* decoder only: encoding is refused */
  int64_t xs[4] = { 1, 3, 16, 16 };
  g_autoptr (KinTensor) x = random_tensor (4, xs, 1, -1, 1);
  g_assert_null (kin_vae_encode_moments (vae, x, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  rm_rf (dir);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void
expect_load_error (const char *path, const KinVaeConfig *cfg, int code, const char *needle)
{
  GError *error = NULL;
  KinVae *vae;
  if (cfg != NULL) {
    g_autoptr (KinWeights) ws = kin_weights_open (path, &error);
    g_assert_no_error (error);
    vae = kin_vae_new (kin_backend_cpu (), ws, cfg, KIN_VAE_BOTH, &error);
  } else {
    vae = kin_vae_load (kin_backend_cpu (), path, KIN_VAE_BOTH, &error);
  }
  g_assert_null (vae);
  g_assert_error (error, KIN_ENGINE_ERROR, code);
  if (g_test_verbose ())
    g_printerr ("expected error: %s\n", error->message);
  g_assert_nonnull (strstr (error->message, needle));
  g_clear_error (&error);
}

static void
test_bad_weights (void)
{
  KinVaeConfig cfg;
  small_config (&cfg);
  g_autofree char *dir = make_tmpdir ();
  g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_BOTH, 11);

  /* a missing key, named in the error (diffusers and LDM spelling) */
  g_autofree char *missing = g_build_filename (dir, "missing.safetensors", NULL);
  write_set (ws, missing, NULL, cfg.n_blocks, "decoder.mid_block.resnets.1.conv2.weight");
  expect_load_error (missing, NULL, KIN_ENGINE_ERROR_BAD_WEIGHTS, "decoder.mid_block.resnets.1.conv2.weight");
  g_autofree char *missing_ldm = g_build_filename (dir, "missing-ldm.safetensors", NULL);
  write_set (ws, missing_ldm, rename_ldm, cfg.n_blocks, "decoder.up_blocks.0.upsamplers.0.conv.bias");
  expect_load_error (missing_ldm, NULL, KIN_ENGINE_ERROR_BAD_WEIGHTS, "decoder.up.2.upsample.conv.bias");
  g_autofree char *missing_attn = g_build_filename (dir, "missing-attn.safetensors", NULL);
  write_set (ws, missing_attn, rename_old, cfg.n_blocks, "encoder.mid_block.attentions.0.to_k.weight");
  expect_load_error (missing_attn, NULL, KIN_ENGINE_ERROR_BAD_WEIGHTS, "encoder.mid_block.attentions.0.key.weight");

  /* channel mismatch: the config says 128 where the file has 96 */
  g_autofree char *full = g_build_filename (dir, "full.safetensors", NULL);
  write_set (ws, full, NULL, cfg.n_blocks, NULL);
  KinVaeConfig wide = cfg;
  wide.block_out_channels[2] = 128;
  expect_load_error (full, &wide, KIN_ENGINE_ERROR_BAD_WEIGHTS, "encoder.down_blocks.2.resnets.0.conv1.weight");
  /* latent channel mismatch */
  KinVaeConfig lat = cfg;
  lat.latent_channels = 8;
  expect_load_error (full, &lat, KIN_ENGINE_ERROR_BAD_WEIGHTS, "encoder.conv_out.weight");
  /* a group count that does not divide the channels */
  KinVaeConfig groups = cfg;
  groups.norm_num_groups = 24;
  expect_load_error (full, &groups, KIN_ENGINE_ERROR_BAD_INPUT, "norm_num_groups 24 does not divide");

  /* a weight file with no VAE in it */
  g_autofree char *other = g_build_filename (dir, "other.safetensors", NULL);
  float v[4] = { 1, 2, 3, 4 };
  int64_t shape[1] = { 4 };
  const char *names[1] = { "model.diffusion_model.input_blocks.0.0.weight" };
  KinDType dt[1] = { KIN_DTYPE_F32 };
  int nd[1] = { 1 };
  const int64_t *shapes[1] = { shape };
  const void *datas[1] = { v };
  GError *error = NULL;
  g_assert_true (kin_safetensors_write (other, 1, names, dt, nd, shapes, datas, NULL, &error));
  g_assert_no_error (error);
  expect_load_error (other, NULL, KIN_ENGINE_ERROR_BAD_WEIGHTS, "no VAE tensors");
  rm_rf (dir);
}

static void
test_bad_frames (void)
{
  KinVaeConfig cfg;
  small_config (&cfg);   /* factor 4 */
  g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_BOTH, 13);
  GError *error = NULL;
  g_autoptr (KinVae) vae = kin_vae_new (kin_backend_cpu (), ws, &cfg, KIN_VAE_BOTH, &error);
  g_assert_no_error (error);

  /* sizes that are not multiples of the factor */
  int64_t odd[4] = { 1, 3, 18, 16 };
  g_autoptr (KinTensor) x = random_tensor (4, odd, 1, -1, 1);
  g_assert_null (kin_vae_encode_moments (vae, x, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "multiples of 4"));
  g_clear_error (&error);
  int64_t vodd[5] = { 1, 3, 2, 16, 10 };
  g_autoptr (KinTensor) v = random_tensor (5, vodd, 1, -1, 1);
  g_assert_null (kin_vae_encode_video (vae, v, NULL, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);

  /* wrong channel counts */
  int64_t four[4] = { 1, 4, 16, 16 };
  g_autoptr (KinTensor) x4 = random_tensor (4, four, 1, -1, 1);
  g_assert_null (kin_vae_encode_moments (vae, x4, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "expected [N, 3, H, W]"));
  g_clear_error (&error);
  int64_t z3[4] = { 1, 3, 4, 4 };
  g_autoptr (KinTensor) z = random_tensor (4, z3, 1, -1, 1);
  g_assert_null (kin_vae_decode_frames (vae, z, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  /* a 4-D tensor where a video is expected */
  g_assert_null (kin_vae_decode_video (vae, z, NULL, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);

  /* sampling without noise */
  int64_t vs[5] = { 1, 3, 2, 16, 16 };
  g_autoptr (KinTensor) video = random_tensor (5, vs, 1, -1, 1);
  KinVaeEncodeOptions eo = { .use_mean = FALSE };
  g_assert_null (kin_vae_encode_video (vae, video, &eo, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
}

/* ---- video wrapper, posterior, RGB -------------------------------------------------------- */

typedef struct {
  int calls;
  size_t sizes[8];
  guint32 seed;
} NoiseLog;

static void
log_noise (float *out, size_t n, gpointer data)
{
  NoiseLog *log = data;
  if (log->calls < 8)
    log->sizes[log->calls] = n;
  log->calls++;
  for (size_t i = 0; i < n; i++)
    out[i] = urand (&log->seed) * 2 - 1;
}

static void
test_video (void)
{
  KinVaeConfig cfg;
  small_config (&cfg);
  g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_BOTH, 17);
  GError *error = NULL;
  g_autoptr (KinVae) vae = kin_vae_new (kin_backend_cpu (), ws, &cfg, KIN_VAE_BOTH, &error);
  g_assert_no_error (error);
  const int64_t B = 2, T = 3, H = 16, W = 12, L = 4, h = 4, w = 3;
  int64_t vs[5] = { B, 3, T, H, W };
  g_autoptr (KinTensor) video = random_tensor (5, vs, 21, -1, 1);
  g_autofree float *vh = kin_tensor_to_host_f32 (video);

  /* the posterior mean, all frames at once */
  g_autoptr (KinTensor) lat = kin_vae_encode_video (vae, video, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (lat->ndim, ==, 5);
  g_assert_cmpint (lat->shape[1], ==, L);
  g_assert_cmpint (lat->shape[2], ==, T);
  g_autofree float *lh = kin_tensor_to_host_f32 (lat);

  /* frame (b, t) alone gives the same latent as its slot in [B, L, T, h, w] */
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      g_autofree float *fr = g_new (float, 3 * H * W);
      for (int c = 0; c < 3; c++)
        memcpy (fr + c * H * W, vh + ((b * 3 + c) * T + t) * H * W, sizeof (float) * H * W);
      int64_t fs[4] = { 1, 3, H, W };
      g_autoptr (KinTensor) frame = kin_tensor_from_host_f32 (kin_backend_cpu (), fr, 4, fs, &error);
      g_autoptr (KinTensor) m = kin_vae_encode_moments (vae, frame, &error);
      g_assert_no_error (error);
      g_autofree float *mh = kin_tensor_to_host_f32 (m);
      for (int64_t c = 0; c < L; c++)
        for (int64_t p = 0; p < h * w; p++) {
          float expect = mh[c * h * w + p] * cfg.scaling_factor;
          float got = lh[((b * L + c) * T + t) * h * w + p];
          g_assert_cmpfloat (fabsf (got - expect), <=, 1e-5f * (1 + fabsf (expect)));
        }
    }

  /* micro-batches of 4 frames: the same latents, and one noise draw per micro-batch */
  KinVaeEncodeOptions mean_mb = { .micro_batch = 4, .use_mean = TRUE };
  g_autoptr (KinTensor) lat_mb = kin_vae_encode_video (vae, video, &mean_mb, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (max_abs_diff (lat_mb, lat, NULL), <=, 1e-6);
  NoiseLog log = { .seed = 5 };
  KinVaeEncodeOptions sampled = { .micro_batch = 4, .noise_func = log_noise, .noise_data = &log };
  g_autoptr (KinTensor) lat_s = kin_vae_encode_video (vae, video, &sampled, &error);
  g_assert_no_error (error);
  g_assert_cmpint (log.calls, ==, 2);
  g_assert_cmpuint (log.sizes[0], ==, 4 * L * h * w);
  g_assert_cmpuint (log.sizes[1], ==, 2 * L * h * w);
  g_assert_cmpfloat (max_abs_diff (lat_s, lat, NULL), >, 1e-3);    /* noise was added */
  /* the same noise as an array gives the same sample */
  g_autofree float *noise = g_new (float, B * T * L * h * w);
  NoiseLog replay = { .seed = 5 };
  log_noise (noise, 4 * L * h * w, &replay);
  log_noise (noise + 4 * L * h * w, 2 * L * h * w, &replay);
  KinVaeEncodeOptions arr = { .micro_batch = 4, .noise = noise };
  g_autoptr (KinTensor) lat_a = kin_vae_encode_video (vae, video, &arr, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (max_abs_diff (lat_a, lat_s, NULL), ==, 0.0);

  /* decode: [B, 3, T, H, W]; frame (b, t) equals decoding its latent / scaling_factor alone */
  KinVaeDecodeOptions dopt = { .micro_batch = 2, .tiling_mode = KIN_VAE_TILING_OFF };
  g_autoptr (KinTensor) dec = kin_vae_decode_video (vae, lat, &dopt, &error);
  g_assert_no_error (error);
  g_assert_cmpint (dec->shape[0], ==, B);
  g_assert_cmpint (dec->shape[1], ==, 3);
  g_assert_cmpint (dec->shape[2], ==, T);
  g_assert_cmpint (dec->shape[3], ==, H);
  g_assert_cmpint (dec->shape[4], ==, W);
  g_autofree float *dh = kin_tensor_to_host_f32 (dec);
  int64_t b = 1, t = 2;
  g_autofree float *zf = g_new (float, L * h * w);
  for (int64_t c = 0; c < L; c++)
    for (int64_t p = 0; p < h * w; p++)
      zf[c * h * w + p] = lh[((b * L + c) * T + t) * h * w + p] / cfg.scaling_factor;
  int64_t zs[4] = { 1, L, h, w };
  g_autoptr (KinTensor) z1 = kin_tensor_from_host_f32 (kin_backend_cpu (), zf, 4, zs, &error);
  g_autoptr (KinTensor) d1 = kin_vae_decode_frames (vae, z1, &error);
  g_assert_no_error (error);
  g_autofree float *d1h = kin_tensor_to_host_f32 (d1);
  for (int c = 0; c < 3; c++)
    for (int64_t p = 0; p < H * W; p++)
      g_assert_cmpfloat (fabsf (dh[((b * 3 + c) * T + t) * H * W + p] - d1h[c * H * W + p]), <=, 1e-4f);

  /* 8-bit RGB of the decoded video: [B, T, H, W, 3] */
  g_autofree guint8 *rgb = g_new (guint8, B * T * H * W * 3);
  kin_vae_video_to_rgb8 (dh, B, T, H, W, rgb);
  float x = dh[((b * 3 + 1) * T + t) * H * W + 7];
  float cl = CLAMP (x, -1.0f, 1.0f);
  g_assert_cmpint (rgb[((b * T + t) * H * W + 7) * 3 + 1], ==, (guint8) ((cl + 1) / 2 * 255 + 0.5f));
}

static void
test_posterior_rgb (void)
{
  /* n 1, latent 1, hw 3: mean | logvar */
  float moments[6] = { 0.5f, -1.0f, 2.0f, 50.0f, -100.0f, 0.0f };
  float noise[3] = { 1.0f, 1.0f, -2.0f };
  float mean[3], logvar[3], std[3], out[3];
  kin_vae_posterior_split (moments, 1, 1, 3, mean, logvar, std);
  g_assert_cmpfloat (mean[1], ==, -1.0f);
  g_assert_cmpfloat (logvar[0], ==, 20.0f);       /* clamped */
  g_assert_cmpfloat (logvar[1], ==, -30.0f);
  g_assert_cmpfloat (fabsf (std[0] - expf (10.0f)), <=, 1e-6f * expf (10.0f));
  g_assert_cmpfloat (std[2], ==, 1.0f);
  kin_vae_posterior (moments, 1, 1, 3, noise, 0.18215f, out);
  g_assert_cmpfloat (fabsf (out[2] - (2.0f - 2.0f) * 0.18215f), <=, 1e-7f);
  g_assert_cmpfloat (fabsf (out[1] - (-1.0f + expf (-15.0f)) * 0.18215f), <=, 1e-7f);
  kin_vae_posterior (moments, 1, 1, 3, NULL, 2.0f, out);
  g_assert_cmpfloat (out[0], ==, 1.0f);

  /* RGB: one frame, 1×6, channels R G B */
  float v[18] = { -1, 1, 0, -2, 2, NAN,  0.5f, -0.5f, 0.999f, 1e-4f, -1e-4f, 0,  0, 0, 0, 0, 0, 0 };
  guint8 rgb[18];
  kin_vae_video_to_rgb8 (v, 1, 1, 1, 6, rgb);
  static const guint8 expect_r[6] = { 0, 255, 128, 0, 255, 0 };
  static const guint8 expect_g[6] = { 191, 64, 255, 128, 127, 128 };
  for (int p = 0; p < 6; p++) {
    g_assert_cmpint (rgb[p * 3], ==, expect_r[p]);
    g_assert_cmpint (rgb[p * 3 + 1], ==, expect_g[p]);
    g_assert_cmpint (rgb[p * 3 + 2], ==, 128);
  }
}

/* ---- tiled decoding ----------------------------------------------------------------------- */

/* Tiled against untiled decoding on a random VAE shaped like SD (4 blocks, factor 8, 8 groups).  A random VAE is far less local than a trained one: dropping one latent row
 * changes its output 2–4 % (relative to the output's maximum) on the far side of the frame, so
 * these bounds are loose by nature.  Measured here (max |diff| / max |untiled|, and the mean
 * |diff| / max |untiled|): untiled trunk + one up block, as SD at 720p with the default budget:
 * 0.062 and 0.0057; everything tiled: 0.19 and 0.018. */
#define TILED_MAX_TOL 0.12
#define TILED_MEAN_TOL 0.01
#define ALL_TILED_MAX_TOL 0.3
#define ALL_TILED_MEAN_TOL 0.03

static void
tiled_error (const KinTensor *tiled, const KinTensor *full, double *max_rel, double *mean_rel)
{
  g_autofree float *a = kin_tensor_to_host_f32 (tiled);
  g_autofree float *b = kin_tensor_to_host_f32 (full);
  int64_t n = kin_tensor_numel (full);
  double ref = 0, mx = 0, sum = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs ((double) a[i] - b[i]);
    ref = MAX (ref, fabs ((double) b[i]));
    mx = MAX (mx, d);
    sum += d;
  }
  *max_rel = mx / ref;
  *mean_rel = sum / n / ref;
}

static void
test_tiled (void)
{
  KinVaeConfig cfg;
  kin_vae_config_init_sd (&cfg);
  cfg.block_out_channels[0] = 16;
  cfg.block_out_channels[1] = 32;
  cfg.block_out_channels[2] = 64;
  cfg.block_out_channels[3] = 64;
  cfg.layers_per_block = 1;
  cfg.norm_num_groups = 8;
  g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_DECODER, 23);
  GError *error = NULL;
  g_autoptr (KinVae) vae = kin_vae_new (kin_backend_cpu (), ws, &cfg, KIN_VAE_DECODER, &error);
  g_assert_no_error (error);
  int64_t zs[4] = { 1, 4, 24, 40 };
  g_autoptr (KinTensor) z = random_tensor (4, zs, 29, -1, 1);
  g_autoptr (KinTensor) full = kin_vae_decode_frames (vae, z, &error);   /* [1, 3, 192, 320] */
  g_assert_no_error (error);

  /* 2 × 4 tiles of 16 latents with 8 of overlap (starts 0, 8 and 0, 8, 16, 24); a 4 MiB budget
   * runs the trunk and up block 0 in one pass (at 720p, SD's default 512 MiB does the same) */
  KinVaeTiling small = { .tile = 16, .overlap = 8, .trunk_mib = 4 };
  g_autoptr (KinTensor) tiled = kin_vae_decode_frames_tiled (vae, z, &small, &error);
  g_assert_no_error (error);
  g_assert_true (kin_tensor_same_shape (tiled, full));
  double max_rel, mean_rel;
  tiled_error (tiled, full, &max_rel, &mean_rel);
  g_test_message ("tiled vs untiled: max rel %.4f, mean rel %.5f", max_rel, mean_rel);
  g_assert_cmpfloat (max_rel, <=, TILED_MAX_TOL);
  g_assert_cmpfloat (mean_rel, <=, TILED_MEAN_TOL);

  KinVaeTiling all = { .tile = 16, .overlap = 8, .trunk_mib = -1 };
  g_autoptr (KinTensor) all_tiled = kin_vae_decode_frames_tiled (vae, z, &all, &error);
  g_assert_no_error (error);
  double all_max, all_mean;
  tiled_error (all_tiled, full, &all_max, &all_mean);
  g_test_message ("all tiled vs untiled: max rel %.4f, mean rel %.5f", all_max, all_mean);
  g_assert_cmpfloat (all_max, <=, ALL_TILED_MAX_TOL);
  g_assert_cmpfloat (all_mean, <=, ALL_TILED_MEAN_TOL);
  g_assert_cmpfloat (mean_rel, <, all_mean);

  /* on a smaller latent: one tile covering everything is the untiled decode exactly, and the
   * video path with AUTO tiles above its threshold exactly like decode_frames_tiled */
  int64_t ss[4] = { 1, 4, 8, 12 };
  g_autoptr (KinTensor) zsmall = random_tensor (4, ss, 31, -1, 1);
  g_autoptr (KinTensor) small_full = kin_vae_decode_frames (vae, zsmall, &error);
  KinVaeTiling big = { .tile = 12 };
  g_autoptr (KinTensor) one = kin_vae_decode_frames_tiled (vae, zsmall, &big, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (max_abs_diff (one, small_full, NULL), ==, 0.0);
  KinVaeTiling six = { .tile = 6, .overlap = 2, .trunk_mib = -1 };
  g_autoptr (KinTensor) small_tiled = kin_vae_decode_frames_tiled (vae, zsmall, &six, &error);
  g_assert_no_error (error);
  int64_t vs[5] = { 1, 4, 1, 8, 12 };
  g_autoptr (KinTensor) zv = kin_tensor_view (zsmall, 0, 5, vs);
  g_autoptr (KinTensor) zvs = kin_tensor_new (kin_backend_cpu (), KIN_DTYPE_F32, 5, vs, &error);
  kin_backend_cpu ()->scale (kin_backend_cpu (), zvs, zv, cfg.scaling_factor, 0.0f);
  KinVaeDecodeOptions auto_opts = { .tile_threshold = 50, .tiling = six };
  g_autoptr (KinTensor) vid = kin_vae_decode_video (vae, zvs, &auto_opts, &error);
  g_assert_no_error (error);
  double rv = 0, dv = max_abs_diff (vid, small_tiled, &rv);
  g_assert_cmpfloat (dv / rv, <=, 1e-4);
  g_assert_cmpfloat (max_abs_diff (vid, small_full, NULL), >, 0.0);    /* it did tile */
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/vae/config/json", test_config_json);
  g_test_add_func ("/vae/config/infer", test_config_infer);
  g_test_add_func ("/vae/sizes", test_sizes);
  g_test_add_func ("/vae/dialects", test_dialects);
  g_test_add_func ("/vae/load-folder", test_load_folder);
  g_test_add_func ("/vae/errors/weights", test_bad_weights);
  g_test_add_func ("/vae/errors/frames", test_bad_frames);
  g_test_add_func ("/vae/video", test_video);
  g_test_add_func ("/vae/posterior-rgb", test_posterior_rgb);
  g_test_add_func ("/vae/tiled", test_tiled);
  return g_test_run ();
}
