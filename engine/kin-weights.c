/* kin-weights.c — the weight set: entries from mapped checkpoint files, looked up by name. */
#include "kin-weights.h"
#include "kin-error.h"
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <string.h>

typedef struct {
  KinWeightEntry e;
  gboolean used;
} Entry;

struct _KinWeights {
  GPtrArray *entries;     /* Entry*, file order */
  GHashTable *by_name;    /* name → Entry* */
  GPtrArray *mappings;    /* GMappedFile* */
  GPtrArray *bytes;       /* GBytes* */
  GStringChunk *strings;  /* names and file names */
  char *source;
};

static void
entry_free (gpointer p)
{
  g_free (p);
}

KinWeights *
kin_weights_new (void)
{
  KinWeights *ws = g_new0 (KinWeights, 1);
  ws->entries = g_ptr_array_new_with_free_func (entry_free);
  ws->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  ws->mappings = g_ptr_array_new_with_free_func ((GDestroyNotify) g_mapped_file_unref);
  ws->bytes = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  ws->strings = g_string_chunk_new (4096);
  return ws;
}

void
kin_weights_free (KinWeights *ws)
{
  if (ws == NULL)
    return;
  g_hash_table_unref (ws->by_name);
  g_ptr_array_unref (ws->entries);
  g_ptr_array_unref (ws->mappings);
  g_ptr_array_unref (ws->bytes);
  g_string_chunk_free (ws->strings);
  g_free (ws->source);
  g_free (ws);
}

void
kin_weights_keep_mapping (KinWeights *ws, GMappedFile *mapping)
{
  g_ptr_array_add (ws->mappings, g_mapped_file_ref (mapping));
}

void
kin_weights_keep_bytes (KinWeights *ws, GBytes *bytes)
{
  g_ptr_array_add (ws->bytes, g_bytes_ref (bytes));
}

gboolean
kin_weights_add_entry (KinWeights *ws, const char *name, KinDType dtype, int ndim,
                       const int64_t *shape, const void *data, size_t nbytes, const char *file,
                       GError **error)
{
  if (g_hash_table_contains (ws->by_name, name)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: tensor %s appears twice", file, name);
    return FALSE;
  }
  int64_t numel;
  if (ndim < 0 || ndim > KIN_MAX_DIMS || !kin_shape_numel_checked (ndim, shape, &numel) ||
      kin_dtype_size (dtype) == 0 || (uint64_t) numel > G_MAXSIZE / kin_dtype_size (dtype) ||
      (size_t) numel * kin_dtype_size (dtype) != nbytes) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: tensor %s has an inconsistent shape, dtype or size", file, name);
    return FALSE;
  }
  Entry *en = g_new0 (Entry, 1);
  en->e.name = g_string_chunk_insert_const (ws->strings, name);
  en->e.dtype = dtype;
  en->e.ndim = ndim;
  memcpy (en->e.shape, shape, sizeof (int64_t) * ndim);
  en->e.data = data;
  en->e.nbytes = nbytes;
  en->e.file = g_string_chunk_insert_const (ws->strings, file);
  g_ptr_array_add (ws->entries, en);
  g_hash_table_insert (ws->by_name, (gpointer) en->e.name, en);
  return TRUE;
}

guint
kin_weights_count (KinWeights *ws)
{
  return ws->entries->len;
}

const KinWeightEntry *
kin_weights_nth (KinWeights *ws, guint i)
{
  return i < ws->entries->len ? &((Entry *) ws->entries->pdata[i])->e : NULL;
}

const KinWeightEntry *
kin_weights_lookup (KinWeights *ws, const char *name)
{
  Entry *en = g_hash_table_lookup (ws->by_name, name);
  if (en == NULL)
    return NULL;
  en->used = TRUE;
  return &en->e;
}

gboolean
kin_weights_contains (KinWeights *ws, const char *name)
{
  return g_hash_table_contains (ws->by_name, name);
}

const char *
kin_weights_source (KinWeights *ws)
{
  return ws->source ? ws->source : "(in memory)";
}

void
kin_weights_note_source (KinWeights *ws, const char *path)
{
  if (ws->source == NULL)
    ws->source = g_strdup (path);
}

const KinWeightEntry *
kin_weights_require (KinWeights *ws, const char *name, int ndim, const int64_t *shape,
                     GError **error)
{
  const KinWeightEntry *e = kin_weights_lookup (ws, name);
  if (e == NULL) {
    g_autofree char *want = shape ? kin_shape_to_string (ndim, shape) : g_strdup ("any shape");
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "missing tensor %s (expected %s) in %s", name, want, kin_weights_source (ws));
    return NULL;
  }
  if (shape == NULL)
    return e;
  gboolean ok = e->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++)
    ok = shape[i] < 0 || shape[i] == e->shape[i];
  if (!ok) {
    g_autofree char *want = kin_shape_to_string (ndim, shape);
    g_autofree char *have = kin_shape_to_string (e->ndim, e->shape);
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "tensor %s in %s has shape %s, expected %s", name, e->file, have, want);
    return NULL;
  }
  return e;
}

float *
kin_weight_entry_to_f32 (const KinWeightEntry *e)
{
  size_t n = e->nbytes / MAX (kin_dtype_size (e->dtype), 1);
  float *out = g_try_new (float, MAX (n, 1));
  if (out == NULL)
    return NULL;
  if (!kin_convert_to_f32 (out, e->data, e->dtype, n)) {
    g_free (out);
    return NULL;
  }
  return out;
}

/* @e (any dtype but BF16) rounded to BF16 into @t: f32 first, then nearest-even bf16. */
static gboolean
upload_as_bf16 (const KinWeightEntry *e, KinBackend *be, KinTensor *t, size_t n, GError **error)
{
  g_autofree float *f = g_try_new (float, MAX (n, 1));
  g_autofree uint16_t *h = g_try_new (uint16_t, MAX (n, 1));
  if (f == NULL || h == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "tensor %s in %s: out of host memory converting it to BF16", e->name, e->file);
    return FALSE;
  }
  if (!kin_convert_to_f32 (f, e->data, e->dtype, n) || !kin_convert_from_f32 (h, KIN_DTYPE_BF16, f, n)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "tensor %s in %s: cannot convert %s to BF16", e->name, e->file, kin_dtype_name (e->dtype));
    return FALSE;
  }
  be->upload (be, t->data, h, n * sizeof (uint16_t));
  return TRUE;
}

static KinTensor *
upload_entry (const KinWeightEntry *e, KinBackend *be, KinDType want, GError **error)
{
  KinTensor *t = kin_tensor_new (be, want, e->ndim, e->shape, error);
  if (t == NULL)
    return NULL;
  size_t n = e->nbytes / kin_dtype_size (e->dtype);
  if (want == e->dtype) {
    be->upload (be, t->data, e->data, e->nbytes);
    return t;
  }
  if (want == KIN_DTYPE_BF16) {
    if (!upload_as_bf16 (e, be, t, n, error)) {
      kin_tensor_free (t);
      return NULL;
    }
    return t;
  }
  gboolean host = g_strcmp0 (be->name, "cpu") == 0;
  float *buf = host ? t->data : g_try_new (float, MAX (n, 1));
  if (buf == NULL || !kin_convert_to_f32 (buf, e->data, e->dtype, n)) {
    if (!host)
      g_free (buf);
    kin_tensor_free (t);
    g_set_error (error, KIN_ENGINE_ERROR, buf ? KIN_ENGINE_ERROR_BAD_WEIGHTS : KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "tensor %s in %s: cannot convert %s to F32", e->name, e->file, kin_dtype_name (e->dtype));
    return NULL;
  }
  if (!host) {
    be->upload (be, t->data, buf, n * sizeof (float));
    g_free (buf);
  }
  return t;
}

KinTensor *
kin_weights_get_f32 (KinWeights *ws, KinBackend *be, const char *name, int ndim,
                     const int64_t *shape, GError **error)
{
  const KinWeightEntry *e = kin_weights_require (ws, name, ndim, shape, error);
  return e ? upload_entry (e, be, KIN_DTYPE_F32, error) : NULL;
}

KinTensor *
kin_weights_get_native (KinWeights *ws, KinBackend *be, const char *name, int ndim,
                        const int64_t *shape, GError **error)
{
  const KinWeightEntry *e = kin_weights_require (ws, name, ndim, shape, error);
  if (e == NULL)
    return NULL;
  KinDType want = (e->dtype == KIN_DTYPE_F16 || e->dtype == KIN_DTYPE_BF16) ? e->dtype : KIN_DTYPE_F32;
  return upload_entry (e, be, want, error);
}

KinTensor *
kin_weights_get_linear (KinWeights *ws, KinBackend *be, const char *name, int ndim,
                        const int64_t *shape, GError **error)
{
  const KinWeightEntry *e = kin_weights_require (ws, name, ndim, shape, error);
  if (e == NULL)
    return NULL;
  KinDType want = (e->dtype == KIN_DTYPE_F16 || e->dtype == KIN_DTYPE_BF16) ? e->dtype
                  : be->linear_weights_bf16                                 ? KIN_DTYPE_BF16
                                                                            : KIN_DTYPE_F32;
  return upload_entry (e, be, want, error);
}

char **
kin_weights_unused (KinWeights *ws)
{
  GPtrArray *out = g_ptr_array_new ();
  for (guint i = 0; i < ws->entries->len; i++) {
    Entry *en = ws->entries->pdata[i];
    if (!en->used)
      g_ptr_array_add (out, g_strdup (en->e.name));
  }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

void
kin_weights_warn_unused (KinWeights *ws, const char *what)
{
  g_auto (GStrv) unused = kin_weights_unused (ws);
  guint n = g_strv_length (unused);
  if (n == 0)
    return;
  g_autofree char *list = g_strjoinv (", ", unused);
  g_warning ("%s: %u unexpected tensor%s in %s ignored: %s", what, n, n == 1 ? "" : "s",
             kin_weights_source (ws), list);
}

/* --- opening files --- */

gboolean
kin_weights_add_file (KinWeights *ws, const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) mf = g_mapped_file_new (path, FALSE, &local);
  if (mf == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot open %s: %s", path,
                 local->message);
    return FALSE;
  }
  const guint8 *data = (const guint8 *) g_mapped_file_get_contents (mf);
  size_t len = g_mapped_file_get_length (mf);
  kin_weights_note_source (ws, path);
  if (len >= 4 && memcmp (data, "PK\x03\x04", 4) == 0)
    return kin_pth_load (ws, path, error);
  return kin_safetensors_load (ws, path, error);
}

gboolean
kin_weights_load_index (KinWeights *ws, const char *index_path, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_file (parser, index_path, &local)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "%s: %s", index_path,
                 local->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *map = NULL;
  if (root && JSON_NODE_HOLDS_OBJECT (root)) {
    JsonObject *o = json_node_get_object (root);
    JsonNode *m = json_object_get_member (o, "weight_map");
    if (m && JSON_NODE_HOLDS_OBJECT (m))
      map = json_node_get_object (m);
  }
  if (map == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: no \"weight_map\" object (not a sharded checkpoint index)", index_path);
    return FALSE;
  }
  g_autofree char *dir = g_path_get_dirname (index_path);
  g_autoptr (GHashTable) shards = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GPtrArray) order = g_ptr_array_new ();
  g_autoptr (GList) members = json_object_get_members (map);
  for (GList *l = members; l; l = l->next) {
    JsonNode *v = json_object_get_member (map, l->data);
    const char *shard = JSON_NODE_HOLDS_VALUE (v) ? json_node_get_string (v) : NULL;
    if (shard == NULL || strchr (shard, '/') != NULL || strcmp (shard, "..") == 0) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "%s: bad shard name for %s", index_path, (const char *) l->data);
      return FALSE;
    }
    if (!g_hash_table_contains (shards, shard)) {
      char *s = g_strdup (shard);
      g_hash_table_add (shards, s);
      g_ptr_array_add (order, s);
    }
  }
  ws->source = g_strdup_printf ("%u shards listed in %s", order->len, index_path);
  for (guint i = 0; i < order->len; i++) {
    g_autofree char *p = g_build_filename (dir, order->pdata[i], NULL);
    if (!kin_weights_add_file (ws, p, error))
      return FALSE;
  }
  for (GList *l = members; l; l = l->next)
    if (!g_hash_table_contains (ws->by_name, l->data)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                   "%s lists %s, but no shard holds it", index_path, (const char *) l->data);
      return FALSE;
    }
  return TRUE;
}

static char *
find_in_folder (const char *dir)
{
  static const char *const names[] = {
    "model.safetensors", "diffusion_pytorch_model.safetensors",
    "model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json",
    "pytorch_model.bin.index.json", "pytorch_model.bin", "diffusion_pytorch_model.bin",
    "model.pth", "model.ckpt",
  };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    char *p = g_build_filename (dir, names[i], NULL);
    if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
      return p;
    g_free (p);
  }
  /* Otherwise the single .safetensors or .pth in the folder. */
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  char *found = NULL;
  int count = 0;
  while (d && (name = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (name, ".safetensors") || g_str_has_suffix (name, ".pth")) {
      count++;
      g_free (found);
      found = g_build_filename (dir, name, NULL);
    }
  if (count == 1)
    return found;
  g_free (found);
  return NULL;
}

KinWeights *
kin_weights_open (const char *path, GError **error)
{
  g_autoptr (KinWeights) ws = kin_weights_new ();
  g_autofree char *file = NULL;
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    file = find_in_folder (path);
    if (file == NULL) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "no weight file in %s (looked for model.safetensors, "
                   "diffusion_pytorch_model.safetensors, a *.index.json, pytorch_model.bin or one *.pth)",
                   path);
      return NULL;
    }
  } else if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "%s does not exist", path);
    return NULL;
  } else {
    file = g_strdup (path);
  }
  gboolean ok = g_str_has_suffix (file, ".index.json") ? kin_weights_load_index (ws, file, error)
                                                        : kin_weights_add_file (ws, file, error);
  return ok ? g_steal_pointer (&ws) : NULL;
}
