/* kin-t5.c — the T5 v1.1 encoder (see kin-t5.h and spec/t5-vae-formats.md §1).
 *
 * Memory choice for T5-XXL on the CPU (24 GB machines, 19 GB of f32 weights in the DeepFloyd
 * files): nothing is converted or copied at load.  Block matrices are tensors that point into the
 * memory-mapped checkpoint (views, in the file's dtype; the backend's linear widens F16/BF16 on
 * the fly), and the 32128×4096 embedding table is read row by row on the host.  With the model's
 * own mapped files and more than 4 GiB of block matrices the encoder streams: each block's views
 * are made before it runs and dropped after it, and their pages are handed back to the kernel, so
 * the anonymous memory of an encode is the activations (a few MB) and the mapped part stays near
 * one block.  A bf16 checkpoint (9.5 GB) can equally stay resident. */
#include "kin-t5.h"
#include "kin-error.h"
#include <float.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define T5_STREAM_AUTO_BYTES ((guint64) 4 << 30)
#define T5_MAX_DIM (1 << 20)

/* The tensors of encoder.block.N, named after their keys. */
typedef struct {
  KinTensor *q, *k, *v;   /* layer.0.SelfAttention.{q,k,v}.weight  [inner, d_model] */
  KinTensor *o;           /* layer.0.SelfAttention.o.weight        [d_model, inner] */
  KinTensor *wi_0, *wi_1; /* layer.1.DenseReluDense.wi_{0,1}.weight [d_ff, d_model] */
  KinTensor *wo;          /* layer.1.DenseReluDense.wo.weight      [d_model, d_ff] */
  KinTensor *ln0;         /* layer.0.layer_norm.weight [d_model], F32, always resident */
  KinTensor *ln1;         /* layer.1.layer_norm.weight [d_model], F32, always resident */
  gboolean loaded;        /* the seven matrices are present */
} KinT5Block;

struct _KinT5 {
  KinT5Config cfg;
  KinBackend *be;
  KinWeights *ws;
  gboolean owns_ws;             /* kin_t5_load: the set (and its mappings) is ours */
  KinT5WeightMode mode;         /* resolved: RESIDENT or STREAM */
  const KinWeightEntry *embed;  /* shared.weight (or encoder.embed_tokens.weight) [vocab, d_model] */
  float *relbias;               /* block 0 relative_attention_bias, host [num_buckets, heads] */
  KinTensor *final_ln;          /* encoder.final_layer_norm.weight [d_model] */
  KinT5Block *blocks;           /* [num_layers] */
  KinT5BlockHook hook;
  gpointer hook_data;
};

enum { DIM_MODEL, DIM_INNER, DIM_FF };

static const struct {
  const char *key;
  size_t field;
  int rows, cols;
} mat_specs[] = {
  { "layer.0.SelfAttention.q.weight", G_STRUCT_OFFSET (KinT5Block, q), DIM_INNER, DIM_MODEL },
  { "layer.0.SelfAttention.k.weight", G_STRUCT_OFFSET (KinT5Block, k), DIM_INNER, DIM_MODEL },
  { "layer.0.SelfAttention.v.weight", G_STRUCT_OFFSET (KinT5Block, v), DIM_INNER, DIM_MODEL },
  { "layer.0.SelfAttention.o.weight", G_STRUCT_OFFSET (KinT5Block, o), DIM_MODEL, DIM_INNER },
  { "layer.1.DenseReluDense.wi_0.weight", G_STRUCT_OFFSET (KinT5Block, wi_0), DIM_FF, DIM_MODEL },
  { "layer.1.DenseReluDense.wi_1.weight", G_STRUCT_OFFSET (KinT5Block, wi_1), DIM_FF, DIM_MODEL },
  { "layer.1.DenseReluDense.wo.weight", G_STRUCT_OFFSET (KinT5Block, wo), DIM_MODEL, DIM_FF },
};

#define BLOCK_MAT(blk, i) (*(KinTensor **) ((char *) (blk) + mat_specs[i].field))

/* --- configuration --- */

void
kin_t5_config_init_xxl (KinT5Config *cfg)
{
  *cfg = (KinT5Config) {
    .vocab_size = 32128, .d_model = 4096, .d_kv = 64, .d_ff = 10240, .num_heads = 64,
    .num_layers = 24, .relative_attention_num_buckets = 32,
    .relative_attention_max_distance = 128, .layer_norm_epsilon = 1e-6f,
  };
}

static gboolean
json_int (JsonObject *obj, const char *name, int def, int *out, const char *what, GError **error)
{
  JsonNode *n = json_object_get_member (obj, name);
  if (n == NULL || JSON_NODE_HOLDS_NULL (n)) {
    *out = def;
    return TRUE;
  }
  GType t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_INVALID;
  double v = t == G_TYPE_INT64 ? (double) json_node_get_int (n)
           : t == G_TYPE_DOUBLE ? json_node_get_double (n) : NAN;
  if (!(v >= 0 && v <= T5_MAX_DIM) || v != floor (v)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: \"%s\" must be an integer between 0 and %d", what, name, T5_MAX_DIM);
    return FALSE;
  }
  *out = (int) v;
  return TRUE;
}

static gboolean
t5_config_check (const KinT5Config *c, const char *what, GError **error)
{
  const char *bad = c->d_model < 1 ? "d_model" : c->d_kv < 1 ? "d_kv" : c->d_ff < 1 ? "d_ff"
                  : c->num_heads < 1 ? "num_heads" : c->num_layers < 1 ? "num_layers"
                  : (gint64) c->num_heads * c->d_kv > T5_MAX_DIM ? "num_heads·d_kv"
                  : c->relative_attention_num_buckets < 4 ? "relative_attention_num_buckets"
                  : c->relative_attention_max_distance <= c->relative_attention_num_buckets / 4
                      ? "relative_attention_max_distance"
                  : !(c->layer_norm_epsilon >= 0 && c->layer_norm_epsilon < 1) ? "layer_norm_epsilon"
                  : NULL;
  if (bad != NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "%s: impossible T5 configuration (%s)", what, bad);
    return FALSE;
  }
  return TRUE;
}

gboolean
kin_t5_config_from_json (JsonObject *obj, const char *what, KinT5Config *cfg, GError **error)
{
  /* Defaults are transformers' T5Config defaults. */
  KinT5Config c = { 0 };
  if (!json_int (obj, "vocab_size", 32128, &c.vocab_size, what, error) ||
      !json_int (obj, "d_model", 512, &c.d_model, what, error) ||
      !json_int (obj, "d_kv", 64, &c.d_kv, what, error) ||
      !json_int (obj, "d_ff", 2048, &c.d_ff, what, error) ||
      !json_int (obj, "num_heads", 8, &c.num_heads, what, error) ||
      !json_int (obj, "num_layers", 6, &c.num_layers, what, error) ||
      !json_int (obj, "relative_attention_num_buckets", 32, &c.relative_attention_num_buckets, what, error) ||
      !json_int (obj, "relative_attention_max_distance", 128, &c.relative_attention_max_distance, what, error))
    return FALSE;
  JsonNode *eps = json_object_get_member (obj, "layer_norm_epsilon");
  c.layer_norm_epsilon = eps && JSON_NODE_HOLDS_VALUE (eps) ? (float) json_node_get_double (eps) : 1e-6f;
  const char *ff = json_object_get_string_member_with_default (obj, "feed_forward_proj", "relu");
  /* transformers: "gated-gelu" means gelu_new (the tanh form), gated by wi_1. */
  if (g_strcmp0 (ff, "gated-gelu") != 0 && g_strcmp0 (ff, "gated-gelu_new") != 0 &&
      g_strcmp0 (ff, "gated-gelu_pytorch_tanh") != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "%s: feed_forward_proj \"%s\" is not supported (T5 v1.1 \"gated-gelu\" only)",
                 what, ff);
    return FALSE;
  }
  if (!t5_config_check (&c, what, error))
    return FALSE;
  *cfg = c;
  return TRUE;
}

gboolean
kin_t5_config_load (const char *path, KinT5Config *cfg, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_file (parser, path, &local)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "cannot read the T5 config: %s", local->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: not a T5 config (no JSON object)", path);
    return FALSE;
  }
  return kin_t5_config_from_json (json_node_get_object (root), path, cfg, error);
}

/* --- relative position buckets --- */

int
kin_t5_relative_bucket (int rel, int num_buckets, int max_distance)
{
  /* HF _relative_position_bucket, bidirectional: half the buckets for keys to the right. */
  int nb = num_buckets / 2;
  int bucket = rel > 0 ? nb : 0;
  int a = rel < 0 ? -rel : rel;
  int max_exact = nb / 2;
  if (a < max_exact)
    return bucket + a;
  /* HF evaluates this in float32 and truncates; f32 logs are taken correctly rounded here (from
   * double) so that the exact boundaries 16, 32, 64 land as in spec §1.3. */
  float num = (float) log ((double) ((float) a / (float) max_exact));
  float den = (float) log ((double) max_distance / max_exact);
  float q = num / den * (float) (nb - max_exact);
  int large = max_exact + (int) MIN (q, (float) nb);
  return bucket + MIN (large, nb - 1);
}

void
kin_t5_relative_buckets (int len, int num_buckets, int max_distance, int32_t *buckets)
{
  for (int i = 0; i < len; i++)
    for (int j = 0; j < len; j++)
      buckets[(size_t) i * len + j] = kin_t5_relative_bucket (j - i, num_buckets, max_distance);
}

void
kin_t5_position_bias (KinT5 *m, int len, float *out)
{
  int H = m->cfg.num_heads;
  /* One bucket per distance j − i ∈ [−(len−1), len−1]. */
  g_autofree int32_t *bk = g_new (int32_t, 2 * (size_t) len - 1);
  for (int r = -(len - 1); r <= len - 1; r++)
    bk[r + len - 1] = kin_t5_relative_bucket (r, m->cfg.relative_attention_num_buckets,
                                              m->cfg.relative_attention_max_distance);
  for (int h = 0; h < H; h++)
    for (int i = 0; i < len; i++) {
      float *row = out + ((size_t) h * len + i) * len;
      for (int j = 0; j < len; j++)
        row[j] = m->relbias[(size_t) bk[j - i + len - 1] * H + h];
    }
}

double
kin_t5_encode_flops (const KinT5Config *c, int batch, int len)
{
  double rows = (double) batch * len, d = c->d_model, inner = (double) c->num_heads * c->d_kv;
  double proj = 2.0 * rows * (4.0 * d * inner + 3.0 * d * c->d_ff);
  double attn = 4.0 * batch * (double) c->num_heads * len * len * c->d_kv;
  return (proj + attn) * c->num_layers;
}

/* --- weights --- */

static gboolean
t5_is_cpu (KinBackend *be)
{
  return g_strcmp0 (be->name, "cpu") == 0;
}

static int64_t
t5_dim (const KinT5Config *c, int which)
{
  return which == DIM_MODEL ? c->d_model : which == DIM_INNER ? (int64_t) c->num_heads * c->d_kv
                                                               : c->d_ff;
}

static char *
block_key (int l, const char *suffix)
{
  return g_strdup_printf ("encoder.block.%d.%s", l, suffix);
}

/* A tensor for a block matrix: on the CPU a view of the mapped entry when its dtype is one that
 * linear takes and its data is aligned for it, otherwise a copy on the backend (converted to F32
 * when the dtype is not F32/F16/BF16). */
static KinTensor *
t5_matrix (KinT5 *m, const char *name, int64_t rows, int64_t cols, GError **error)
{
  int64_t shape[2] = { rows, cols };
  const KinWeightEntry *e = kin_weights_require (m->ws, name, 2, shape, error);
  if (e == NULL)
    return NULL;
  gboolean linear_dtype = e->dtype == KIN_DTYPE_F32 || e->dtype == KIN_DTYPE_F16 ||
                          e->dtype == KIN_DTYPE_BF16;
  if (t5_is_cpu (m->be) && linear_dtype && (uintptr_t) e->data % kin_dtype_size (e->dtype) == 0) {
    KinTensor whole = { .dtype = e->dtype, .ndim = 2, .data = (void *) e->data, .backend = m->be };
    memcpy (whole.shape, shape, sizeof shape);
    return kin_tensor_view (&whole, 0, 2, shape);
  }
  return kin_weights_get_linear (m->ws, m->be, name, 2, shape, error);
}

/* Gives the pages of a mapped block back to the kernel (non-destructive: they are read again from
 * the file when touched).  Only used on files the model mapped itself. */
static void
t5_release_pages (const KinWeightEntry *e)
{
#ifdef MADV_PAGEOUT
  long page = sysconf (_SC_PAGESIZE);
  if (page <= 0 || e->nbytes == 0)
    return;
  uintptr_t start = (uintptr_t) e->data & ~(uintptr_t) (page - 1);
  uintptr_t end = (uintptr_t) e->data + e->nbytes;
  (void) madvise ((void *) start, end - start, MADV_PAGEOUT);
#else
  (void) e;
#endif
}

/* Asks the kernel to start reading block @l's matrices from the files while block l−1 runs. */
static void
t5_block_prefetch (KinT5 *m, int l)
{
#ifdef MADV_WILLNEED
  long page = sysconf (_SC_PAGESIZE);
  for (guint i = 0; page > 0 && i < G_N_ELEMENTS (mat_specs); i++) {
    g_autofree char *name = block_key (l, mat_specs[i].key);
    const KinWeightEntry *e = kin_weights_lookup (m->ws, name);
    if (e == NULL || e->nbytes == 0)
      continue;
    uintptr_t start = (uintptr_t) e->data & ~(uintptr_t) (page - 1);
    (void) madvise ((void *) start, (uintptr_t) e->data + e->nbytes - start, MADV_WILLNEED);
  }
#endif
}

static gboolean
t5_streams_files (KinT5 *m)
{
  return m->owns_ws && m->mode == KIN_T5_WEIGHTS_STREAM && t5_is_cpu (m->be);
}

static void
t5_block_unload (KinT5 *m, int l)
{
  KinT5Block *blk = &m->blocks[l];
  if (!blk->loaded)
    return;
  gboolean release = t5_streams_files (m);
  for (guint i = 0; i < G_N_ELEMENTS (mat_specs); i++) {
    KinTensor **t = &BLOCK_MAT (blk, i);
    if (release && *t && !(*t)->owns_data) {
      g_autofree char *name = block_key (l, mat_specs[i].key);
      const KinWeightEntry *e = kin_weights_lookup (m->ws, name);
      if (e)
        t5_release_pages (e);
    }
    g_clear_pointer (t, kin_tensor_free);
  }
  blk->loaded = FALSE;
}

static gboolean
t5_block_load (KinT5 *m, int l, GError **error)
{
  KinT5Block *blk = &m->blocks[l];
  if (blk->loaded)
    return TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (mat_specs); i++) {
    g_autofree char *name = block_key (l, mat_specs[i].key);
    BLOCK_MAT (blk, i) = t5_matrix (m, name, t5_dim (&m->cfg, mat_specs[i].rows),
                                    t5_dim (&m->cfg, mat_specs[i].cols), error);
    if (BLOCK_MAT (blk, i) == NULL) {
      blk->loaded = TRUE;
      t5_block_unload (m, l);
      return FALSE;
    }
  }
  blk->loaded = TRUE;
  return TRUE;
}

/* Checks names and shapes of every block matrix (metadata only) and loads the norms. */
static gboolean
t5_check_blocks (KinT5 *m, GError **error)
{
  int64_t d = m->cfg.d_model;
  for (int l = 0; l < m->cfg.num_layers; l++) {
    KinT5Block *blk = &m->blocks[l];
    for (guint i = 0; i < G_N_ELEMENTS (mat_specs); i++) {
      g_autofree char *name = block_key (l, mat_specs[i].key);
      int64_t shape[2] = { t5_dim (&m->cfg, mat_specs[i].rows), t5_dim (&m->cfg, mat_specs[i].cols) };
      if (kin_weights_require (m->ws, name, 2, shape, error) == NULL)
        return FALSE;
    }
    g_autofree char *n0 = block_key (l, "layer.0.layer_norm.weight");
    g_autofree char *n1 = block_key (l, "layer.1.layer_norm.weight");
    blk->ln0 = kin_weights_get_f32 (m->ws, m->be, n0, 1, &d, error);
    if (blk->ln0 == NULL)
      return FALSE;
    blk->ln1 = kin_weights_get_f32 (m->ws, m->be, n1, 1, &d, error);
    if (blk->ln1 == NULL)
      return FALSE;
  }
  return TRUE;
}

static gboolean
t5_load_embedding (KinT5 *m, GError **error)
{
  static const char *const names[] = { "shared.weight", "encoder.embed_tokens.weight" };
  int64_t shape[2] = { m->cfg.vocab_size > 0 ? m->cfg.vocab_size : -1, m->cfg.d_model };
  /* Both names are the same tied matrix; files may carry either or both. */
  const char *name = kin_weights_contains (m->ws, names[0]) ? names[0] : names[1];
  if (!kin_weights_contains (m->ws, name)) {
    g_autofree char *want = kin_shape_to_string (2, shape);
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "missing tensor shared.weight (or its alias encoder.embed_tokens.weight), "
                 "expected %s, in %s", want, kin_weights_source (m->ws));
    return FALSE;
  }
  m->embed = kin_weights_require (m->ws, name, 2, shape, error);
  if (m->embed == NULL)
    return FALSE;
  if (name == names[0] && kin_weights_contains (m->ws, names[1]) &&
      kin_weights_require (m->ws, names[1], 2, m->embed->shape, error) == NULL)
    return FALSE;
  KinDType t = m->embed->dtype;
  if (t != KIN_DTYPE_F32 && t != KIN_DTYPE_F16 && t != KIN_DTYPE_BF16 && t != KIN_DTYPE_F64) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "tensor %s in %s is %s, expected a float dtype", name, m->embed->file,
                 kin_dtype_name (t));
    return FALSE;
  }
  m->cfg.vocab_size = (int) m->embed->shape[0];
  return TRUE;
}

static gboolean
t5_load_small (KinT5 *m, GError **error)
{
  static const char *rb = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
  int64_t rshape[2] = { m->cfg.relative_attention_num_buckets, m->cfg.num_heads };
  const KinWeightEntry *e = kin_weights_require (m->ws, rb, 2, rshape, error);
  if (e == NULL)
    return FALSE;
  m->relbias = kin_weight_entry_to_f32 (e);
  if (m->relbias == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "tensor %s in %s has an unsupported dtype %s", rb, e->file, kin_dtype_name (e->dtype));
    return FALSE;
  }
  int64_t d = m->cfg.d_model;
  m->final_ln = kin_weights_get_f32 (m->ws, m->be, "encoder.final_layer_norm.weight", 1, &d, error);
  return m->final_ln != NULL;
}

static guint64
t5_block_bytes (KinT5 *m)
{
  guint64 total = 0;
  for (int l = 0; l < m->cfg.num_layers; l++)
    for (guint i = 0; i < G_N_ELEMENTS (mat_specs); i++) {
      g_autofree char *name = block_key (l, mat_specs[i].key);
      const KinWeightEntry *e = kin_weights_lookup (m->ws, name);
      total += e ? e->nbytes : 0;
    }
  return total;
}

gboolean
kin_t5_set_weight_mode (KinT5 *m, KinT5WeightMode mode, GError **error)
{
  if (mode == KIN_T5_WEIGHTS_AUTO)
    mode = t5_is_cpu (m->be) && m->owns_ws && t5_block_bytes (m) > T5_STREAM_AUTO_BYTES
             ? KIN_T5_WEIGHTS_STREAM : KIN_T5_WEIGHTS_RESIDENT;
  for (int l = 0; l < m->cfg.num_layers; l++)
    t5_block_unload (m, l);
  m->mode = mode;
  if (mode == KIN_T5_WEIGHTS_RESIDENT)
    for (int l = 0; l < m->cfg.num_layers; l++)
      if (!t5_block_load (m, l, error))
        return FALSE;
  return TRUE;
}

KinT5WeightMode
kin_t5_get_weight_mode (KinT5 *m)
{
  return m->mode;
}

static KinT5 *
t5_new (KinWeights *ws, gboolean owns_ws, const KinT5Config *cfg, KinBackend *be, GError **error)
{
  if (!t5_config_check (cfg, kin_weights_source (ws), error)) {
    if (owns_ws)
      kin_weights_free (ws);
    return NULL;
  }
  g_autoptr (KinT5) m = g_new0 (KinT5, 1);
  m->cfg = *cfg;
  m->be = be;
  m->ws = ws;
  m->owns_ws = owns_ws;
  m->mode = KIN_T5_WEIGHTS_STREAM;   /* nothing loaded yet */
  m->blocks = g_new0 (KinT5Block, cfg->num_layers);
  if (!t5_load_embedding (m, error) || !t5_load_small (m, error) || !t5_check_blocks (m, error) ||
      !kin_t5_set_weight_mode (m, KIN_T5_WEIGHTS_AUTO, error))
    return NULL;
  return g_steal_pointer (&m);
}

KinT5 *
kin_t5_load_weights (KinWeights *ws, const KinT5Config *cfg, KinBackend *be, GError **error)
{
  return t5_new (ws, FALSE, cfg, be, error);
}

static void
t5_warn_unused (KinWeights *ws)
{
  g_auto (GStrv) unused = kin_weights_unused (ws);
  g_autoptr (GPtrArray) odd = g_ptr_array_new ();
  for (guint i = 0; unused[i]; i++)
    if (!g_str_has_prefix (unused[i], "decoder.") && strcmp (unused[i], "lm_head.weight") != 0)
      g_ptr_array_add (odd, unused[i]);
  if (odd->len == 0)
    return;
  g_ptr_array_add (odd, NULL);
  g_autofree char *list = g_strjoinv (", ", (char **) odd->pdata);
  g_warning ("T5: %u unexpected tensor%s in %s ignored: %s", odd->len - 1,
             odd->len == 2 ? "" : "s", kin_weights_source (ws), list);
}

KinT5 *
kin_t5_load (const char *folder_or_file, KinBackend *be, GError **error)
{
  gboolean is_dir = g_file_test (folder_or_file, G_FILE_TEST_IS_DIR);
  if (!is_dir && !g_file_test (folder_or_file, G_FILE_TEST_EXISTS)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "%s does not exist", folder_or_file);
    return NULL;
  }
  g_autofree char *dir = is_dir ? g_strdup (folder_or_file) : g_path_get_dirname (folder_or_file);
  g_autofree char *config_path = g_build_filename (dir, "config.json", NULL);
  if (!g_file_test (config_path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s has no config.json: a T5 model folder needs it beside the weights "
                 "(d_model, num_heads, d_kv, d_ff, num_layers, bucket settings)", dir);
    return NULL;
  }
  KinT5Config cfg;
  if (!kin_t5_config_load (config_path, &cfg, error))
    return NULL;
  KinWeights *ws = kin_weights_open (folder_or_file, error);
  if (ws == NULL)
    return NULL;
  KinT5 *m = t5_new (ws, TRUE, &cfg, be, error);
  if (m != NULL)
    t5_warn_unused (ws);
  return m;
}

void
kin_t5_free (KinT5 *m)
{
  if (m == NULL)
    return;
  for (int l = 0; m->blocks && l < m->cfg.num_layers; l++) {
    t5_block_unload (m, l);
    g_clear_pointer (&m->blocks[l].ln0, kin_tensor_free);
    g_clear_pointer (&m->blocks[l].ln1, kin_tensor_free);
  }
  g_free (m->blocks);
  g_free (m->relbias);
  g_clear_pointer (&m->final_ln, kin_tensor_free);
  if (m->owns_ws)
    kin_weights_free (m->ws);
  g_free (m);
}

const KinT5Config *
kin_t5_get_config (KinT5 *m)
{
  return &m->cfg;
}

void
kin_t5_set_block_hook (KinT5 *m, KinT5BlockHook hook, gpointer user_data)
{
  m->hook = hook;
  m->hook_data = user_data;
}

/* --- the forward pass --- */

/* Activations of one encode, all on the backend. */
typedef struct {
  int batch, len;
  int64_t rows;          /* batch·len */
  KinTensor *x;          /* residual stream [rows, d_model] */
  KinTensor *n;          /* normed x [rows, d_model] */
  KinTensor *q, *k, *v;  /* [rows, inner] */
  KinTensor *att;        /* attention output [rows, inner] */
  KinTensor *h;          /* projection output [rows, d_model] */
  KinTensor *g0, *g1;    /* FF hidden [rows, d_ff] */
  KinTensor *bias;       /* position bias [heads, len, len] or, per sample, [batch, heads, len, len] */
  gboolean per_sample;   /* bias carries the mask; attention runs sample by sample */
  int32_t *kv_lens;      /* [batch] when !per_sample */
} T5Work;

static void
t5_work_clear (T5Work *w)
{
  KinTensor **all[] = { &w->x, &w->n, &w->q, &w->k, &w->v, &w->att, &w->h, &w->g0, &w->g1, &w->bias };
  for (guint i = 0; i < G_N_ELEMENTS (all); i++)
    g_clear_pointer (all[i], kin_tensor_free);
  g_clear_pointer (&w->kv_lens, g_free);
}

static gboolean
t5_check_input (KinT5 *m, const int64_t *ids, const int64_t *mask, int batch, int len,
                GError **error)
{
  if (batch < 1 || len < 1 || ids == NULL || (gint64) batch * len > G_MAXINT32) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "T5 encode: impossible input of %d × %d tokens", batch, len);
    return FALSE;
  }
  for (int64_t i = 0; i < (int64_t) batch * len; i++) {
    if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "T5 encode: token id %" G_GINT64_FORMAT " at [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                   "] is outside the vocabulary [0, %d)", ids[i], i / len, i % len, m->cfg.vocab_size);
      return FALSE;
    }
    if (mask && mask[i] != 0 && mask[i] != 1) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "T5 encode: attention mask value %" G_GINT64_FORMAT " at [%" G_GINT64_FORMAT ", %"
                   G_GINT64_FORMAT "] is not 0 or 1", mask[i], i / len, i % len);
      return FALSE;
    }
  }
  return TRUE;
}

/* x = shared[ids], gathered on the host from the (mapped) table: [rows, d_model]. */
static gboolean
t5_embed (KinT5 *m, const int64_t *ids, T5Work *w, GError **error)
{
  int64_t d = m->cfg.d_model;
  size_t esz = kin_dtype_size (m->embed->dtype);
  float *host = g_try_new (float, w->rows * d);
  if (host == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "T5 encode: no memory for %" G_GINT64_FORMAT " embeddings", w->rows);
    return FALSE;
  }
  for (int64_t r = 0; r < w->rows; r++)
    kin_convert_to_f32 (host + r * d, (const char *) m->embed->data + (size_t) ids[r] * d * esz,
                        m->embed->dtype, d);
  int64_t shape[2] = { w->rows, d };
  w->x = kin_tensor_from_host_f32 (m->be, host, 2, shape, error);
  g_free (host);
  return w->x != NULL;
}

/* The score bias and key lengths.  A mask that is a non-empty prefix of ones in every row becomes
 * kv_lens (keys past it get no weight, exactly as HF's −3.4e38); any other mask is folded into a
 * per-sample bias with HF's finfo(f32).min, which also reproduces HF on an all-zero row. */
static gboolean
t5_bias (KinT5 *m, const int64_t *mask, T5Work *w, GError **error)
{
  int B = w->batch, L = w->len, H = m->cfg.num_heads;
  size_t per = (size_t) H * L * L;
  w->kv_lens = g_new (int32_t, B);
  for (int b = 0; b < B; b++) {
    const int64_t *mr = mask ? mask + (size_t) b * L : NULL;
    int n = 0;
    while (n < L && (mr == NULL || mr[n] == 1))
      n++;
    for (int j = n; j < L; j++)
      if (mr[j] != 0)
        w->per_sample = TRUE;
    if (n == 0)
      w->per_sample = TRUE;
    w->kv_lens[b] = n;
  }
  int nb = w->per_sample ? B : 1;
  float *host = g_try_new (float, per * nb);
  if (host == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "T5 encode: no memory for the position bias of %d tokens", L);
    return FALSE;
  }
  kin_t5_position_bias (m, L, host);   /* [H, L, L] */
  for (int b = 1; b < nb; b++)
    memcpy (host + per * b, host, per * sizeof (float));
  for (int b = 0; w->per_sample && b < B; b++)
    for (int j = 0; j < L; j++)
      if (mask[(size_t) b * L + j] == 0)
        for (size_t hi = 0; hi < (size_t) H * L; hi++)
          host[per * b + hi * L + j] = -FLT_MAX;
  int64_t shape[4] = { nb, H, L, L };
  w->bias = kin_tensor_from_host_f32 (m->be, host, 4, shape, error);
  g_free (host);
  return w->bias != NULL;
}

static gboolean
t5_work_init (KinT5 *m, const int64_t *ids, const int64_t *mask, int batch, int len, T5Work *w,
              GError **error)
{
  const KinT5Config *c = &m->cfg;
  w->batch = batch;
  w->len = len;
  w->rows = (int64_t) batch * len;
  int64_t d[2] = { w->rows, c->d_model };
  int64_t in[2] = { w->rows, (int64_t) c->num_heads * c->d_kv };
  int64_t ff[2] = { w->rows, c->d_ff };
  if (!t5_embed (m, ids, w, error) || !t5_bias (m, mask, w, error))
    return FALSE;
  return (w->n = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, d, error)) &&
         (w->h = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, d, error)) &&
         (w->q = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, in, error)) &&
         (w->k = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, in, error)) &&
         (w->v = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, in, error)) &&
         (w->att = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, in, error)) &&
         (w->g0 = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, ff, error)) &&
         (w->g1 = kin_tensor_new (m->be, KIN_DTYPE_F32, 2, ff, error));
}

/* att = softmax(q·kᵀ + bias) · v per head, scale 1.0 (T5 folds 1/sqrt(d_kv) into q). */
static void
t5_attention (KinT5 *m, T5Work *w)
{
  int64_t inner = (int64_t) m->cfg.num_heads * m->cfg.d_kv;
  KinAttention a = {
    .batch = w->batch, .heads = m->cfg.num_heads, .lq = w->len, .lk = w->len,
    .head_dim = m->cfg.d_kv, .q_stride = inner, .kv_stride = inner, .out_stride = inner,
    .scale = 1.0f, .kv_lens = w->kv_lens, .bias = w->bias,
  };
  if (!w->per_sample) {
    m->be->attention (m->be, w->att, w->q, w->k, w->v, &a);
    return;
  }
  size_t per = (size_t) m->cfg.num_heads * w->len * w->len;
  int64_t bshape[3] = { m->cfg.num_heads, w->len, w->len };
  a.batch = 1;
  a.kv_lens = NULL;
  for (int b = 0; b < w->batch; b++) {
    g_autoptr (KinTensor) bias = kin_tensor_view (w->bias, per * b, 3, bshape);
    a.q_offset = a.k_offset = a.v_offset = a.out_offset = (int64_t) b * w->len * inner;
    a.bias = bias;
    m->be->attention (m->be, w->att, w->q, w->k, w->v, &a);
  }
}

static void
t5_block_forward (KinT5 *m, const KinT5Block *blk, T5Work *w)
{
  KinBackend *be = m->be;
  int64_t rows = w->rows, d = m->cfg.d_model, ff = m->cfg.d_ff;
  int64_t inner = (int64_t) m->cfg.num_heads * m->cfg.d_kv;
  float eps = m->cfg.layer_norm_epsilon;
  /* layer.0: x += o(attention(rms(x))) */
  be->rms_norm (be, w->n, w->x, blk->ln0, rows, d, eps);        /* n: [rows, d_model] */
  be->linear (be, w->q, w->n, blk->q, NULL, rows, d, inner);    /* q: [rows, inner] */
  be->linear (be, w->k, w->n, blk->k, NULL, rows, d, inner);    /* k: [rows, inner] */
  be->linear (be, w->v, w->n, blk->v, NULL, rows, d, inner);    /* v: [rows, inner] */
  t5_attention (m, w);                                          /* att: [rows, inner] */
  be->linear (be, w->h, w->att, blk->o, NULL, rows, inner, d);  /* h: [rows, d_model] */
  be->add (be, w->x, w->x, w->h);
  /* layer.1: x += wo(gelu_tanh(wi_0·rms(x)) ⊙ wi_1·rms(x)) */
  be->rms_norm (be, w->n, w->x, blk->ln1, rows, d, eps);
  be->linear (be, w->g0, w->n, blk->wi_0, NULL, rows, d, ff);   /* g0: [rows, d_ff] */
  be->gelu_tanh (be, w->g0, w->g0);
  be->linear (be, w->g1, w->n, blk->wi_1, NULL, rows, d, ff);   /* g1: [rows, d_ff] */
  be->mul (be, w->g0, w->g0, w->g1);
  be->linear (be, w->h, w->g0, blk->wo, NULL, rows, ff, d);     /* h: [rows, d_model] */
  be->add (be, w->x, w->x, w->h);
}

static gboolean
t5_run_blocks (KinT5 *m, T5Work *w, GError **error)
{
  gboolean stream = m->mode == KIN_T5_WEIGHTS_STREAM;
  for (int l = 0; l < m->cfg.num_layers; l++) {
    if (stream && !t5_block_load (m, l, error))
      return FALSE;
    if (l + 1 < m->cfg.num_layers && t5_streams_files (m))
      t5_block_prefetch (m, l + 1);
    t5_block_forward (m, &m->blocks[l], w);
    if (stream) {
      m->be->synchronize (m->be);   /* a device may still read the weights */
      t5_block_unload (m, l);
    }
    if (!kin_backend_take_error (m->be, error)) {
      g_prefix_error (error, "T5 block %d: ", l);
      return FALSE;
    }
    if (m->hook)
      m->hook (l, w->x, m->hook_data);
  }
  return TRUE;
}

KinTensor *
kin_t5_encode_tensor (KinT5 *m, const int64_t *ids, const int64_t *mask, int batch, int len,
                      GError **error)
{
  if (!t5_check_input (m, ids, mask, batch, len, error))
    return NULL;
  if (!kin_backend_take_error (m->be, error)) {
    g_prefix_error (error, "T5 encode: the backend had a pending error: ");
    return NULL;
  }
  T5Work w = { 0 };
  KinTensor *out = NULL;
  if (t5_work_init (m, ids, mask, batch, len, &w, error)) {
    if (m->hook)
      m->hook (-1, w.x, m->hook_data);
    if (t5_run_blocks (m, &w, error)) {
      /* last_hidden_state = rms(x, final_layer_norm): [batch·len, d_model] → [B, L, d_model] */
      m->be->rms_norm (m->be, w.n, w.x, m->final_ln, w.rows, m->cfg.d_model,
                       m->cfg.layer_norm_epsilon);
      if (kin_backend_take_error (m->be, error)) {
        out = g_steal_pointer (&w.n);
        out->ndim = 3;
        out->shape[0] = batch;
        out->shape[1] = len;
        out->shape[2] = m->cfg.d_model;
      }
    }
  }
  t5_work_clear (&w);
  return out;
}

gboolean
kin_t5_encode (KinT5 *m, const int64_t *ids, const int64_t *mask, int batch, int len, float *out,
               GError **error)
{
  g_autoptr (KinTensor) y = kin_t5_encode_tensor (m, ids, mask, batch, len, error);
  if (y == NULL)
    return FALSE;
  m->be->download (m->be, out, y->data, kin_tensor_nbytes (y));
  return kin_backend_take_error (m->be, error);
}
