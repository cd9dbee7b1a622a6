/* kin-safetensors.c — safetensors reader (mmap, strict header validation) and writer.
 *
 * Layout: u64 little-endian header size N, N bytes of JSON, then the data buffer.  The header
 * maps names to {dtype, shape, data_offsets:[begin, end)} relative to the data buffer, plus an
 * optional "__metadata__" object of strings.  Like the reference implementation we require the
 * tensors to tile the data buffer exactly: sorted by offset, no overlap, no gap, ending at the
 * end of the file. */
#include "kin-weights.h"
#include "kin-error.h"
#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#define MAX_HEADER (100u << 20)

typedef struct {
  const char *name;
  KinDType dtype;
  int ndim;
  int64_t shape[KIN_MAX_DIMS];
  uint64_t begin, end;
} Pending;

static int
pending_cmp (gconstpointer a, gconstpointer b)
{
  const Pending *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

static gboolean
bad (GError **error, const char *file, const char *fmt, const char *name)
{
  g_autofree char *what = g_strdup_printf (fmt, name ? name : "");
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "%s: not a valid safetensors file: %s",
               file, what);
  return FALSE;
}

static gboolean
json_uint (JsonNode *n, uint64_t *out)
{
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (n);
  if (v < 0)
    return FALSE;
  *out = (uint64_t) v;
  return TRUE;
}

static gboolean
parse_entry (const char *name, JsonNode *node, Pending *p, const char *file, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return bad (error, file, "entry %s is not an object", name);
  JsonObject *o = json_node_get_object (node);
  JsonNode *dt = json_object_get_member (o, "dtype");
  JsonNode *sh = json_object_get_member (o, "shape");
  JsonNode *off = json_object_get_member (o, "data_offsets");
  if (!dt || !JSON_NODE_HOLDS_VALUE (dt) || json_node_get_value_type (dt) != G_TYPE_STRING)
    return bad (error, file, "entry %s has no dtype", name);
  if (!kin_dtype_from_name (json_node_get_string (dt), &p->dtype))
    return bad (error, file, "entry %s has an unknown dtype", name);
  if (!sh || !JSON_NODE_HOLDS_ARRAY (sh))
    return bad (error, file, "entry %s has no shape", name);
  JsonArray *sa = json_node_get_array (sh);
  if (json_array_get_length (sa) > KIN_MAX_DIMS)
    return bad (error, file, "entry %s has too many dimensions", name);
  p->ndim = (int) json_array_get_length (sa);
  for (int i = 0; i < p->ndim; i++) {
    uint64_t d;
    if (!json_uint (json_array_get_element (sa, i), &d) || d > (uint64_t) G_MAXINT64)
      return bad (error, file, "entry %s has a bad dimension", name);
    p->shape[i] = (int64_t) d;
  }
  if (!off || !JSON_NODE_HOLDS_ARRAY (off) || json_array_get_length (json_node_get_array (off)) != 2)
    return bad (error, file, "entry %s has no data_offsets pair", name);
  JsonArray *oa = json_node_get_array (off);
  if (!json_uint (json_array_get_element (oa, 0), &p->begin) ||
      !json_uint (json_array_get_element (oa, 1), &p->end) || p->end < p->begin)
    return bad (error, file, "entry %s has bad data_offsets", name);
  int64_t numel;
  if (!kin_shape_numel_checked (p->ndim, p->shape, &numel) ||
      (uint64_t) numel > G_MAXUINT64 / kin_dtype_size (p->dtype))
    return bad (error, file, "entry %s has an absurd shape", name);
  if ((uint64_t) numel * kin_dtype_size (p->dtype) != p->end - p->begin)
    return bad (error, file, "entry %s: shape × dtype size differs from its byte range", name);
  p->name = name;
  return TRUE;
}

gboolean
kin_safetensors_parse (KinWeights *ws, const guint8 *data, size_t len, const char *file,
                       GError **error)
{
  if (len < 8)
    return bad (error, file, "shorter than the 8-byte header size%s", NULL);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | data[i];
  if (n < 2 || n > MAX_HEADER)
    return bad (error, file, "header size is absurd%s", NULL);
  if (n > len - 8)
    return bad (error, file, "header is longer than the file%s", NULL);
  const char *hdr = (const char *) data + 8;
  if (memchr (hdr, '\0', n) != NULL)
    return bad (error, file, "header contains a NUL byte%s", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) jerr = NULL;
  if (!json_parser_load_from_data (parser, hdr, (gssize) n, &jerr))
    return bad (error, file, "header is not valid JSON%s", NULL);
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return bad (error, file, "header is not a JSON object%s", NULL);
  JsonObject *obj = json_node_get_object (root);
  const guint8 *buf = data + 8 + n;
  uint64_t buf_len = len - 8 - n;

  g_autoptr (GList) members = json_object_get_members (obj);
  g_autoptr (GArray) pend = g_array_new (FALSE, TRUE, sizeof (Pending));
  for (GList *l = members; l; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (obj, name);
    if (strcmp (name, "__metadata__") == 0) {
      if (!JSON_NODE_HOLDS_OBJECT (node))
        return bad (error, file, "__metadata__ is not an object%s", NULL);
      continue;
    }
    Pending p = { 0 };
    if (!parse_entry (name, node, &p, file, error))
      return FALSE;
    g_array_append_val (pend, p);
  }
  /* check the tiling on a sorted copy; add in header (file) order */
  g_autoptr (GArray) sorted = g_array_copy (pend);
  g_array_sort (sorted, pending_cmp);
  uint64_t pos = 0;
  for (guint i = 0; i < sorted->len; i++) {
    Pending *p = &g_array_index (sorted, Pending, i);
    if (p->begin != pos)
      return bad (error, file, p->begin < pos ? "tensor %s overlaps another" : "gap before tensor %s", p->name);
    pos = p->end;
  }
  if (pos != buf_len)
    return bad (error, file, pos > buf_len ? "data offsets run past the end of the file%s"
                                           : "trailing bytes after the last tensor%s", NULL);
  for (guint i = 0; i < pend->len; i++) {
    Pending *p = &g_array_index (pend, Pending, i);
    if (!kin_weights_add_entry (ws, p->name, p->dtype, p->ndim, p->shape, buf + p->begin,
                                p->end - p->begin, file, error))
      return FALSE;
  }
  return TRUE;
}

gboolean
kin_safetensors_load (KinWeights *ws, const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) mf = g_mapped_file_new (path, FALSE, &local);
  if (mf == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot open %s: %s", path,
                 local->message);
    return FALSE;
  }
  kin_weights_note_source (ws, path);
  /* kept first: entries added before a later failure (a duplicate name) point into it */
  kin_weights_keep_mapping (ws, mf);
  return kin_safetensors_parse (ws, (const guint8 *) g_mapped_file_get_contents (mf),
                                g_mapped_file_get_length (mf), path, error);
}

/* --- writer --- */

static void
json_escape (GString *s, const char *str)
{
  g_string_append_c (s, '"');
  for (const char *p = str; *p; p++) {
    unsigned char c = (unsigned char) *p;
    if (c == '"' || c == '\\')
      g_string_append_printf (s, "\\%c", c);
    else if (c < 0x20)
      g_string_append_printf (s, "\\u%04x", c);
    else
      g_string_append_c (s, (char) c);
  }
  g_string_append_c (s, '"');
}

gboolean
kin_safetensors_write (const char *path, guint n, const char *const *names,
                       const KinDType *dtypes, const int *ndims, const int64_t *const *shapes,
                       const void *const *datas, GHashTable *metadata, GError **error)
{
  g_autoptr (GString) h = g_string_new ("{");
  gboolean first = TRUE;
  if (metadata != NULL && g_hash_table_size (metadata) > 0) {
    g_string_append (h, "\"__metadata__\":{");
    GHashTableIter it;
    gpointer k, v;
    gboolean f2 = TRUE;
    g_hash_table_iter_init (&it, metadata);
    while (g_hash_table_iter_next (&it, &k, &v)) {
      if (!f2)
        g_string_append_c (h, ',');
      json_escape (h, k);
      g_string_append_c (h, ':');
      json_escape (h, v);
      f2 = FALSE;
    }
    g_string_append_c (h, '}');
    first = FALSE;
  }
  uint64_t off = 0;
  g_autofree size_t *sizes = g_new0 (size_t, MAX (n, 1));
  for (guint i = 0; i < n; i++) {
    int64_t numel;
    if (!kin_shape_numel_checked (ndims[i], shapes[i], &numel) || kin_dtype_size (dtypes[i]) == 0) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "cannot write tensor %s: bad shape or dtype", names[i]);
      return FALSE;
    }
    sizes[i] = (size_t) numel * kin_dtype_size (dtypes[i]);
    if (!first)
      g_string_append_c (h, ',');
    first = FALSE;
    json_escape (h, names[i]);
    g_string_append_printf (h, ":{\"dtype\":\"%s\",\"shape\":[", kin_dtype_name (dtypes[i]));
    for (int d = 0; d < ndims[i]; d++)
      g_string_append_printf (h, "%s%" G_GINT64_FORMAT, d ? "," : "", shapes[i][d]);
    g_string_append_printf (h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}",
                            off, off + sizes[i]);
    off += sizes[i];
  }
  g_string_append_c (h, '}');
  while (h->len % 8 != 0)
    g_string_append_c (h, ' ');

  g_autofree char *tmp = g_strconcat (path, ".tmp-XXXXXX", NULL);
  int fd = g_mkstemp (tmp);
  if (fd < 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot create %s: %s", tmp,
                 g_strerror (errno));
    return FALSE;
  }
  fchmod (fd, 0644); /* g_mkstemp creates 0600; a weight file is not a secret */
  FILE *f = fdopen (fd, "wb");
  guint8 len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (guint8) ((uint64_t) h->len >> (8 * i));
  gboolean ok = f != NULL && fwrite (len8, 1, 8, f) == 8 && fwrite (h->str, 1, h->len, f) == h->len;
  for (guint i = 0; ok && i < n; i++)
    ok = sizes[i] == 0 || fwrite (datas[i], 1, sizes[i], f) == sizes[i];
  if (f != NULL && fflush (f) != 0)
    ok = FALSE;
  int saved = errno;
  if (f != NULL)
    fclose (f);
  else
    close (fd);
  if (!ok || g_rename (tmp, path) != 0) {
    if (ok)
      saved = errno;
    g_unlink (tmp);
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot write %s: %s", path,
                 g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}
