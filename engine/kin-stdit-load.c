/* kin-stdit-load.c — STDiT/STDiT2 config derivation and weight loading.
 *
 * The config comes from config.json (HF layout), from the checkpoint's tensor shapes, or both.
 * v1.0 checkpoints are bare .pth state dicts: depth, hidden size, caption channels and
 * model_max_length are read from shapes; the head count cannot be (no per-head tensor in v1.0):
 * 16 for hidden 1152 (STDiT-XL/2), hidden/72 otherwise, unless the caller sets it.  space_scale /
 * time_scale are recovered from the stored pos_embed / pos_embed_temporal buffers when the file
 * has them (the buffers themselves are ignored: the tables are recomputed for the actual size). */
#include "kin-stdit-private.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>

void
kin_stdit_config_init (KinStditConfig *cfg)
{
  memset (cfg, 0, sizeof *cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Recognising files that are not an STDiT at all. */

static gboolean
any_key_has_prefix (KinWeights *ws, const char *const *prefixes, const char **found)
{
  guint n = kin_weights_count (ws);
  for (guint i = 0; i < n; i++) {
    const char *name = kin_weights_nth (ws, i)->name;
    for (guint p = 0; prefixes[p] != NULL; p++)
      if (g_str_has_prefix (name, prefixes[p])) {
        *found = name;
        return TRUE;
      }
  }
  return FALSE;
}

static gboolean
check_is_stdit (KinWeights *ws, GError **error)
{
  static const char *const vae[] = { "encoder.down_blocks.", "decoder.up_blocks.", "quant_conv.",
                                     "post_quant_conv.", "encoder.conv_in.", "decoder.conv_in.",
                                     "encoder.down.", "decoder.up.", NULL };
  static const char *const t5[] = { "encoder.block.", "shared.weight", "encoder.final_layer_norm.",
                                    "encoder.embed_tokens.", NULL };
  static const char *const prefixed[] = { "module.x_embedder.", "model.x_embedder.",
                                          "ema.x_embedder.", NULL };
  const char *key = NULL;
  if (kin_weights_contains (ws, "x_embedder.proj.weight"))
    return TRUE;
  if (any_key_has_prefix (ws, vae, &key)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "%s is a VAE (AutoencoderKL) checkpoint (it has '%s'), not an STDiT model",
                 kin_weights_source (ws), key);
    return FALSE;
  }
  if (any_key_has_prefix (ws, t5, &key)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "%s is a T5 text-encoder checkpoint (it has '%s'), not an STDiT model",
                 kin_weights_source (ws), key);
    return FALSE;
  }
  if (any_key_has_prefix (ws, prefixed, &key)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "%s holds an STDiT under a prefix ('%s'); expected the flat state dict "
                 "(keys such as x_embedder.proj.weight)", kin_weights_source (ws), key);
    return FALSE;
  }
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
               "%s is not an STDiT/STDiT2 checkpoint: it has no tensor x_embedder.proj.weight",
               kin_weights_source (ws));
  return FALSE;
}

/* ---------------------------------------------------------------------------------------------
 * JSON */

static gboolean
json_int (JsonObject *o, const char *name, int *out)
{
  if (o == NULL || !json_object_has_member (o, name))
    return FALSE;
  JsonNode *n = json_object_get_member (o, name);
  if (!JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = (int) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = (int) json_node_get_double (n);
  else
    return FALSE;
  return TRUE;
}

static gboolean
json_double (JsonObject *o, const char *name, double *out)
{
  if (o == NULL || !json_object_has_member (o, name))
    return FALSE;
  JsonNode *n = json_object_get_member (o, name);
  if (!JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE)
    return FALSE;
  *out = json_node_get_double (n);
  return TRUE;
}

static gboolean
json_bool (JsonObject *o, const char *name, gboolean *out)
{
  if (o == NULL || !json_object_has_member (o, name))
    return FALSE;
  JsonNode *n = json_object_get_member (o, name);
  if (!JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  if (json_node_get_value_type (n) == G_TYPE_BOOLEAN)
    *out = json_node_get_boolean (n);
  else
    *out = json_node_get_int (n) != 0;
  return TRUE;
}

/* Reads an array of 3 ints; null entries become 0.  Returns FALSE when absent. */
static gboolean
json_int3 (JsonObject *o, const char *name, int out[3])
{
  if (o == NULL || !json_object_has_member (o, name))
    return FALSE;
  JsonNode *n = json_object_get_member (o, name);
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return FALSE;
  JsonArray *a = json_node_get_array (n);
  if (json_array_get_length (a) != 3)
    return FALSE;
  for (guint i = 0; i < 3; i++) {
    JsonNode *e = json_array_get_element (a, i);
    out[i] = JSON_NODE_HOLDS_VALUE (e) ? (int) json_node_get_int (e) : 0;
  }
  return TRUE;
}

static KinStditVersion
json_version (JsonObject *o)
{
  const char *type = o && json_object_has_member (o, "model_type")
                     ? json_object_get_string_member_with_default (o, "model_type", NULL) : NULL;
  if (type != NULL) {
    g_autofree char *lower = g_ascii_strdown (type, -1);
    if (strstr (lower, "stdit2") != NULL)
      return KIN_STDIT_V2;
    if (strstr (lower, "stdit") != NULL)
      return KIN_STDIT_V1;
  }
  /* the golden sidecars carry no model_type: the v1.1-only and v1.0-only fields tell */
  if (o && (json_object_has_member (o, "input_sq_size") || json_object_has_member (o, "qk_norm")))
    return KIN_STDIT_V2;
  if (o && (json_object_has_member (o, "space_scale") || json_object_has_member (o, "time_scale")))
    return KIN_STDIT_V1;
  return KIN_STDIT_VERSION_UNKNOWN;
}

#define SET_IF_UNSET(field, value) do { if ((field) == 0) (field) = (value); } while (0)

static void
config_from_json (KinStditConfig *cfg, JsonObject *o, gboolean *qk_norm_known)
{
  int v = 0, p[3];
  double d;
  gboolean b;
  if (o == NULL)
    return;
  SET_IF_UNSET (cfg->version, json_version (o));
  if (json_int (o, "depth", &v)) SET_IF_UNSET (cfg->depth, v);
  if (json_int (o, "hidden_size", &v)) SET_IF_UNSET (cfg->hidden_size, v);
  if (json_int (o, "num_heads", &v)) SET_IF_UNSET (cfg->num_heads, v);
  if (json_int (o, "in_channels", &v)) SET_IF_UNSET (cfg->in_channels, v);
  if (json_int (o, "caption_channels", &v)) SET_IF_UNSET (cfg->caption_channels, v);
  if (json_int (o, "model_max_length", &v)) SET_IF_UNSET (cfg->model_max_length, v);
  if (json_int (o, "input_sq_size", &v)) SET_IF_UNSET (cfg->input_sq_size, v);
  if (json_int3 (o, "patch_size", p) && cfg->patch_size[0] == 0)
    memcpy (cfg->patch_size, p, sizeof p);
  if (json_int3 (o, "input_size", p) && cfg->input_size[0] == 0)
    memcpy (cfg->input_size, p, sizeof p);
  if (json_double (o, "space_scale", &d) && cfg->space_scale == 0) cfg->space_scale = d;
  if (json_double (o, "time_scale", &d) && cfg->time_scale == 0) cfg->time_scale = d;
  if (json_double (o, "mlp_ratio", &d) && cfg->mlp_hidden == 0 && cfg->hidden_size > 0)
    cfg->mlp_hidden = (int) (cfg->hidden_size * d);
  if (json_bool (o, "pred_sigma", &b) && cfg->out_channels == 0 && cfg->in_channels > 0)
    cfg->out_channels = b ? 2 * cfg->in_channels : cfg->in_channels;
  if (json_bool (o, "qk_norm", &b)) {
    cfg->qk_norm = b;
    *qk_norm_known = TRUE;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Shapes */

static const KinWeightEntry *
peek (KinWeights *ws, const char *name)
{
  return ws ? kin_weights_lookup (ws, name) : NULL;
}

/* Sets @field from a shape when unknown; an error when it is known and different. */
static gboolean
agree (int *field, int64_t value, const char *what, const KinWeightEntry *e, GError **error)
{
  if (*field == 0) {
    *field = (int) value;
    return TRUE;
  }
  if (*field == value)
    return TRUE;
  g_autofree char *shape = kin_shape_to_string (e->ndim, e->shape);
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
               "the config says %s = %d, but %s in %s has shape %s (%s = %" G_GINT64_FORMAT ")",
               what, *field, e->name, e->file ? e->file : "?", shape, what, value);
  return FALSE;
}

static const KinWeightEntry *
need_shape (KinWeights *ws, const char *name, int ndim, GError **error)
{
  const KinWeightEntry *e = peek (ws, name);
  if (e == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "%s: missing tensor %s (needed to read the model's size)",
                 kin_weights_source (ws), name);
    return NULL;
  }
  if (e->ndim != ndim) {
    g_autofree char *shape = kin_shape_to_string (e->ndim, e->shape);
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "%s in %s has shape %s, expected %d dimensions", name,
                 e->file ? e->file : kin_weights_source (ws), shape, ndim);
    return NULL;
  }
  return e;
}

/* The sin/cos channel pair of frequency 1 in a stored sin-cos table gives the coordinate of
 * row @row: atan2(sin, cos).  Used to recover space_scale / time_scale of v1.0 files. */
static double
stored_table_scale (const KinWeightEntry *e, int64_t row, int64_t sin_ch, int64_t cos_ch)
{
  g_autofree float *f = kin_weight_entry_to_f32 (e);
  int64_t dim = e->shape[e->ndim - 1];
  if (f == NULL)
    return 0;
  double coord = atan2 (f[row * dim + sin_ch], f[row * dim + cos_ch]);
  if (!(coord > 1e-3))
    return 0;
  double inv = coord;                       /* = row / scale with row = 1 */
  double snapped = round (inv * 6) / 6;     /* 1, 2, 1.5 (64x512: time_scale 2/3) … */
  if (fabs (snapped - inv) < 1e-4 && snapped > 0)
    inv = snapped;
  return 1.0 / inv;
}

static void
scales_from_buffers (KinStditConfig *cfg, KinWeights *ws)
{
  const KinWeightEntry *pe = peek (ws, "pos_embed");
  const KinWeightEntry *pt = peek (ws, "pos_embed_temporal");
  int64_t c = cfg->hidden_size;
  /* pos_embed row 1 is (h 0, w 1): channel 0 = sin(x_w·1), channel C/4 = cos(x_w·1) */
  if (cfg->space_scale == 0 && pe && pe->ndim == 3 && pe->shape[1] > 1 && pe->shape[2] == c)
    cfg->space_scale = stored_table_scale (pe, 1, 0, c / 4);
  /* pos_embed_temporal row 1: channel 0 = sin(1/ts), channel C/2 = cos(1/ts) */
  if (cfg->time_scale == 0 && pt && pt->ndim == 3 && pt->shape[1] > 1 && pt->shape[2] == c)
    cfg->time_scale = stored_table_scale (pt, 1, 0, c / 2);
}

static int
count_blocks (KinWeights *ws)
{
  int n = 0;
  for (;; n++) {
    g_autofree char *key = g_strdup_printf ("blocks.%d.scale_shift_table", n);
    if (!kin_weights_contains (ws, key))
      return n;
  }
}

static gboolean
config_from_weights (KinStditConfig *cfg, KinWeights *ws, gboolean *qk_norm_known, GError **error)
{
  const KinWeightEntry *e;
  if (!check_is_stdit (ws, error))
    return FALSE;
  KinStditVersion v = kin_weights_contains (ws, "t_block_temp.1.weight") ? KIN_STDIT_V2 : KIN_STDIT_V1;
  if (cfg->version != 0 && cfg->version != v) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "the config describes STDiT v1.%d, but %s holds an STDiT v1.%d model",
                 cfg->version - 1, kin_weights_source (ws), v - 1);
    return FALSE;
  }
  cfg->version = v;

  if (!(e = need_shape (ws, "x_embedder.proj.weight", 5, error)) ||
      !agree (&cfg->hidden_size, e->shape[0], "hidden_size", e, error) ||
      !agree (&cfg->in_channels, e->shape[1], "in_channels", e, error) ||
      !agree (&cfg->patch_size[0], e->shape[2], "patch_size[0]", e, error) ||
      !agree (&cfg->patch_size[1], e->shape[3], "patch_size[1]", e, error) ||
      !agree (&cfg->patch_size[2], e->shape[4], "patch_size[2]", e, error))
    return FALSE;
  int64_t patch = (int64_t) cfg->patch_size[0] * cfg->patch_size[1] * cfg->patch_size[2];
  if (!(e = need_shape (ws, "final_layer.linear.weight", 2, error)) ||
      !agree (&cfg->out_channels, e->shape[0] / MAX (patch, 1), "out_channels", e, error))
    return FALSE;
  if (!(e = need_shape (ws, "y_embedder.y_proj.fc1.weight", 2, error)) ||
      !agree (&cfg->caption_channels, e->shape[1], "caption_channels", e, error) ||
      !(e = need_shape (ws, "y_embedder.y_embedding", 2, error)) ||
      !agree (&cfg->model_max_length, e->shape[0], "model_max_length", e, error) ||
      !(e = need_shape (ws, "t_embedder.mlp.0.weight", 2, error)) ||
      !agree (&cfg->freq_dim, e->shape[1], "frequency_embedding_size", e, error) ||
      !(e = need_shape (ws, "blocks.0.mlp.fc1.weight", 2, error)) ||
      !agree (&cfg->mlp_hidden, e->shape[0], "mlp hidden size", e, error))
    return FALSE;

  int depth = count_blocks (ws);
  if (cfg->depth != 0 && cfg->depth != depth) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "the config says depth = %d, but %s has %d blocks", cfg->depth,
                 kin_weights_source (ws), depth);
    return FALSE;
  }
  cfg->depth = depth;

  if (v == KIN_STDIT_V2) {
    if (!(e = need_shape (ws, "csize_embedder.mlp.0.weight", 2, error)) ||
        !agree (&cfg->size_dim, e->shape[0], "size embedding width", e, error))
      return FALSE;
    gboolean has_qk = kin_weights_contains (ws, "blocks.0.attn.q_norm.weight");
    if (*qk_norm_known && cfg->qk_norm != has_qk) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                   "the config says qk_norm = %s, but %s %s q_norm weights",
                   cfg->qk_norm ? "true" : "false", kin_weights_source (ws),
                   has_qk ? "has" : "has no");
      return FALSE;
    }
    cfg->qk_norm = has_qk;
    *qk_norm_known = TRUE;
    /* the head dim is readable here: q_norm [hd], rope.freqs [hd/2] */
    e = has_qk ? peek (ws, "blocks.0.attn.q_norm.weight") : peek (ws, "rope.freqs");
    if (e && e->ndim == 1 && e->shape[0] > 0) {
      int64_t hd = has_qk ? e->shape[0] : 2 * e->shape[0];
      if (cfg->hidden_size % hd == 0 &&
          !agree (&cfg->num_heads, cfg->hidden_size / hd, "num_heads", e, error))
        return FALSE;
    }
  } else {
    scales_from_buffers (cfg, ws);
  }
  return TRUE;
}

static gboolean
config_finish (KinStditConfig *cfg, GError **error)
{
  if (cfg->version == 0)
    cfg->version = KIN_STDIT_V2;   /* only reachable without weights and without hints */
  if (cfg->patch_size[0] == 0) {
    cfg->patch_size[0] = 1;
    cfg->patch_size[1] = cfg->patch_size[2] = 2;
  }
  SET_IF_UNSET (cfg->in_channels, 4);
  SET_IF_UNSET (cfg->out_channels, 2 * cfg->in_channels);
  SET_IF_UNSET (cfg->freq_dim, 256);
  if (cfg->hidden_size <= 0 || cfg->depth <= 0 || cfg->caption_channels <= 0 ||
      cfg->model_max_length <= 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "STDiT config incomplete: hidden_size %d, depth %d, caption_channels %d, "
                 "model_max_length %d", cfg->hidden_size, cfg->depth, cfg->caption_channels,
                 cfg->model_max_length);
    return FALSE;
  }
  SET_IF_UNSET (cfg->mlp_hidden, 4 * cfg->hidden_size);
  if (cfg->num_heads == 0) {
    /* v1.0 files do not say; STDiT-XL/2 has 16 heads of 72 */
    if (cfg->hidden_size == 1152)
      cfg->num_heads = 16;
    else if (cfg->hidden_size % 72 == 0)
      cfg->num_heads = cfg->hidden_size / 72;
  }
  if (cfg->num_heads <= 0 || cfg->hidden_size % cfg->num_heads != 0 ||
      (cfg->hidden_size / cfg->num_heads) % 2 != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "STDiT: cannot use %d heads with hidden size %d (set num_heads: the head "
                 "count of a v1.0 checkpoint cannot be read from its shapes)",
                 cfg->num_heads, cfg->hidden_size);
    return FALSE;
  }
  if (cfg->space_scale == 0)
    cfg->space_scale = 1.0;
  if (cfg->time_scale == 0)
    cfg->time_scale = 1.0;
  if (cfg->version == KIN_STDIT_V2) {
    SET_IF_UNSET (cfg->input_sq_size, 512);     /* every published v1.1 config */
    SET_IF_UNSET (cfg->size_dim, cfg->hidden_size / 3);
    if (cfg->size_dim * 3 != cfg->hidden_size) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "STDiT2: hidden size %d is not 3 × the size-embedding width %d",
                   cfg->hidden_size, cfg->size_dim);
      return FALSE;
    }
  }
  if (cfg->patch_size[0] != 1 || cfg->patch_size[1] != cfg->patch_size[2] ||
      cfg->patch_size[1] <= 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "STDiT: patch size (%d, %d, %d) is not supported (this engine handles "
                 "(1, p, p), which every Open-Sora 1.0/1.1 model uses)",
                 cfg->patch_size[0], cfg->patch_size[1], cfg->patch_size[2]);
    return FALSE;
  }
  if (cfg->freq_dim % 2 != 0 || cfg->hidden_size % 4 != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "STDiT: hidden size %d / frequency size %d must be multiples of 4 / 2",
                 cfg->hidden_size, cfg->freq_dim);
    return FALSE;
  }
  return TRUE;
}

gboolean
kin_stdit_config_derive (KinStditConfig *cfg, JsonObject *json, KinWeights *ws, GError **error)
{
  gboolean qk_norm_known = FALSE;
  config_from_json (cfg, json, &qk_norm_known);
  if (ws != NULL && !config_from_weights (cfg, ws, &qk_norm_known, error))
    return FALSE;
  if (!qk_norm_known)
    cfg->qk_norm = cfg->version == KIN_STDIT_V2;
  return config_finish (cfg, error);
}

gboolean
kin_stdit_config_from_json (KinStditConfig *cfg, const char *path, KinWeights *ws, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, error))
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: not a model config (no JSON object)", path);
    return FALSE;
  }
  return kin_stdit_config_derive (cfg, json_node_get_object (root), ws, error);
}

gboolean
kin_stdit_config_from_weights (KinStditConfig *cfg, KinWeights *ws, GError **error)
{
  return kin_stdit_config_derive (cfg, NULL, ws, error);
}

/* ---------------------------------------------------------------------------------------------
 * Loading.  Errors are sticky in the loader: after the first, every call returns NULL. */

typedef struct {
  KinWeights *ws;
  KinBackend *be;
  GError *error;
} Loader;

static KinTensor *
ld_tensor (Loader *l, gboolean native, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
  G_GNUC_PRINTF (6, 7);

static KinTensor *
ld_tensor (Loader *l, gboolean native, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
{
  if (l->error != NULL)
    return NULL;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  int64_t shape[2] = { d0, d1 };
  /* linear weights in the backend's storage (BF16 on a GPU when stored F32), the rest F32 */
  return native ? kin_weights_get_linear (l->ws, l->be, name, ndim, shape, &l->error)
                : kin_weights_get_f32 (l->ws, l->be, name, ndim, shape, &l->error);
}

static void
ld_linear (Loader *l, KinStditLinear *lin, int in, int out, const char *prefix)
{
  lin->in = in;
  lin->out = out;
  lin->weight = ld_tensor (l, TRUE, 2, out, in, "%s.weight", prefix);
  lin->bias = ld_tensor (l, FALSE, 1, out, 0, "%s.bias", prefix);
}

static void
ld_mlp (Loader *l, KinStditMlp *mlp, int in, int out, const char *prefix)
{
  g_autofree char *p0 = g_strdup_printf ("%s.mlp.0", prefix);
  g_autofree char *p2 = g_strdup_printf ("%s.mlp.2", prefix);
  ld_linear (l, &mlp->l0, in, out, p0);
  ld_linear (l, &mlp->l2, out, out, p2);
}

static void
ld_self_attn (Loader *l, const KinStditConfig *cfg, KinStditSelfAttn *a, int i, const char *which)
{
  int c = cfg->hidden_size, hd = c / cfg->num_heads;
  g_autofree char *qkv = g_strdup_printf ("blocks.%d.%s.qkv", i, which);
  g_autofree char *proj = g_strdup_printf ("blocks.%d.%s.proj", i, which);
  ld_linear (l, &a->qkv, c, 3 * c, qkv);
  ld_linear (l, &a->proj, c, c, proj);
  if (cfg->qk_norm) {
    a->q_norm = ld_tensor (l, FALSE, 1, hd, 0, "blocks.%d.%s.q_norm.weight", i, which);
    a->k_norm = ld_tensor (l, FALSE, 1, hd, 0, "blocks.%d.%s.k_norm.weight", i, which);
  }
}

static void
ld_block (Loader *l, const KinStditConfig *cfg, KinStditBlock *b, int i)
{
  int c = cfg->hidden_size;
  g_autofree char *q = g_strdup_printf ("blocks.%d.cross_attn.q_linear", i);
  g_autofree char *kv = g_strdup_printf ("blocks.%d.cross_attn.kv_linear", i);
  g_autofree char *proj = g_strdup_printf ("blocks.%d.cross_attn.proj", i);
  g_autofree char *fc1 = g_strdup_printf ("blocks.%d.mlp.fc1", i);
  g_autofree char *fc2 = g_strdup_printf ("blocks.%d.mlp.fc2", i);
  b->scale_shift_table = ld_tensor (l, FALSE, 2, 6, c, "blocks.%d.scale_shift_table", i);
  if (cfg->version == KIN_STDIT_V2)
    b->scale_shift_table_temporal =
      ld_tensor (l, FALSE, 2, 3, c, "blocks.%d.scale_shift_table_temporal", i);
  ld_self_attn (l, cfg, &b->attn, i, "attn");
  ld_self_attn (l, cfg, &b->attn_temp, i, "attn_temp");
  ld_linear (l, &b->cross_q_linear, c, c, q);
  ld_linear (l, &b->cross_kv_linear, c, 2 * c, kv);
  ld_linear (l, &b->cross_proj, c, c, proj);
  ld_linear (l, &b->mlp_fc1, c, cfg->mlp_hidden, fc1);
  ld_linear (l, &b->mlp_fc2, cfg->mlp_hidden, c, fc2);
}

static void
ld_patch_embed (Loader *l, KinStdit *m)
{
  const KinStditConfig *cfg = &m->cfg;
  int64_t shape[5] = { cfg->hidden_size, cfg->in_channels, cfg->patch_size[0],
                       cfg->patch_size[1], cfg->patch_size[2] };
  if (l->error != NULL)
    return;
  m->x_embedder_weight = kin_weights_get_f32 (l->ws, l->be, "x_embedder.proj.weight", 5, shape,
                                              &l->error);
  if (m->x_embedder_weight != NULL) {
    /* Conv3d kernel [C, Cin, 1, ph, pw] is the Conv2d kernel [C, Cin, ph, pw] (same memory) */
    KinTensor *w = m->x_embedder_weight;
    w->ndim = 4;
    w->shape[2] = cfg->patch_size[1];
    w->shape[3] = cfg->patch_size[2];
  }
  m->x_embedder_bias = ld_tensor (l, FALSE, 1, cfg->hidden_size, 0, "x_embedder.proj.bias");
}

static void
ld_rope (Loader *l, KinStdit *m)
{
  int64_t half = m->head_dim / 2;
  const KinWeightEntry *e;
  if (l->error != NULL)
    return;
  e = kin_weights_require (l->ws, "rope.freqs", 1, &half, &l->error);
  if (e != NULL && (m->rope_freqs = kin_weight_entry_to_f32 (e)) == NULL)
    g_set_error (&l->error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "rope.freqs in %s has an unsupported dtype %s", e->file,
                 kin_dtype_name (e->dtype));
}

static void
ld_model (Loader *l, KinStdit *m)
{
  const KinStditConfig *cfg = &m->cfg;
  int c = cfg->hidden_size;
  int patch_out = cfg->patch_size[0] * cfg->patch_size[1] * cfg->patch_size[2] * cfg->out_channels;
  ld_patch_embed (l, m);
  ld_mlp (l, &m->t_embedder, cfg->freq_dim, c, "t_embedder");
  ld_linear (l, &m->t_block, c, 6 * c, "t_block.1");
  ld_linear (l, &m->y_fc1, cfg->caption_channels, c, "y_embedder.y_proj.fc1");
  ld_linear (l, &m->y_fc2, c, c, "y_embedder.y_proj.fc2");
  m->y_embedding = ld_tensor (l, FALSE, 2, cfg->model_max_length, cfg->caption_channels,
                              "y_embedder.y_embedding");
  if (cfg->version == KIN_STDIT_V2) {
    ld_linear (l, &m->t_block_temp, c, 3 * c, "t_block_temp.1");
    ld_mlp (l, &m->csize_embedder, cfg->freq_dim, cfg->size_dim, "csize_embedder");
    ld_mlp (l, &m->ar_embedder, cfg->freq_dim, cfg->size_dim, "ar_embedder");
    ld_mlp (l, &m->fl_embedder, cfg->freq_dim, c, "fl_embedder");
    ld_mlp (l, &m->fps_embedder, cfg->freq_dim, c, "fps_embedder");
    ld_rope (l, m);
  } else {
    /* fixed tables in v1.0 checkpoints: recomputed for the actual size, never read */
    (void) kin_weights_lookup (l->ws, "pos_embed");
    (void) kin_weights_lookup (l->ws, "pos_embed_temporal");
  }
  m->blocks = g_new0 (KinStditBlock, cfg->depth);
  for (int i = 0; i < cfg->depth && l->error == NULL; i++)
    ld_block (l, cfg, &m->blocks[i], i);
  m->final_scale_shift_table = ld_tensor (l, FALSE, 2, 2, c, "final_layer.scale_shift_table");
  ld_linear (l, &m->final_linear, c, patch_out, "final_layer.linear");
}

KinStdit *
kin_stdit_load (KinWeights *ws, const KinStditConfig *cfg, KinBackend *be, GError **error)
{
  g_return_val_if_fail (ws != NULL && cfg != NULL && be != NULL, NULL);
  if (!check_is_stdit (ws, error))
    return NULL;
  if (cfg->version == 0 || cfg->hidden_size <= 0 || cfg->num_heads <= 0 || cfg->depth <= 0 ||
      cfg->hidden_size % cfg->num_heads != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "kin_stdit_load: the config is incomplete (derive it first)");
    return NULL;
  }
  g_autoptr (KinStdit) m = g_new0 (KinStdit, 1);
  m->cfg = *cfg;
  m->be = be;
  m->head_dim = cfg->hidden_size / cfg->num_heads;
  Loader l = { ws, be, NULL };
  ld_model (&l, m);
  if (l.error != NULL) {
    g_propagate_error (error, l.error);
    return NULL;
  }
  kin_weights_warn_unused (ws, cfg->version == KIN_STDIT_V2 ? "STDiT2" : "STDiT");
  return g_steal_pointer (&m);
}

KinStdit *
kin_stdit_open (const char *path, KinBackend *be, GError **error)
{
  return kin_stdit_open_full (path, NULL, be, error);
}

KinStdit *
kin_stdit_open_full (const char *path, const KinStditConfig *preset, KinBackend *be,
                     GError **error)
{
  g_autoptr (KinWeights) ws = kin_weights_open (path, error);
  if (ws == NULL)
    return NULL;
  /* only a model folder's config.json describes the model; beside a lone file it may not */
  g_autofree char *json = g_file_test (path, G_FILE_TEST_IS_DIR)
                          ? g_build_filename (path, "config.json", NULL) : NULL;
  KinStditConfig cfg;
  if (preset != NULL)
    cfg = *preset;
  else
    kin_stdit_config_init (&cfg);
  gboolean ok = json != NULL && g_file_test (json, G_FILE_TEST_IS_REGULAR)
                ? kin_stdit_config_from_json (&cfg, json, ws, error)
                : kin_stdit_config_from_weights (&cfg, ws, error);
  if (!ok) {
    g_prefix_error (error, "%s: ", path);
    return NULL;
  }
  return kin_stdit_load (ws, &cfg, be, error);
}

/* ---------------------------------------------------------------------------------------------
 * Teardown and accessors */

static void
linear_clear (KinStditLinear *lin)
{
  g_clear_pointer (&lin->weight, kin_tensor_free);
  g_clear_pointer (&lin->bias, kin_tensor_free);
}

static void
mlp_clear (KinStditMlp *mlp)
{
  linear_clear (&mlp->l0);
  linear_clear (&mlp->l2);
}

static void
self_attn_clear (KinStditSelfAttn *a)
{
  linear_clear (&a->qkv);
  linear_clear (&a->proj);
  g_clear_pointer (&a->q_norm, kin_tensor_free);
  g_clear_pointer (&a->k_norm, kin_tensor_free);
}

static void
block_clear (KinStditBlock *b)
{
  g_clear_pointer (&b->scale_shift_table, kin_tensor_free);
  g_clear_pointer (&b->scale_shift_table_temporal, kin_tensor_free);
  self_attn_clear (&b->attn);
  self_attn_clear (&b->attn_temp);
  linear_clear (&b->cross_q_linear);
  linear_clear (&b->cross_kv_linear);
  linear_clear (&b->cross_proj);
  linear_clear (&b->mlp_fc1);
  linear_clear (&b->mlp_fc2);
}

void
kin_stdit_free (KinStdit *m)
{
  if (m == NULL)
    return;
  kin_stdit_graphs_clear (m);
  g_clear_pointer (&m->work, kin_stdit_work_free);
  g_clear_pointer (&m->x_embedder_weight, kin_tensor_free);
  g_clear_pointer (&m->x_embedder_bias, kin_tensor_free);
  mlp_clear (&m->t_embedder);
  linear_clear (&m->t_block);
  linear_clear (&m->t_block_temp);
  linear_clear (&m->y_fc1);
  linear_clear (&m->y_fc2);
  g_clear_pointer (&m->y_embedding, kin_tensor_free);
  g_clear_pointer (&m->rope_freqs, g_free);
  mlp_clear (&m->csize_embedder);
  mlp_clear (&m->ar_embedder);
  mlp_clear (&m->fl_embedder);
  mlp_clear (&m->fps_embedder);
  if (m->blocks != NULL)
    for (int i = 0; i < m->cfg.depth; i++)
      block_clear (&m->blocks[i]);
  g_free (m->blocks);
  g_clear_pointer (&m->final_scale_shift_table, kin_tensor_free);
  linear_clear (&m->final_linear);
  g_free (m);
}

const KinStditConfig *
kin_stdit_get_config (KinStdit *m)
{
  return &m->cfg;
}

const KinTensor *
kin_stdit_get_null_caption (KinStdit *m)
{
  return m->y_embedding;
}
