/* kin-vae.c — SD VAE (diffusers AutoencoderKL) encoder and decoder on the backend op table.
 *
 * Layout of this file: key names (the one dialect table), configuration, loading (the same walk
 * also writes random weight sets), the forward passes, tiled decoding.  The video wrapper, the
 * posterior, RGB output and sizes are in kin-vae-video.c.
 * All activations are NCHW [N, C, H, W]; every stage takes ownership of its input tensor and
 * frees it as soon as it is consumed, so the peak is about two activations of the widest stage
 * plus the convolution's column buffer. */
#include "kin-vae.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Key names                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
  K_CONV_IN, K_DOWN_RESNET, K_DOWNSAMPLE, K_UP_RESNET, K_UPSAMPLE, K_MID_RESNET,
  K_ATTN_NORM, K_ATTN_Q, K_ATTN_K, K_ATTN_V, K_ATTN_OUT, K_NORM_OUT, K_CONV_OUT,
  K_QUANT, K_POST_QUANT,
  K_RES_NORM1, K_RES_CONV1, K_RES_NORM2, K_RES_CONV2, K_RES_SHORTCUT,
  K_COUNT
} VaeKey;

/* The one place where the three key dialects live (spec §3.5 and appendix A).  Columns:
 * diffusers, old diffusers (NULL = as diffusers), LDM.  Placeholders: {c} encoder/decoder,
 * {i} block index, {r} reversed block index (n_blocks − 1 − i: LDM numbers decoder blocks from
 * the output end), {j} sub-index, {J} sub-index + 1.  K_RES_* are appended to a resnet's name.
 * LDM stores the attention projections as 1×1 convolutions [C, C, 1, 1]; the loader accepts
 * either shape in every dialect. */
static const char *const key_table[K_COUNT][3] = {
  [K_CONV_IN]      = { "{c}.conv_in", NULL, "{c}.conv_in" },
  [K_DOWN_RESNET]  = { "encoder.down_blocks.{i}.resnets.{j}", NULL, "encoder.down.{i}.block.{j}" },
  [K_DOWNSAMPLE]   = { "encoder.down_blocks.{i}.downsamplers.0.conv", NULL, "encoder.down.{i}.downsample.conv" },
  [K_UP_RESNET]    = { "decoder.up_blocks.{i}.resnets.{j}", NULL, "decoder.up.{r}.block.{j}" },
  [K_UPSAMPLE]     = { "decoder.up_blocks.{i}.upsamplers.0.conv", NULL, "decoder.up.{r}.upsample.conv" },
  [K_MID_RESNET]   = { "{c}.mid_block.resnets.{j}", NULL, "{c}.mid.block_{J}" },
  [K_ATTN_NORM]    = { "{c}.mid_block.attentions.0.group_norm", NULL, "{c}.mid.attn_1.norm" },
  [K_ATTN_Q]       = { "{c}.mid_block.attentions.0.to_q", "{c}.mid_block.attentions.0.query", "{c}.mid.attn_1.q" },
  [K_ATTN_K]       = { "{c}.mid_block.attentions.0.to_k", "{c}.mid_block.attentions.0.key", "{c}.mid.attn_1.k" },
  [K_ATTN_V]       = { "{c}.mid_block.attentions.0.to_v", "{c}.mid_block.attentions.0.value", "{c}.mid.attn_1.v" },
  [K_ATTN_OUT]     = { "{c}.mid_block.attentions.0.to_out.0", "{c}.mid_block.attentions.0.proj_attn", "{c}.mid.attn_1.proj_out" },
  [K_NORM_OUT]     = { "{c}.conv_norm_out", NULL, "{c}.norm_out" },
  [K_CONV_OUT]     = { "{c}.conv_out", NULL, "{c}.conv_out" },
  [K_QUANT]        = { "quant_conv", NULL, "quant_conv" },
  [K_POST_QUANT]   = { "post_quant_conv", NULL, "post_quant_conv" },
  [K_RES_NORM1]    = { "norm1", NULL, "norm1" },
  [K_RES_CONV1]    = { "conv1", NULL, "conv1" },
  [K_RES_NORM2]    = { "norm2", NULL, "norm2" },
  [K_RES_CONV2]    = { "conv2", NULL, "conv2" },
  [K_RES_SHORTCUT] = { "conv_shortcut", NULL, "nin_shortcut" },
};

/* Prefixes under which a VAE may sit inside a bigger checkpoint. */
static const char *const key_prefixes[] = {
  "", "first_stage_model.", "vae.", "state_dict.", "state_dict.first_stage_model.",
};

static const char *
key_template (KinVaeDialect dialect, VaeKey key)
{
  const char *t = key_table[key][dialect];
  return t ? t : key_table[key][KIN_VAE_DIALECT_DIFFUSERS];
}

/* @n_blocks ≤ 0 leaves {r} unreversed (for counting blocks before their number is known). */
static char *
expand_key (const char *prefix, const char *tmpl, const char *coder, int i, int j, int n_blocks)
{
  GString *s = g_string_new (prefix);
  for (const char *p = tmpl; *p; p++) {
    if (p[0] == '{' && p[1] != '\0' && p[2] == '}') {
      switch (p[1]) {
      case 'c': g_string_append (s, coder); break;
      case 'i': g_string_append_printf (s, "%d", i); break;
      case 'r': g_string_append_printf (s, "%d", n_blocks > 0 ? n_blocks - 1 - i : i); break;
      case 'j': g_string_append_printf (s, "%d", j); break;
      case 'J': g_string_append_printf (s, "%d", j + 1); break;
      default: g_string_append_len (s, p, 3); break;
      }
      p += 2;
    } else {
      g_string_append_c (s, *p);
    }
  }
  return g_string_free (s, FALSE);
}

typedef struct {
  KinVaeDialect dialect;
  const char *prefix;
  int n_blocks;
} KeyStyle;

static char *
key_module (const KeyStyle *ks, VaeKey key, const char *coder, int i, int j)
{
  return expand_key (ks->prefix, key_template (ks->dialect, key), coder, i, j, ks->n_blocks);
}

/* "module.leaf" for a resnet member: "<resnet module>.<member>.<leaf>". */
static char *
key_member (const KeyStyle *ks, const char *resnet, VaeKey member)
{
  return g_strconcat (resnet, ".", key_template (ks->dialect, member), NULL);
}

static gboolean
has_key (KinWeights *ws, const char *module, const char *leaf)
{
  g_autofree char *name = g_strconcat (module, ".", leaf, NULL);
  return kin_weights_contains (ws, name);
}

const char *
kin_vae_dialect_name (KinVaeDialect dialect)
{
  switch (dialect) {
  case KIN_VAE_DIALECT_DIFFUSERS: return "diffusers";
  case KIN_VAE_DIALECT_DIFFUSERS_OLD: return "old diffusers";
  case KIN_VAE_DIALECT_LDM: return "LDM";
  default: return "unknown";
  }
}

/* Finds the prefix and the dialect from marker keys.  @prefix points into key_prefixes. */
static gboolean
detect_dialect (KinWeights *ws, KinVaeDialect *dialect, const char **prefix, GError **error)
{
  static const char *const coders[] = { "encoder", "decoder" };
  for (guint p = 0; p < G_N_ELEMENTS (key_prefixes); p++) {
    for (guint c = 0; c < G_N_ELEMENTS (coders); c++) {
      KeyStyle ks = { KIN_VAE_DIALECT_DIFFUSERS, key_prefixes[p], 0 };
      g_autofree char *conv_in = key_module (&ks, K_CONV_IN, coders[c], 0, 0);
      if (!has_key (ws, conv_in, "weight"))
        continue;
      *prefix = key_prefixes[p];
      for (guint d = 0; d < G_N_ELEMENTS (coders); d++) {
        KeyStyle ldm = { KIN_VAE_DIALECT_LDM, key_prefixes[p], 0 };
        KeyStyle old = { KIN_VAE_DIALECT_DIFFUSERS_OLD, key_prefixes[p], 0 };
        g_autofree char *ldm_mid = key_module (&ldm, K_MID_RESNET, coders[d], 0, 0);
        g_autofree char *ldm_out = key_module (&ldm, K_NORM_OUT, coders[d], 0, 0);
        g_autofree char *old_q = key_module (&old, K_ATTN_Q, coders[d], 0, 0);
        if (has_key (ws, ldm_mid, "conv1.weight") || has_key (ws, ldm_out, "weight")) {
          *dialect = KIN_VAE_DIALECT_LDM;
          return TRUE;
        }
        if (has_key (ws, old_q, "weight")) {
          *dialect = KIN_VAE_DIALECT_DIFFUSERS_OLD;
          return TRUE;
        }
      }
      *dialect = KIN_VAE_DIALECT_DIFFUSERS;
      return TRUE;
    }
  }
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
               "%s holds no VAE tensors: neither encoder.conv_in.weight nor decoder.conv_in.weight "
               "(also looked under first_stage_model., vae. and state_dict.)",
               kin_weights_source (ws));
  return FALSE;
}

/* ------------------------------------------------------------------------------------------ */
/* Configuration                                                                              */
/* ------------------------------------------------------------------------------------------ */

void
kin_vae_config_init_sd (KinVaeConfig *cfg)
{
  static const int sd_blocks[] = { 128, 256, 512, 512 };
  memset (cfg, 0, sizeof *cfg);
  cfg->in_channels = 3;
  cfg->out_channels = 3;
  cfg->latent_channels = 4;
  cfg->n_blocks = G_N_ELEMENTS (sd_blocks);
  memcpy (cfg->block_out_channels, sd_blocks, sizeof sd_blocks);
  cfg->layers_per_block = 2;
  cfg->norm_num_groups = 32;
  cfg->norm_eps = 1e-6f;
  cfg->scaling_factor = KIN_VAE_SD_SCALING_FACTOR;
  cfg->use_quant_conv = TRUE;
  cfg->use_post_quant_conv = TRUE;
  cfg->mid_block_add_attention = TRUE;
}

int
kin_vae_config_factor (const KinVaeConfig *cfg)
{
  return 1 << MAX (cfg->n_blocks - 1, 0);
}

gboolean
kin_vae_config_validate (const KinVaeConfig *cfg, GError **error)
{
  const char *bad = NULL;
  if (cfg->n_blocks < 1 || cfg->n_blocks > KIN_VAE_MAX_BLOCKS)
    bad = "block_out_channels must have 1 to 8 entries";
  else if (cfg->in_channels < 1 || cfg->out_channels < 1 || cfg->latent_channels < 1)
    bad = "in_channels, out_channels and latent_channels must be positive";
  else if (cfg->layers_per_block < 1 || cfg->layers_per_block > 64)
    bad = "layers_per_block must be between 1 and 64";
  else if (cfg->norm_num_groups < 1)
    bad = "norm_num_groups must be positive";
  else if (!(cfg->norm_eps > 0) || !(cfg->scaling_factor > 0) || !isfinite (cfg->scaling_factor))
    bad = "norm eps and scaling_factor must be positive";
  if (bad != NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "VAE config: %s", bad);
    return FALSE;
  }
  for (int i = 0; i < cfg->n_blocks; i++) {
    int c = cfg->block_out_channels[i];
    if (c < 1 || c > 1 << 16) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "VAE config: block_out_channels[%d] = %d is not a sensible channel count", i, c);
      return FALSE;
    }
    if (c % cfg->norm_num_groups != 0) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "VAE config: norm_num_groups %d does not divide block_out_channels[%d] = %d",
                   cfg->norm_num_groups, i, c);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean
json_int_member (JsonObject *obj, const char *name, int *out, GError **error)
{
  if (!json_object_has_member (obj, name))
    return TRUE;
  JsonNode *n = json_object_get_member (obj, name);
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "VAE config: %s is not an integer", name);
    return FALSE;
  }
  gint64 v = json_node_get_int (n);
  if (v < 0 || v > G_MAXINT) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "VAE config: %s = %" G_GINT64_FORMAT " is out of range", name, v);
    return FALSE;
  }
  *out = (int) v;
  return TRUE;
}

static void
json_bool_member (JsonObject *obj, const char *name, gboolean *out)
{
  if (!json_object_has_member (obj, name))
    return;
  JsonNode *n = json_object_get_member (obj, name);
  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_BOOLEAN)
    *out = json_node_get_boolean (n);
}

static gboolean
json_block_list (JsonObject *obj, KinVaeConfig *cfg, GError **error)
{
  if (!json_object_has_member (obj, "block_out_channels"))
    return TRUE;
  JsonNode *n = json_object_get_member (obj, "block_out_channels");
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  guint len = a ? json_array_get_length (a) : 0;
  if (len < 1 || len > KIN_VAE_MAX_BLOCKS) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "VAE config: block_out_channels must be a list of 1 to %d integers",
                 KIN_VAE_MAX_BLOCKS);
    return FALSE;
  }
  for (guint i = 0; i < len; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "VAE config: block_out_channels[%u] is not an integer", i);
      return FALSE;
    }
    cfg->block_out_channels[i] = (int) CLAMP (json_node_get_int (e), -1, G_MAXINT);
  }
  cfg->n_blocks = (int) len;
  return TRUE;
}

gboolean
kin_vae_config_from_json_object (KinVaeConfig *cfg, JsonObject *obj, GError **error)
{
  if (!json_block_list (obj, cfg, error) ||
      !json_int_member (obj, "in_channels", &cfg->in_channels, error) ||
      !json_int_member (obj, "out_channels", &cfg->out_channels, error) ||
      !json_int_member (obj, "latent_channels", &cfg->latent_channels, error) ||
      !json_int_member (obj, "layers_per_block", &cfg->layers_per_block, error) ||
      !json_int_member (obj, "norm_num_groups", &cfg->norm_num_groups, error))
    return FALSE;
  const char *act = json_object_get_string_member_with_default (obj, "act_fn", "silu");
  if (g_strcmp0 (act, "silu") != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "VAE config: act_fn '%s' is not supported (only silu)", act);
    return FALSE;
  }
  static const char *const lists[][2] = { { "down_block_types", "DownEncoderBlock2D" },
                                           { "up_block_types", "UpDecoderBlock2D" } };
  for (guint i = 0; i < G_N_ELEMENTS (lists); i++) {
    if (!json_object_has_member (obj, lists[i][0]))
      continue;
    JsonNode *n = json_object_get_member (obj, lists[i][0]);
    JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
    if (a == NULL || json_array_get_length (a) != (guint) cfg->n_blocks) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "VAE config: %s must have one entry per block_out_channels entry (%d)",
                   lists[i][0], cfg->n_blocks);
      return FALSE;
    }
    for (guint j = 0; j < json_array_get_length (a); j++) {
      JsonNode *e = json_array_get_element (a, j);
      const char *type = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
                           ? json_node_get_string (e) : "?";
      if (strcmp (type, lists[i][1]) != 0) {
        g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                     "VAE config: %s[%u] is %s; only %s is supported", lists[i][0], j, type,
                     lists[i][1]);
        return FALSE;
      }
    }
  }
  if (json_object_has_member (obj, "scaling_factor")) {
    JsonNode *n = json_object_get_member (obj, "scaling_factor");
    if (JSON_NODE_HOLDS_VALUE (n) && (json_node_get_value_type (n) == G_TYPE_DOUBLE ||
                                      json_node_get_value_type (n) == G_TYPE_INT64))
      cfg->scaling_factor = (float) json_node_get_double (n);
  }
  json_bool_member (obj, "use_quant_conv", &cfg->use_quant_conv);
  json_bool_member (obj, "use_post_quant_conv", &cfg->use_post_quant_conv);
  json_bool_member (obj, "mid_block_add_attention", &cfg->mid_block_add_attention);
  return kin_vae_config_validate (cfg, error);
}

gboolean
kin_vae_config_from_json_file (KinVaeConfig *cfg, const char *path, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, error))
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: not a JSON object", path);
    return FALSE;
  }
  if (!kin_vae_config_from_json_object (cfg, json_node_get_object (root), error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  return TRUE;
}

/* Counts consecutive indices k = 0, 1, … for which @module(k) has @leaf. */
static int
count_modules (KinWeights *ws, const KeyStyle *ks, VaeKey key, const char *coder, int i,
               gboolean vary_block, const char *leaf)
{
  int k = 0;
  for (; k < 64; k++) {
    g_autofree char *m = key_module (ks, key, coder, vary_block ? k : i, vary_block ? 0 : k);
    if (!has_key (ws, m, leaf))
      break;
  }
  return k;
}

static int
entry_dim (KinWeights *ws, const KeyStyle *ks, VaeKey key, const char *coder, int i, int j,
           const char *leaf, int dim)
{
  g_autofree char *m = key_module (ks, key, coder, i, j);
  g_autofree char *name = g_strconcat (m, ".", leaf, NULL);
  if (!kin_weights_contains (ws, name))
    return -1;
  const KinWeightEntry *e = kin_weights_lookup (ws, name);
  return dim < e->ndim ? (int) CLAMP (e->shape[dim], 0, G_MAXINT) : -1;
}

gboolean
kin_vae_config_infer (KinVaeConfig *cfg, KinWeights *ws, GError **error)
{
  KinVaeDialect dialect;
  const char *prefix;
  if (!detect_dialect (ws, &dialect, &prefix, error))
    return FALSE;
  KeyStyle ks = { dialect, prefix, 0 };
  int n_enc = count_modules (ws, &ks, K_DOWN_RESNET, "encoder", 0, TRUE, "conv1.weight");
  int n_dec = count_modules (ws, &ks, K_UP_RESNET, "decoder", 0, TRUE, "conv1.weight");
  int n = n_enc > 0 ? n_enc : n_dec;
  if (n < 1 || n > KIN_VAE_MAX_BLOCKS) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "%s: cannot infer the VAE blocks (found %d encoder and %d decoder blocks)",
                 kin_weights_source (ws), n_enc, n_dec);
    return FALSE;
  }
  cfg->n_blocks = n;
  ks.n_blocks = n;
  for (int i = 0; i < n; i++) {
    int c = n_enc > 0 ? entry_dim (ws, &ks, K_DOWN_RESNET, "encoder", i, 0, "conv1.weight", 0)
                      : entry_dim (ws, &ks, K_UP_RESNET, "decoder", n - 1 - i, 0, "conv1.weight", 0);
    cfg->block_out_channels[i] = c;
  }
  if (n_enc > 0)
    cfg->layers_per_block = count_modules (ws, &ks, K_DOWN_RESNET, "encoder", 0, FALSE, "conv1.weight");
  else
    cfg->layers_per_block = count_modules (ws, &ks, K_UP_RESNET, "decoder", 0, FALSE, "conv1.weight") - 1;
  int v;
  if ((v = entry_dim (ws, &ks, K_CONV_IN, "encoder", 0, 0, "weight", 1)) > 0)
    cfg->in_channels = v;
  if ((v = entry_dim (ws, &ks, K_CONV_OUT, "decoder", 0, 0, "weight", 0)) > 0)
    cfg->out_channels = v;
  if ((v = entry_dim (ws, &ks, K_CONV_IN, "decoder", 0, 0, "weight", 1)) > 0)
    cfg->latent_channels = v;
  else if ((v = entry_dim (ws, &ks, K_CONV_OUT, "encoder", 0, 0, "weight", 0)) > 0)
    cfg->latent_channels = v / 2;
  g_autofree char *quant = key_module (&ks, K_QUANT, "", 0, 0);
  g_autofree char *post = key_module (&ks, K_POST_QUANT, "", 0, 0);
  g_autofree char *attn_e = key_module (&ks, K_ATTN_NORM, "encoder", 0, 0);
  g_autofree char *attn_d = key_module (&ks, K_ATTN_NORM, "decoder", 0, 0);
  cfg->use_quant_conv = has_key (ws, quant, "weight");
  cfg->use_post_quant_conv = has_key (ws, post, "weight");
  cfg->mid_block_add_attention = has_key (ws, attn_e, "weight") || has_key (ws, attn_d, "weight");
  if (!kin_vae_config_validate (cfg, error)) {
    g_prefix_error (error, "%s: ", kin_weights_source (ws));
    return FALSE;
  }
  return TRUE;
}

/* ------------------------------------------------------------------------------------------ */
/* Model structure                                                                            */
/* ------------------------------------------------------------------------------------------ */

typedef struct { KinTensor *w, *b; int cin, cout, k; } VaeConv;      /* w [cout, cin, k, k], b [cout] */
typedef struct { KinTensor *w, *b; int c; } VaeNorm;                 /* w, b [c] */
typedef struct {
  VaeNorm norm1, norm2;
  VaeConv conv1, conv2, conv_shortcut;   /* conv_shortcut only when cin ≠ cout */
  int cin, cout;
} VaeResnet;
typedef struct {
  VaeNorm group_norm;
  KinTensor *qkv_w, *qkv_b;              /* [3C, C], [3C]: to_q, to_k, to_v stacked */
  KinTensor *out_w, *out_b;              /* [C, C], [C] */
  int c;
} VaeAttn;
typedef struct {
  VaeResnet *resnets;
  int n_resnets;
  VaeConv sampler;                       /* downsampler (encoder) / upsampler (decoder) conv */
  gboolean has_sampler;
} VaeBlock;
typedef struct {
  gboolean loaded;
  VaeConv conv_in;
  VaeBlock blocks[KIN_VAE_MAX_BLOCKS];
  VaeResnet mid[2];
  VaeAttn attn;
  gboolean has_attn;
  VaeNorm norm_out;
  VaeConv conv_out;
} VaeCoder;

struct _KinVae {
  KinBackend *be;
  KinVaeConfig cfg;
  KeyStyle keys;
  VaeCoder encoder, decoder;
  VaeConv quant_conv, post_quant_conv;
  KinVaeTapFunc tap;
  gpointer tap_data;
};

static void
conv_clear (VaeConv *c)
{
  g_clear_pointer (&c->w, kin_tensor_free);
  g_clear_pointer (&c->b, kin_tensor_free);
}

static void
norm_clear (VaeNorm *n)
{
  g_clear_pointer (&n->w, kin_tensor_free);
  g_clear_pointer (&n->b, kin_tensor_free);
}

static void
resnet_clear (VaeResnet *r)
{
  norm_clear (&r->norm1);
  norm_clear (&r->norm2);
  conv_clear (&r->conv1);
  conv_clear (&r->conv2);
  conv_clear (&r->conv_shortcut);
}

static void
coder_clear (VaeCoder *c)
{
  conv_clear (&c->conv_in);
  for (int i = 0; i < KIN_VAE_MAX_BLOCKS; i++) {
    for (int j = 0; j < c->blocks[i].n_resnets; j++)
      resnet_clear (&c->blocks[i].resnets[j]);
    g_clear_pointer (&c->blocks[i].resnets, g_free);
    conv_clear (&c->blocks[i].sampler);
  }
  resnet_clear (&c->mid[0]);
  resnet_clear (&c->mid[1]);
  norm_clear (&c->attn.group_norm);
  g_clear_pointer (&c->attn.qkv_w, kin_tensor_free);
  g_clear_pointer (&c->attn.qkv_b, kin_tensor_free);
  g_clear_pointer (&c->attn.out_w, kin_tensor_free);
  g_clear_pointer (&c->attn.out_b, kin_tensor_free);
  norm_clear (&c->norm_out);
  conv_clear (&c->conv_out);
}

void
kin_vae_free (KinVae *vae)
{
  if (vae == NULL)
    return;
  coder_clear (&vae->encoder);
  coder_clear (&vae->decoder);
  conv_clear (&vae->quant_conv);
  conv_clear (&vae->post_quant_conv);
  g_free (vae);
}

/* ------------------------------------------------------------------------------------------ */
/* Loading (and, in "make" mode, writing random weights with the same walk)                   */
/* ------------------------------------------------------------------------------------------ */

typedef enum { INIT_WEIGHT, INIT_BIAS, INIT_NORM_W, INIT_NORM_B } InitKind;

typedef struct {
  KinVae *vae;
  KinWeights *ws;
  gboolean make;         /* add random entries to ws instead of reading them */
  guint64 rng;
  GError *error;
} Loader;

static guint64
splitmix64 (guint64 *s)
{
  guint64 z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double
rng_normal (guint64 *s)
{
  double u1 = ((splitmix64 (s) >> 11) + 0.5) / 9007199254740992.0;
  double u2 = (splitmix64 (s) >> 11) / 9007199254740992.0;
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

static void
make_entry (Loader *ld, const char *name, int ndim, const int64_t *shape, InitKind kind)
{
  int64_t numel = 1, fan_in = 1;
  for (int d = 0; d < ndim; d++)
    numel *= shape[d];
  for (int d = 1; d < ndim; d++)
    fan_in *= shape[d];
  float *data = g_new (float, numel);
  for (int64_t i = 0; i < numel; i++) {
    double r = rng_normal (&ld->rng);
    switch (kind) {
    case INIT_WEIGHT: data[i] = (float) (r / sqrt ((double) fan_in)); break;
    case INIT_NORM_W: data[i] = (float) (1.0 + 0.1 * r); break;
    default: data[i] = (float) (0.05 * r); break;
    }
  }
  size_t nbytes = (size_t) numel * sizeof (float);
  g_autoptr (GBytes) bytes = g_bytes_new_take (data, nbytes);
  kin_weights_keep_bytes (ld->ws, bytes);
  kin_weights_add_entry (ld->ws, name, KIN_DTYPE_F32, ndim, shape, data, nbytes, "random",
                         ld->error ? NULL : &ld->error);
}

/* Loads module.leaf with exactly @shape onto the backend (or makes it in make mode). */
static KinTensor *
ld_tensor (Loader *ld, const char *module, const char *leaf, InitKind kind, int ndim,
           const int64_t *shape)
{
  if (ld->error != NULL)
    return NULL;
  g_autofree char *name = g_strconcat (module, ".", leaf, NULL);
  if (ld->make) {
    make_entry (ld, name, ndim, shape, kind);
    return NULL;
  }
  return kin_weights_get_f32 (ld->ws, ld->vae->be, name, ndim, shape, &ld->error);
}

static void
load_conv (Loader *ld, VaeConv *c, const char *module, int cin, int cout, int k)
{
  int64_t ws[4] = { cout, cin, k, k }, bs[1] = { cout };
  c->cin = cin;
  c->cout = cout;
  c->k = k;
  c->w = ld_tensor (ld, module, "weight", INIT_WEIGHT, 4, ws);
  c->b = ld_tensor (ld, module, "bias", INIT_BIAS, 1, bs);
}

static void
load_norm (Loader *ld, VaeNorm *n, const char *module, int c)
{
  int64_t s[1] = { c };
  n->c = c;
  n->w = ld_tensor (ld, module, "weight", INIT_NORM_W, 1, s);
  n->b = ld_tensor (ld, module, "bias", INIT_NORM_B, 1, s);
}

static void
load_resnet (Loader *ld, VaeResnet *r, const char *module, int cin, int cout)
{
  const KeyStyle *ks = &ld->vae->keys;
  g_autofree char *n1 = key_member (ks, module, K_RES_NORM1);
  g_autofree char *c1 = key_member (ks, module, K_RES_CONV1);
  g_autofree char *n2 = key_member (ks, module, K_RES_NORM2);
  g_autofree char *c2 = key_member (ks, module, K_RES_CONV2);
  g_autofree char *sc = key_member (ks, module, K_RES_SHORTCUT);
  r->cin = cin;
  r->cout = cout;
  load_norm (ld, &r->norm1, n1, cin);
  load_conv (ld, &r->conv1, c1, cin, cout, 3);
  load_norm (ld, &r->norm2, n2, cout);
  load_conv (ld, &r->conv2, c2, cout, cout, 3);
  if (cin != cout)
    load_conv (ld, &r->conv_shortcut, sc, cin, cout, 1);
}

/* An attention projection [C, C] (diffusers) or [C, C, 1, 1] (LDM 1×1 conv) as host floats. */
static float *
ld_projection (Loader *ld, const char *module, int c, float **bias)
{
  int64_t s4[4] = { c, c, 1, 1 }, bs[1] = { c };
  *bias = NULL;
  if (ld->error != NULL)
    return NULL;
  g_autofree char *wname = g_strconcat (module, ".weight", NULL);
  g_autofree char *bname = g_strconcat (module, ".bias", NULL);
  gboolean four = ld->vae->keys.dialect == KIN_VAE_DIALECT_LDM;
  if (ld->make) {
    make_entry (ld, wname, four ? 4 : 2, s4, INIT_WEIGHT);
    make_entry (ld, bname, 1, bs, INIT_BIAS);
    return NULL;
  }
  const KinWeightEntry *e = kin_weights_contains (ld->ws, wname) ? kin_weights_lookup (ld->ws, wname) : NULL;
  four = e != NULL && e->ndim == 4;
  e = kin_weights_require (ld->ws, wname, four ? 4 : 2, s4, &ld->error);
  const KinWeightEntry *be = e ? kin_weights_require (ld->ws, bname, 1, bs, &ld->error) : NULL;
  if (be == NULL)
    return NULL;
  float *w = kin_weight_entry_to_f32 (e);
  *bias = kin_weight_entry_to_f32 (be);
  if (w == NULL || *bias == NULL) {
    g_set_error (&ld->error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "%s: %s has an unsupported dtype", e->file, module);
    g_clear_pointer (bias, g_free);
    g_clear_pointer (&w, g_free);
  }
  return w;
}

static KinTensor *
ld_upload (Loader *ld, const float *data, int ndim, const int64_t *shape)
{
  if (ld->error != NULL || ld->make || data == NULL)
    return NULL;
  return kin_tensor_from_host_f32 (ld->vae->be, data, ndim, shape, &ld->error);
}

static void
load_attention (Loader *ld, VaeAttn *a, const char *coder, int c)
{
  const KeyStyle *ks = &ld->vae->keys;
  static const VaeKey qkv_keys[3] = { K_ATTN_Q, K_ATTN_K, K_ATTN_V };
  g_autofree char *norm = key_module (ks, K_ATTN_NORM, coder, 0, 0);
  g_autofree char *out = key_module (ks, K_ATTN_OUT, coder, 0, 0);
  a->c = c;
  load_norm (ld, &a->group_norm, norm, c);
  g_autofree float *qkv_w = g_new (float, (size_t) 3 * c * c);
  g_autofree float *qkv_b = g_new (float, (size_t) 3 * c);
  for (int p = 0; p < 3; p++) {
    g_autofree char *m = key_module (ks, qkv_keys[p], coder, 0, 0);
    g_autofree float *b = NULL;
    g_autofree float *w = ld_projection (ld, m, c, &b);
    if (w != NULL) {
      memcpy (qkv_w + (size_t) p * c * c, w, sizeof (float) * c * c);
      memcpy (qkv_b + (size_t) p * c, b, sizeof (float) * c);
    }
  }
  int64_t ws[2] = { 3 * c, c }, bs[1] = { 3 * c };
  a->qkv_w = ld_upload (ld, qkv_w, 2, ws);
  a->qkv_b = ld_upload (ld, qkv_b, 1, bs);
  g_autofree float *ob = NULL;
  g_autofree float *ow = ld_projection (ld, out, c, &ob);
  int64_t os[2] = { c, c }, obs[1] = { c };
  a->out_w = ld_upload (ld, ow, 2, os);
  a->out_b = ld_upload (ld, ob, 1, obs);
}

static void
load_mid (Loader *ld, VaeCoder *cd, const char *coder, int c)
{
  const KeyStyle *ks = &ld->vae->keys;
  for (int j = 0; j < 2; j++) {
    g_autofree char *m = key_module (ks, K_MID_RESNET, coder, 0, j);
    load_resnet (ld, &cd->mid[j], m, c, c);
    if (j == 0 && ld->vae->cfg.mid_block_add_attention) {
      cd->has_attn = TRUE;
      load_attention (ld, &cd->attn, coder, c);
    }
  }
}

static void
load_encoder (Loader *ld)
{
  const KinVaeConfig *cfg = &ld->vae->cfg;
  const KeyStyle *ks = &ld->vae->keys;
  VaeCoder *e = &ld->vae->encoder;
  const int *boc = cfg->block_out_channels;
  int n = cfg->n_blocks;
  g_autofree char *conv_in = key_module (ks, K_CONV_IN, "encoder", 0, 0);
  load_conv (ld, &e->conv_in, conv_in, cfg->in_channels, boc[0], 3);
  for (int i = 0; i < n; i++) {
    VaeBlock *b = &e->blocks[i];
    b->n_resnets = cfg->layers_per_block;
    b->resnets = g_new0 (VaeResnet, b->n_resnets);
    for (int j = 0; j < b->n_resnets; j++) {
      g_autofree char *m = key_module (ks, K_DOWN_RESNET, "encoder", i, j);
      load_resnet (ld, &b->resnets[j], m, j == 0 ? boc[MAX (i - 1, 0)] : boc[i], boc[i]);
    }
    b->has_sampler = i < n - 1;
    if (b->has_sampler) {
      g_autofree char *m = key_module (ks, K_DOWNSAMPLE, "encoder", i, 0);
      load_conv (ld, &b->sampler, m, boc[i], boc[i], 3);
    }
  }
  load_mid (ld, e, "encoder", boc[n - 1]);
  g_autofree char *norm_out = key_module (ks, K_NORM_OUT, "encoder", 0, 0);
  g_autofree char *conv_out = key_module (ks, K_CONV_OUT, "encoder", 0, 0);
  load_norm (ld, &e->norm_out, norm_out, boc[n - 1]);
  load_conv (ld, &e->conv_out, conv_out, boc[n - 1], 2 * cfg->latent_channels, 3);
  if (cfg->use_quant_conv) {
    g_autofree char *q = key_module (ks, K_QUANT, "", 0, 0);
    load_conv (ld, &ld->vae->quant_conv, q, 2 * cfg->latent_channels, 2 * cfg->latent_channels, 1);
  }
  e->loaded = TRUE;
}

static void
load_decoder (Loader *ld)
{
  const KinVaeConfig *cfg = &ld->vae->cfg;
  const KeyStyle *ks = &ld->vae->keys;
  VaeCoder *d = &ld->vae->decoder;
  const int *boc = cfg->block_out_channels;
  int n = cfg->n_blocks;
  if (cfg->use_post_quant_conv) {
    g_autofree char *q = key_module (ks, K_POST_QUANT, "", 0, 0);
    load_conv (ld, &ld->vae->post_quant_conv, q, cfg->latent_channels, cfg->latent_channels, 1);
  }
  g_autofree char *conv_in = key_module (ks, K_CONV_IN, "decoder", 0, 0);
  load_conv (ld, &d->conv_in, conv_in, cfg->latent_channels, boc[n - 1], 3);
  load_mid (ld, d, "decoder", boc[n - 1]);
  /* up block i works at reversed channel rev[i] = boc[n − 1 − i] */
  for (int i = 0; i < n; i++) {
    VaeBlock *b = &d->blocks[i];
    int cout = boc[n - 1 - i], prev = boc[n - 1 - MAX (i - 1, 0)];
    b->n_resnets = cfg->layers_per_block + 1;
    b->resnets = g_new0 (VaeResnet, b->n_resnets);
    for (int j = 0; j < b->n_resnets; j++) {
      g_autofree char *m = key_module (ks, K_UP_RESNET, "decoder", i, j);
      load_resnet (ld, &b->resnets[j], m, j == 0 ? prev : cout, cout);
    }
    b->has_sampler = i < n - 1;
    if (b->has_sampler) {
      g_autofree char *m = key_module (ks, K_UPSAMPLE, "decoder", i, 0);
      load_conv (ld, &b->sampler, m, cout, cout, 3);
    }
  }
  g_autofree char *norm_out = key_module (ks, K_NORM_OUT, "decoder", 0, 0);
  g_autofree char *conv_out = key_module (ks, K_CONV_OUT, "decoder", 0, 0);
  load_norm (ld, &d->norm_out, norm_out, boc[0]);
  load_conv (ld, &d->conv_out, conv_out, boc[0], cfg->out_channels, 3);
  d->loaded = TRUE;
}

KinVae *
kin_vae_new (KinBackend *be, KinWeights *ws, const KinVaeConfig *cfg, KinVaeParts parts,
             GError **error)
{
  g_return_val_if_fail (be != NULL && ws != NULL, NULL);
  g_autoptr (KinVae) vae = g_new0 (KinVae, 1);
  vae->be = be;
  if (!detect_dialect (ws, &vae->keys.dialect, &vae->keys.prefix, error))
    return NULL;
  if (cfg != NULL) {
    vae->cfg = *cfg;
  } else {
    kin_vae_config_init_sd (&vae->cfg);
    if (!kin_vae_config_infer (&vae->cfg, ws, error))
      return NULL;
  }
  if (!kin_vae_config_validate (&vae->cfg, error))
    return NULL;
  vae->keys.n_blocks = vae->cfg.n_blocks;
  Loader ld = { .vae = vae, .ws = ws };
  if (parts & KIN_VAE_ENCODER)
    load_encoder (&ld);
  if (parts & KIN_VAE_DECODER)
    load_decoder (&ld);
  if (ld.error != NULL) {
    g_propagate_prefixed_error (error, ld.error, "VAE (%s key names): ",
                                kin_vae_dialect_name (vae->keys.dialect));
    return NULL;
  }
  return g_steal_pointer (&vae);
}

KinWeights *
kin_vae_random_weights (const KinVaeConfig *cfg, KinVaeDialect dialect, KinVaeParts parts,
                        guint64 seed)
{
  g_return_val_if_fail (kin_vae_config_validate (cfg, NULL), NULL);
  g_autoptr (KinVae) vae = g_new0 (KinVae, 1);
  vae->cfg = *cfg;
  vae->keys = (KeyStyle) { dialect, "", cfg->n_blocks };
  KinWeights *ws = kin_weights_new ();
  Loader ld = { .vae = vae, .ws = ws, .make = TRUE, .rng = seed };
  if (parts & KIN_VAE_ENCODER)
    load_encoder (&ld);
  if (parts & KIN_VAE_DECODER)
    load_decoder (&ld);
  if (ld.error != NULL) {
    g_warning ("kin_vae_random_weights: %s", ld.error->message);
    g_clear_error (&ld.error);
  }
  return ws;
}

/* A config.json beside a weight file counts only when it describes an AutoencoderKL. */
static gboolean
read_config_if_vae (KinVaeConfig *cfg, const char *path, gboolean *found, GError **error)
{
  *found = FALSE;
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return TRUE;
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, error))
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return TRUE;
  JsonObject *obj = json_node_get_object (root);
  const char *cls = json_object_get_string_member_with_default (obj, "_class_name", "");
  if (g_strcmp0 (cls, "AutoencoderKL") != 0 &&
      !(cls[0] == '\0' && json_object_has_member (obj, "latent_channels") &&
        json_object_has_member (obj, "block_out_channels")))
    return TRUE;
  *found = TRUE;
  if (!kin_vae_config_from_json_object (cfg, obj, error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  return TRUE;
}

KinVae *
kin_vae_load (KinBackend *be, const char *path, KinVaeParts parts, GError **error)
{
  g_autoptr (KinWeights) ws = kin_weights_open (path, error);
  if (ws == NULL)
    return NULL;
  gboolean dir = g_file_test (path, G_FILE_TEST_IS_DIR);
  g_autofree char *folder = dir ? g_strdup (path) : g_path_get_dirname (path);
  g_autofree char *config_path = g_build_filename (folder, "config.json", NULL);
  KinVaeConfig cfg;
  kin_vae_config_init_sd (&cfg);
  gboolean found = FALSE;
  if (!read_config_if_vae (&cfg, config_path, &found, error))
    return NULL;
  KinVae *vae = kin_vae_new (be, ws, found ? &cfg : NULL, parts, error);
  if (vae != NULL) {
    g_auto (GStrv) unused = kin_weights_unused (ws);
    g_debug ("VAE from %s: %s names, %u tensors not used", kin_weights_source (ws),
             kin_vae_dialect_name (vae->keys.dialect), unused ? g_strv_length (unused) : 0);
  }
  return vae;
}

const KinVaeConfig *
kin_vae_get_config (KinVae *vae)
{
  return &vae->cfg;
}

KinBackend *
kin_vae_get_backend (KinVae *vae)
{
  return vae->be;
}

KinVaeDialect
kin_vae_get_dialect (KinVae *vae)
{
  return vae->keys.dialect;
}

void
kin_vae_set_tap (KinVae *vae, KinVaeTapFunc func, gpointer user_data)
{
  vae->tap = func;
  vae->tap_data = user_data;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward passes                                                                             */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  KinVae *vae;
  KinBackend *be;
  GError *error;          /* first allocation error; backend errors stay in the backend */
} Run;

static gboolean
run_ok (Run *r)
{
  return r->error == NULL && !kin_backend_failed (r->be);
}

static KinTensor *
run_tensor (Run *r, int ndim, const int64_t *shape)
{
  if (!run_ok (r))
    return NULL;
  return kin_tensor_new (r->be, KIN_DTYPE_F32, ndim, shape, &r->error);
}

static KinTensor *
run_nchw (Run *r, int64_t n, int64_t c, int64_t h, int64_t w)
{
  int64_t s[4] = { n, c, h, w };
  return run_tensor (r, 4, s);
}

static void
run_tap (Run *r, const char *name, const KinTensor *t)
{
  if (r->vae->tap != NULL && t != NULL && run_ok (r))
    r->vae->tap (name, t, r->vae->tap_data);
}

static void
drop (KinTensor **t)
{
  g_clear_pointer (t, kin_tensor_free);
}

/* x [N, cin, H, W] → [N, cout, oh, ow] with explicit padding (top, bottom, left, right). */
static KinTensor *
conv_pad (Run *r, const VaeConv *c, const KinTensor *x, int stride, int pt, int pb, int pl, int pr)
{
  if (x == NULL || !run_ok (r))
    return NULL;
  KinConv2d d = {
    .n = (int) x->shape[0], .cin = c->cin, .h = (int) x->shape[2], .w = (int) x->shape[3],
    .cout = c->cout, .kh = c->k, .kw = c->k, .stride = stride,
    .pad_t = pt, .pad_b = pb, .pad_l = pl, .pad_r = pr,
  };
  g_assert (x->shape[1] == c->cin);
  int oh = (d.h + pt + pb - d.kh) / stride + 1, ow = (d.w + pl + pr - d.kw) / stride + 1;
  KinTensor *y = run_nchw (r, d.n, d.cout, oh, ow);
  if (y != NULL)
    r->be->conv2d (r->be, y, x, c->w, c->b, &d);
  return y;
}

/* Stride 1, "same" padding k/2. */
static KinTensor *
conv_same (Run *r, const VaeConv *c, const KinTensor *x)
{
  int p = c->k / 2;
  return conv_pad (r, c, x, 1, p, p, p, p);
}

/* GroupNorm(groups, eps) with optional SiLU; @y may be @x. */
static void
group_norm (Run *r, const VaeNorm *n, KinTensor *y, const KinTensor *x, gboolean silu)
{
  if (x == NULL || y == NULL || !run_ok (r))
    return;
  const KinVaeConfig *cfg = &r->vae->cfg;
  r->be->group_norm (r->be, y, x, n->w, n->b, x->shape[0], x->shape[1], x->shape[2] * x->shape[3],
                     cfg->norm_num_groups, cfg->norm_eps, silu);
}

/* ResnetBlock2D (temb None): shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))).
 * Consumes @x [N, cin, H, W]; returns [N, cout, H, W]. */
static KinTensor *
resnet_forward (Run *r, const VaeResnet *rn, KinTensor *x)
{
  KinTensor *shortcut = NULL, *h = NULL;
  if (rn->cin != rn->cout) {
    shortcut = conv_same (r, &rn->conv_shortcut, x);   /* [N, cout, H, W] */
    h = x;                                              /* x is no longer needed: normalise in place */
    group_norm (r, &rn->norm1, h, h, TRUE);
  } else {
    shortcut = x;                                       /* identity: keep x for the residual */
    h = x ? run_nchw (r, x->shape[0], x->shape[1], x->shape[2], x->shape[3]) : NULL;
    group_norm (r, &rn->norm1, h, x, TRUE);
  }
  KinTensor *h1 = conv_same (r, &rn->conv1, h);         /* [N, cout, H, W] */
  drop (&h);
  group_norm (r, &rn->norm2, h1, h1, TRUE);
  KinTensor *out = conv_same (r, &rn->conv2, h1);       /* [N, cout, H, W] */
  drop (&h1);
  if (out != NULL && shortcut != NULL && run_ok (r))
    r->be->add (r->be, out, out, shortcut);
  drop (&shortcut);
  if (!run_ok (r))
    drop (&out);
  return out;
}

/* Mid-block attention: x + to_out(softmax(q·kᵀ/√C)·v) over the H·W tokens of each frame, with
 * q, k, v = Linear(GroupNorm(x)) as [HW, C] rows.  Consumes @x [N, C, H, W]. */
static KinTensor *
attention_forward (Run *r, const VaeAttn *a, KinTensor *x)
{
  if (x == NULL || !run_ok (r)) {
    drop (&x);
    return NULL;
  }
  int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
  KinTensor *h = run_nchw (r, N, C, x->shape[2], x->shape[3]);
  group_norm (r, &a->group_norm, h, x, FALSE);
  int64_t tok_shape[3] = { N, HW, C }, nchw_dims[3] = { N, C, HW }, ntc_dims[3] = { N, HW, C };
  static const int swap[3] = { 0, 2, 1 };
  KinTensor *tok = run_tensor (r, 3, tok_shape);                       /* [N, HW, C] */
  if (tok != NULL)
    r->be->permute (r->be, tok, h, 3, nchw_dims, swap);
  drop (&h);
  int64_t qkv_shape[2] = { N * HW, 3 * C };
  KinTensor *qkv = run_tensor (r, 2, qkv_shape);                       /* [N·HW, 3C] */
  if (qkv != NULL)
    r->be->linear (r->be, qkv, tok, a->qkv_w, a->qkv_b, N * HW, C, 3 * C);
  drop (&tok);
  int64_t o_shape[2] = { N * HW, C };
  KinTensor *o = run_tensor (r, 2, o_shape);                           /* [N·HW, C] */
  if (o != NULL) {
    KinAttention desc = {
      .batch = (int) N, .heads = 1, .lq = (int) HW, .lk = (int) HW, .head_dim = (int) C,
      .q_offset = 0, .k_offset = C, .v_offset = 2 * C, .out_offset = 0,
      .q_stride = 3 * C, .kv_stride = 3 * C, .out_stride = C,
      .scale = (float) (1.0 / sqrt ((double) C)),
    };
    r->be->attention (r->be, o, qkv, qkv, qkv, &desc);
  }
  drop (&qkv);
  KinTensor *p = run_tensor (r, 2, o_shape);                           /* [N·HW, C] */
  if (p != NULL)
    r->be->linear (r->be, p, o, a->out_w, a->out_b, N * HW, C, C);
  drop (&o);
  KinTensor *y = run_nchw (r, N, C, x->shape[2], x->shape[3]);         /* [N, C, H, W] */
  if (y != NULL) {
    r->be->permute (r->be, y, p, 3, ntc_dims, swap);
    r->be->add (r->be, y, y, x);
  }
  drop (&p);
  drop (&x);
  if (!run_ok (r))
    drop (&y);
  return y;
}

static KinTensor *
mid_forward (Run *r, const VaeCoder *cd, KinTensor *x)
{
  x = resnet_forward (r, &cd->mid[0], x);
  if (cd->has_attn)
    x = attention_forward (r, &cd->attn, x);
  return resnet_forward (r, &cd->mid[1], x);
}

/* GroupNorm + SiLU + conv_out; consumes @x. */
static KinTensor *
out_forward (Run *r, const VaeCoder *cd, KinTensor *x)
{
  group_norm (r, &cd->norm_out, x, x, TRUE);
  KinTensor *y = conv_same (r, &cd->conv_out, x);
  drop (&x);
  return y;
}

/* Downsample2D with padding 0: zero-pad right and bottom by one, 3×3 stride 2.  Consumes @x. */
static KinTensor *
downsample (Run *r, const VaeConv *c, KinTensor *x)
{
  KinTensor *y = conv_pad (r, c, x, 2, 0, 1, 0, 1);
  drop (&x);
  return y;
}

/* Upsample2D: nearest ×2, then 3×3 conv.  Consumes @x [N, C, H, W] → [N, C, 2H, 2W]. */
static KinTensor *
upsample (Run *r, const VaeConv *c, KinTensor *x)
{
  KinTensor *u = x ? run_nchw (r, x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]) : NULL;
  if (u != NULL)
    r->be->upsample_nearest2x (r->be, u, x, x->shape[0] * x->shape[1], x->shape[2], x->shape[3]);
  drop (&x);
  KinTensor *y = conv_same (r, c, u);
  drop (&u);
  return y;
}

static gboolean
run_finish (Run *r, KinTensor **result, GError **error)
{
  if (r->error != NULL) {
    g_propagate_error (error, r->error);
    r->error = NULL;
    kin_backend_take_error (r->be, NULL);
    drop (result);
    return FALSE;
  }
  if (!kin_backend_take_error (r->be, error)) {
    drop (result);
    return FALSE;
  }
  if (*result == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_FAILED, "VAE: no result");
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_input (KinVae *vae, const KinTensor *x, int channels, int multiple, const char *what,
             GError **error)
{
  if (x == NULL || x->dtype != KIN_DTYPE_F32 || x->ndim != 4 || x->backend != vae->be) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "VAE: %s must be an F32 tensor [N, C, H, W] on the %s backend", what, vae->be->name);
    return FALSE;
  }
  g_autofree char *s = kin_shape_to_string (x->ndim, x->shape);
  if (x->shape[1] != channels || x->shape[0] < 1 || x->shape[0] > G_MAXINT / 4) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "VAE: %s have shape %s, expected [N, %d, H, W]", what, s, channels);
    return FALSE;
  }
  if (x->shape[2] < 1 || x->shape[3] < 1 || x->shape[2] > 65536 || x->shape[3] > 65536 ||
      x->shape[2] % multiple != 0 || x->shape[3] % multiple != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "VAE: %s of size %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT " (H×W): both sides must "
                 "be positive multiples of %d (pad or crop the frames first)",
                 what, x->shape[2], x->shape[3], multiple);
    return FALSE;
  }
  return TRUE;
}

KinTensor *
kin_vae_encode_moments (KinVae *vae, const KinTensor *frames, GError **error)
{
  const KinVaeConfig *cfg = &vae->cfg;
  if (!vae->encoder.loaded) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "VAE: the encoder was not loaded");
    return NULL;
  }
  if (!check_input (vae, frames, cfg->in_channels, kin_vae_config_factor (cfg), "frames", error))
    return NULL;
  Run r = { vae, vae->be, NULL };
  const VaeCoder *e = &vae->encoder;
  KinTensor *h = conv_same (&r, &e->conv_in, frames);      /* [N, boc0, H, W] */
  run_tap (&r, "encoder.conv_in.out", h);
  for (int i = 0; i < cfg->n_blocks; i++) {
    const VaeBlock *b = &e->blocks[i];
    for (int j = 0; j < b->n_resnets; j++)
      h = resnet_forward (&r, &b->resnets[j], h);
    if (b->has_sampler)
      h = downsample (&r, &b->sampler, h);                 /* [N, boc_i, H/2^(i+1), …] */
    char name[48];
    g_snprintf (name, sizeof name, "encoder.down_blocks.%d.out", i);
    run_tap (&r, name, h);
  }
  h = mid_forward (&r, e, h);
  run_tap (&r, "encoder.mid_block.out", h);
  h = out_forward (&r, e, h);                              /* [N, 2L, h, w] */
  run_tap (&r, "encoder.out", h);
  if (cfg->use_quant_conv) {
    KinTensor *m = conv_same (&r, &vae->quant_conv, h);
    drop (&h);
    h = m;
  }
  run_tap (&r, "moments", h);
  if (!run_finish (&r, &h, error))
    return NULL;
  return h;
}

/* Decoder stage 0 at latent resolution: post_quant_conv, conv_in, mid block.
 * z [N, L, h, w] (not consumed) → [N, C_last, h, w]. */
static KinTensor *
decoder_trunk (Run *r, const KinTensor *z)
{
  const VaeCoder *d = &r->vae->decoder;
  KinTensor *h;
  if (r->vae->cfg.use_post_quant_conv) {
    KinTensor *pq = conv_same (r, &r->vae->post_quant_conv, z);  /* [N, L, h, w] */
    run_tap (r, "post_quant_conv.out", pq);
    h = conv_same (r, &d->conv_in, pq);
    drop (&pq);
  } else {
    h = conv_same (r, &d->conv_in, z);                          /* [N, C_last, h, w] */
  }
  run_tap (r, "decoder.conv_in.out", h);
  h = mid_forward (r, d, h);
  run_tap (r, "decoder.mid_block.out", h);
  return h;
}

/* Up block @i: resnets, then nearest ×2 + conv except in the last block.  Consumes @x. */
static KinTensor *
decoder_up_block (Run *r, int i, KinTensor *x)
{
  const VaeBlock *b = &r->vae->decoder.blocks[i];
  for (int j = 0; j < b->n_resnets; j++)
    x = resnet_forward (r, &b->resnets[j], x);
  if (b->has_sampler)
    x = upsample (r, &b->sampler, x);
  char name[48];
  g_snprintf (name, sizeof name, "decoder.up_blocks.%d.out", i);
  run_tap (r, name, x);
  return x;
}

/* Up blocks @first… and the output layers.  Consumes @x. */
static KinTensor *
decoder_tail (Run *r, int first, KinTensor *x)
{
  for (int i = first; i < r->vae->cfg.n_blocks; i++)
    x = decoder_up_block (r, i, x);
  x = out_forward (r, &r->vae->decoder, x);                     /* [N, out, f·h, f·w] */
  run_tap (r, "decoded", x);
  return x;
}

static gboolean
check_decoder_input (KinVae *vae, const KinTensor *z, GError **error)
{
  const KinVaeConfig *cfg = &vae->cfg;
  if (!vae->decoder.loaded) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "VAE: the decoder was not loaded");
    return FALSE;
  }
  if (!check_input (vae, z, cfg->latent_channels, 1, "latents", error))
    return FALSE;
  if (z->shape[2] * kin_vae_config_factor (cfg) > 65536 || z->shape[3] * kin_vae_config_factor (cfg) > 65536) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "VAE: latents too large");
    return FALSE;
  }
  return TRUE;
}

KinTensor *
kin_vae_decode_frames (KinVae *vae, const KinTensor *z, GError **error)
{
  if (!check_decoder_input (vae, z, error))
    return NULL;
  Run r = { vae, vae->be, NULL };
  KinTensor *h = decoder_trunk (&r, z);
  h = decoder_tail (&r, 0, h);
  if (!run_finish (&r, &h, error))
    return NULL;
  return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Tiled decoding                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* Start positions of tiles of @tile along @size with at least @overlap shared; the last tile is
 * aligned to the end so every tile has the same size. */
static int
tile_starts (int size, int tile, int overlap, int **starts)
{
  if (size <= tile) {
    *starts = g_new0 (int, 1);
    return 1;
  }
  int stride = MAX (tile - overlap, 1);
  int n = (size - tile + stride - 1) / stride + 1;
  *starts = g_new (int, n);
  for (int k = 0; k < n; k++)
    (*starts)[k] = MIN (k * stride, size - tile);
  return n;
}

/* Blend weight along one axis for pixel @p of a tile of @len pixels whose first @lo and last
 * @hi pixels overlap a neighbour: a linear ramp that is ½ step from 0 at the tile edge. */
static float
ramp_weight (int p, int len, int lo, int hi)
{
  float wgt = 1.0f;
  if (lo > 0 && p < lo)
    wgt = MIN (wgt, (p + 0.5f) / lo);
  if (hi > 0 && p >= len - hi)
    wgt = MIN (wgt, (len - p - 0.5f) / hi);
  return wgt;
}

/* Copies window [y0, y0+th) × [x0, x0+tw) of x [N, C, h, w] into a new tensor. */
static KinTensor *
crop_window (Run *r, const KinTensor *x, int y0, int x0, int th, int tw)
{
  int64_t N = x->shape[0], C = x->shape[1], h = x->shape[2], w = x->shape[3];
  KinTensor *t = run_nchw (r, N, C, th, tw);
  if (t == NULL)
    return NULL;
  for (int64_t p = 0; p < N * C; p++)
    for (int y = 0; y < th; y++)
      r->be->copy (r->be, t, (p * th + y) * tw, x, (p * h + y0 + y) * w + x0, tw);
  return t;
}

/* How many decoder stages run in one pass before tiling, given a budget for the largest
 * activation between stages: −1 none (tile the latents), 0 the trunk (conv_in + mid block, with
 * its global attention), k > 0 the trunk and up blocks 0 … k−1. */
static int
untiled_stages (const KinVaeConfig *cfg, int64_t n, int h, int w, int budget_mib)
{
  if (budget_mib < 0)
    return -1;
  double limit = (budget_mib > 0 ? budget_mib : 512) * 1048576.0 / 4;   /* ~4 live activations */
  const int *boc = cfg->block_out_channels;
  int nb = cfg->n_blocks, k = 0;
  if ((double) n * boc[nb - 1] * h * w * 4 > limit)
    return -1;
  for (int i = 0; i < nb - 1; i++) {      /* up block i ends at boc[nb−1−i] channels, ×2^(i+1) */
    double act = (double) n * boc[nb - 1 - i] * h * w * 4 * (double) (1 << (2 * (i + 1)));
    if (act > limit)
      break;
    k = i + 1;
  }
  return k;
}

/* Decodes one window (latent units) of @src, which is the latents (@k < 0) or the activation
 * after @k untiled stages at 2^k times the latent resolution. */
static KinTensor *
decode_window (KinVae *vae, const KinTensor *src, int k, int y0, int x0, int th, int tw,
               GError **error)
{
  int s = k > 0 ? 1 << k : 1;
  Run r = { vae, vae->be, NULL };
  KinTensor *t = crop_window (&r, src, y0 * s, x0 * s, th * s, tw * s);
  if (k < 0) {
    if (!run_finish (&r, &t, error))
      return NULL;
    KinTensor *dec = kin_vae_decode_frames (vae, t, error);
    kin_tensor_free (t);
    return dec;
  }
  t = decoder_tail (&r, k, t);
  return run_finish (&r, &t, error) ? t : NULL;
}

typedef struct {
  float *acc, *wsum;        /* Σ weight·tile [N, C, H, W], Σ weight [H, W] */
  int64_t nc, H, W;
} Blend;

static void
blend_add (Blend *bl, const float *tile, int64_t oy, int64_t ox, const float *wy, int64_t th,
           const float *wx, int64_t tw)
{
  for (int64_t p = 0; p < bl->nc; p++)
    for (int64_t y = 0; y < th; y++)
      for (int64_t x = 0; x < tw; x++)
        bl->acc[(p * bl->H + oy + y) * bl->W + ox + x] += wy[y] * wx[x] * tile[(p * th + y) * tw + x];
  for (int64_t y = 0; y < th; y++)
    for (int64_t x = 0; x < tw; x++)
      bl->wsum[(oy + y) * bl->W + ox + x] += wy[y] * wx[x];
}

/* Ramp weights along one axis for tile @a of @n starting at @starts (latent units). */
static void
axis_weights (const int *starts, int n, int a, int len, int f, float *wgt)
{
  int lo = a > 0 ? (starts[a - 1] + len - starts[a]) * f : 0;
  int hi = a < n - 1 ? (starts[a] + len - starts[a + 1]) * f : 0;
  for (int p = 0; p < len * f; p++)
    wgt[p] = ramp_weight (p, len * f, lo, hi);
}

static gboolean
decode_tiles (KinVae *vae, const KinTensor *src, int k, const int *ys, int ny, const int *xs,
              int nx, int th, int tw, Blend *bl, GError **error)
{
  int f = kin_vae_config_factor (&vae->cfg);
  g_autofree float *wy = g_new (float, th * f);
  g_autofree float *wx = g_new (float, tw * f);
  for (int a = 0; a < ny; a++) {
    axis_weights (ys, ny, a, th, f, wy);
    for (int b = 0; b < nx; b++) {
      axis_weights (xs, nx, b, tw, f, wx);
      g_autoptr (KinTensor) dec = decode_window (vae, src, k, ys[a], xs[b], th, tw, error);
      if (dec == NULL)
        return FALSE;                                                 /* [N, C, th·f, tw·f] */
      g_autofree float *host = kin_tensor_to_host_f32 (dec);
      blend_add (bl, host, (int64_t) ys[a] * f, (int64_t) xs[b] * f, wy, (int64_t) th * f, wx,
                 (int64_t) tw * f);
    }
  }
  return TRUE;
}

/* Tile edge and overlap in latent pixels; FALSE when one tile covers the frame. */
static gboolean
tile_size (const KinVaeTiling *tiling, int h, int w, int *tile, int *overlap)
{
  *tile = tiling && tiling->tile > 0 ? tiling->tile : 32;
  *overlap = tiling && tiling->overlap > 0 ? tiling->overlap : *tile / 4;
  *overlap = CLAMP (*overlap, 0, *tile - 1);
  return h > *tile || w > *tile;
}

gboolean
kin_vae_tile_plan (const KinVaeConfig *cfg, int n, int h, int w, const KinVaeTiling *tiling,
                   KinVaeTilePlan *plan)
{
  int tile, overlap;
  memset (plan, 0, sizeof *plan);
  if (!tile_size (tiling, h, w, &tile, &overlap))
    return FALSE;
  g_autofree int *ys = NULL, *xs = NULL;
  plan->tiles_y = tile_starts (h, tile, overlap, &ys);
  plan->tiles_x = tile_starts (w, tile, overlap, &xs);
  plan->tile_h = MIN (tile, h);
  plan->tile_w = MIN (tile, w);
  plan->untiled_stages = untiled_stages (cfg, n, h, w, tiling ? tiling->trunk_mib : 0);
  return TRUE;
}

KinTensor *
kin_vae_decode_frames_tiled (KinVae *vae, const KinTensor *z, const KinVaeTiling *tiling,
                             GError **error)
{
  const KinVaeConfig *cfg = &vae->cfg;
  if (!check_decoder_input (vae, z, error))
    return NULL;
  int tile, overlap;
  int h = (int) z->shape[2], w = (int) z->shape[3], f = kin_vae_config_factor (cfg);
  if (!tile_size (tiling, h, w, &tile, &overlap))
    return kin_vae_decode_frames (vae, z, error);
  int64_t N = z->shape[0], C = cfg->out_channels, H = (int64_t) h * f, W = (int64_t) w * f;
  g_autofree int *ys = NULL, *xs = NULL;
  int ny = tile_starts (h, tile, overlap, &ys), nx = tile_starts (w, tile, overlap, &xs);
  g_autofree float *acc = g_try_new0 (float, (gsize) (N * C * H * W));
  g_autofree float *wsum = g_try_new0 (float, (gsize) (H * W));
  if (acc == NULL || wsum == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "VAE: out of memory for the tiled output");
    return NULL;
  }
  KinVaeTapFunc tap = vae->tap;
  vae->tap = NULL;          /* intermediates of single tiles mean nothing to a caller */
  int k = untiled_stages (cfg, N, h, w, tiling ? tiling->trunk_mib : 0);
  g_autoptr (KinTensor) trunk = NULL;
  if (k >= 0) {             /* the low-resolution stages in one pass: exact global attention */
    Run r = { vae, vae->be, NULL };
    trunk = decoder_trunk (&r, z);
    for (int i = 0; i < k; i++)
      trunk = decoder_up_block (&r, i, trunk);
    if (!run_finish (&r, &trunk, error))
      k = -2;
  }
  Blend bl = { acc, wsum, N * C, H, W };
  gboolean ok = k > -2 && decode_tiles (vae, k >= 0 ? trunk : z, k, ys, ny, xs, nx, MIN (tile, h),
                                        MIN (tile, w), &bl, error);
  vae->tap = tap;
  if (!ok)
    return NULL;
  for (int64_t p = 0; p < N * C; p++)
    for (int64_t i = 0; i < H * W; i++)
      acc[p * H * W + i] /= wsum[i];
  int64_t shape[4] = { N, C, H, W };
  return kin_tensor_from_host_f32 (vae->be, acc, 4, shape, error);
}

