/* test-pth.c — the PyTorch zip checkpoint reader (engine/kin-pth.c).
 *
 * 1. Fixtures written by torch.save (tools/make-pth-fixture.py) are loaded and compared with
 *    tests/data/pth/expected.json: names in file order, dtypes, shapes, values.
 * 2. Archives and pickles are built in memory (ZIP64 extra fields, data descriptors, other top
 *    folder names) and loaded.
 * 3. Broken and hostile inputs (truncations, flipped bytes, lying offsets and sizes, impossible
 *    shapes, deep nesting, huge strings, bad memo indices…) must each give FALSE and a GError,
 *    add nothing to the set, and never crash. */
#include "kin-weights.h"
#include "kin-error.h"
#include <json-glib/json-glib.h>
#include <string.h>

static char *
fixture_path (const char *name)
{
  const char *dir = g_getenv ("KIN_TEST_DATADIR");
  return g_build_filename (dir ? dir : KIN_TEST_DATADIR, "pth", name, NULL);
}

static GBytes *
read_fixture (const char *name)
{
  g_autofree char *path = fixture_path (name);
  g_autoptr (GError) error = NULL;
  char *data;
  gsize len;
  g_assert_true (g_file_get_contents (path, &data, &len, &error));
  g_assert_no_error (error);
  return g_bytes_new_take (data, len);
}

/* Parses @data; asserts failure with an error, nothing added; returns the message (g_free). */
static char *
expect_fail (const guint8 *data, gsize len)
{
  g_autoptr (KinWeights) ws = kin_weights_new ();
  g_autoptr (GError) error = NULL;
  gboolean ok = kin_pth_parse (ws, data, len, "crafted.pth", &error);
  g_assert_false (ok);
  g_assert_nonnull (error);
  g_assert_true (error->domain == KIN_ENGINE_ERROR);
  g_assert_cmpuint (kin_weights_count (ws), ==, 0);
  return g_strdup (error->message);
}

static void
expect_fail_containing (const guint8 *data, gsize len, const char *needle)
{
  g_autofree char *msg = expect_fail (data, len);
  if (strstr (msg, needle) == NULL)
    g_error ("error message \"%s\" does not mention \"%s\"", msg, needle);
}

/* ============================================================================================
 * 1. Fixtures
 * ============================================================================================ */

static JsonObject *
expected_root (JsonParser *parser)
{
  g_autofree char *path = fixture_path ("expected.json");
  g_autoptr (GError) error = NULL;
  g_assert_true (json_parser_load_from_file (parser, path, &error));
  g_assert_no_error (error);
  return json_node_get_object (json_parser_get_root (parser));
}

static double
element (const KinWeightEntry *e, gsize i)
{
  const guint8 *p = (const guint8 *) e->data + i * kin_dtype_size (e->dtype);
  switch (e->dtype) {
  case KIN_DTYPE_F32: { float v; memcpy (&v, p, 4); return v; }
  case KIN_DTYPE_F64: { double v; memcpy (&v, p, 8); return v; }
  case KIN_DTYPE_F16: { guint16 v; memcpy (&v, p, 2); return kin_f16_to_f32 (v); }
  case KIN_DTYPE_BF16: { guint16 v; memcpy (&v, p, 2); return kin_bf16_to_f32 (v); }
  case KIN_DTYPE_I32: { gint32 v; memcpy (&v, p, 4); return v; }
  case KIN_DTYPE_I16: { gint16 v; memcpy (&v, p, 2); return v; }
  case KIN_DTYPE_I8: return (gint8) p[0];
  case KIN_DTYPE_U8: return p[0];
  case KIN_DTYPE_BOOL: return p[0];
  default: g_assert_not_reached ();
  }
}

static void
check_against_expected (KinWeights *ws, const char *fixture)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *root = expected_root (parser);
  JsonArray *want = json_object_get_array_member (root, fixture);
  g_assert_nonnull (want);
  g_assert_cmpuint (kin_weights_count (ws), ==, json_array_get_length (want));

  for (guint i = 0; i < json_array_get_length (want); i++) {
    JsonObject *w = json_array_get_object_element (want, i);
    const KinWeightEntry *e = kin_weights_nth (ws, i);
    g_assert_cmpstr (e->name, ==, json_object_get_string_member (w, "name"));
    g_assert_cmpstr (kin_dtype_name (e->dtype), ==, json_object_get_string_member (w, "dtype"));
    JsonArray *shape = json_object_get_array_member (w, "shape");
    g_assert_cmpint (e->ndim, ==, (int) json_array_get_length (shape));
    gsize numel = 1;
    for (int d = 0; d < e->ndim; d++) {
      g_assert_cmpint (e->shape[d], ==, json_array_get_int_element (shape, (guint) d));
      numel *= (gsize) e->shape[d];
    }
    g_assert_cmpuint (e->nbytes, ==, numel * kin_dtype_size (e->dtype));
    g_assert_nonnull (strstr (e->file, fixture));
    JsonArray *values = json_object_get_array_member (w, "values");
    g_assert_cmpuint (json_array_get_length (values), ==, numel);
    for (gsize k = 0; k < numel; k++) {
      JsonNode *n = json_array_get_element (values, (guint) k);
      if (e->dtype == KIN_DTYPE_I64) {
        gint64 v;
        memcpy (&v, (const guint8 *) e->data + 8 * k, 8);
        g_assert_cmpint (v, ==, json_node_get_int (n));
      } else {
        double want_v = json_node_get_value_type (n) == G_TYPE_INT64 ? (double) json_node_get_int (n)
                                                                     : json_node_get_double (n);
        double got = element (e, k);
        if (got != want_v)
          g_error ("%s: %s[%" G_GSIZE_FORMAT "] = %.17g, expected %.17g", fixture, e->name, k,
                   got, want_v);
      }
    }
  }
}

static void
test_fixture (gconstpointer data)
{
  const char *fixture = data;
  g_autofree char *path = fixture_path (fixture);
  g_autoptr (KinWeights) ws = kin_weights_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_pth_load (ws, path, &error));
  g_assert_no_error (error);
  check_against_expected (ws, fixture);
}

static void
test_fixture_details (void)
{
  g_autofree char *path = fixture_path ("dtypes.pth");
  g_autoptr (GError) error = NULL;
  /* Through the generic entry point (format chosen by content). */
  g_autoptr (KinWeights) ws = kin_weights_open (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ws);
  const KinWeightEntry *half = kin_weights_lookup (ws, "half");
  const KinWeightEntry *tied = kin_weights_lookup (ws, "half_tied");
  g_assert_true (half->data == tied->data);      /* one storage, two names */
  const KinWeightEntry *base = kin_weights_lookup (ws, "base");
  const KinWeightEntry *row = kin_weights_lookup (ws, "row1");
  g_assert_true ((const float *) row->data == (const float *) base->data + 4);
  g_assert_cmpint (row->ndim, ==, 1);
  g_assert_cmpint (row->shape[0], ==, 4);

  g_autofree char *flat = fixture_path ("flat-f32.pth");
  g_autoptr (KinWeights) ws2 = kin_weights_new ();
  g_assert_true (kin_weights_add_file (ws2, flat, &error));
  g_assert_no_error (error);
  const KinWeightEntry *scale = kin_weights_lookup (ws2, "scale");
  g_assert_cmpint (scale->ndim, ==, 0);
  g_assert_cmpfloat (*(const float *) scale->data, ==, 1.5f);
  const KinWeightEntry *empty = kin_weights_lookup (ws2, "empty");
  g_assert_cmpint (empty->ndim, ==, 2);
  g_assert_cmpint (empty->shape[0], ==, 0);
  g_assert_cmpuint (empty->nbytes, ==, 0);

  /* The same file again: duplicate names, and the first copy stays usable. */
  g_assert_false (kin_pth_load (ws2, flat, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE);
  g_clear_error (&error);
  check_against_expected (ws2, "flat-f32.pth");

  g_assert_false (kin_pth_load (ws2, "/nonexistent/x.pth", &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO);
}

static void
test_fixture_refused (void)
{
  g_autoptr (GBytes) nc = read_fixture ("noncontig.pth");
  g_autofree char *m1 = expect_fail (g_bytes_get_data (nc, NULL), g_bytes_get_size (nc));
  g_assert_nonnull (strstr (m1, "transposed"));
  g_assert_nonnull (strstr (m1, "contiguous"));

  g_autoptr (GBytes) cx = read_fixture ("complex.pth");
  g_autofree char *m2 = expect_fail (g_bytes_get_data (cx, NULL), g_bytes_get_size (cx));
  g_assert_nonnull (strstr (m2, "ComplexFloatStorage"));
}

/* Every prefix of every fixture fails cleanly; so does every single flipped byte of one. */
static void
test_fixture_truncated (void)
{
  static const char *const names[] = { "flat-f32.pth", "dtypes.pth", "nested.pth",
                                       "proto4.pth" };
  for (guint f = 0; f < G_N_ELEMENTS (names); f++) {
    g_autoptr (GBytes) b = read_fixture (names[f]);
    gsize len;
    const guint8 *data = g_bytes_get_data (b, &len);
    for (gsize cut = 0; cut < len; cut++) {
      /* A copy of exactly @cut bytes, so that valgrind/ASan see any over-read. */
      g_autofree guint8 *copy = g_memdup2 (data, cut);
      g_free (expect_fail (copy, cut));
    }
  }
}

static void
test_fixture_flipped (void)
{
  static const char *const names[] = { "flat-f32.pth", "nested.pth" };
  static const guint8 masks[] = { 0xff, 0x01, 0x80 };
  for (guint f = 0; f < G_N_ELEMENTS (names); f++) {
    g_autoptr (GBytes) b = read_fixture (names[f]);
    gsize len;
    const guint8 *data = g_bytes_get_data (b, &len);
    g_autofree guint8 *copy = g_memdup2 (data, len);
    for (gsize i = 0; i < len; i++)
      for (guint m = 0; m < G_N_ELEMENTS (masks); m++) {
        copy[i] ^= masks[m];
        g_autoptr (KinWeights) ws = kin_weights_new ();
        g_autoptr (GError) error = NULL;
        gboolean ok = kin_pth_parse (ws, copy, len, "flipped.pth", &error);
        g_assert_true (ok == (error == NULL));
        if (!ok)
          g_assert_cmpuint (kin_weights_count (ws), ==, 0);
        copy[i] ^= masks[m];
      }
  }
}

/* ============================================================================================
 * 2. Building archives and pickles in memory
 * ============================================================================================ */

static void
put16 (GByteArray *a, guint v)
{
  guint8 b[2] = { v & 0xff, (v >> 8) & 0xff };
  g_byte_array_append (a, b, 2);
}

static void
put32 (GByteArray *a, guint32 v)
{
  guint8 b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
  g_byte_array_append (a, b, 4);
}

static void
put64 (GByteArray *a, guint64 v)
{
  put32 (a, (guint32) v);
  put32 (a, (guint32) (v >> 32));
}

static void
set32 (GByteArray *a, gsize at, guint32 v)
{
  a->data[at] = v & 0xff;
  a->data[at + 1] = (v >> 8) & 0xff;
  a->data[at + 2] = (v >> 16) & 0xff;
  a->data[at + 3] = v >> 24;
}

typedef struct {
  const char *name;
  const void *data;
  gsize len;
  guint16 method;
} ZEnt;

typedef struct {
  gboolean zip64;        /* ZIP64 extra fields everywhere + ZIP64 EOCD */
  gboolean descriptor;   /* flag bit 3: sizes only in the central directory */
  gboolean align64;      /* pad local headers so data starts on 64 bytes, like torch */
  /* Offsets of interesting fields, filled in by build_zip for the tests to patch. */
  gsize local_off[8];
  gsize central_off[8];
  gsize eocd_off;
  gsize eocd64_off;
} ZOpts;

static GByteArray *
build_zip (const ZEnt *ents, guint n, ZOpts *o)
{
  GByteArray *a = g_byte_array_new ();
  g_assert_cmpuint (n, <=, 8);
  for (guint i = 0; i < n; i++) {
    gsize nlen = strlen (ents[i].name);
    o->local_off[i] = a->len;
    put32 (a, 0x04034b50);
    put16 (a, 20);
    put16 (a, o->descriptor ? 8 : 0);
    put16 (a, ents[i].method);
    put16 (a, 0);
    put16 (a, 0);
    put32 (a, 0);                            /* crc: not checked */
    guint32 sz = o->descriptor ? 0 : o->zip64 ? 0xFFFFFFFFu : (guint32) ents[i].len;
    put32 (a, sz);
    put32 (a, sz);
    put16 (a, (guint) nlen);
    gsize xlen = o->zip64 ? 20 : 0;
    gsize pad = 0;
    if (o->align64) {
      gsize data_at = a->len + 2 + nlen + xlen + 4;
      pad = (64 - data_at % 64) % 64;
      xlen += 4 + pad;
    }
    put16 (a, (guint) xlen);
    g_byte_array_append (a, (const guint8 *) ents[i].name, (guint) nlen);
    if (o->zip64) {
      put16 (a, 1);
      put16 (a, 16);
      put64 (a, ents[i].len);
      put64 (a, ents[i].len);
    }
    if (o->align64) {
      put16 (a, 0x4246);
      put16 (a, (guint) pad);
      for (gsize k = 0; k < pad; k++)
        g_byte_array_append (a, (const guint8 *) "Z", 1);
    }
    g_byte_array_append (a, ents[i].data, (guint) ents[i].len);
    if (o->descriptor) {
      put32 (a, 0x08074b50);
      put32 (a, 0);
      put32 (a, (guint32) ents[i].len);
      put32 (a, (guint32) ents[i].len);
    }
  }
  gsize cd_off = a->len;
  for (guint i = 0; i < n; i++) {
    gsize nlen = strlen (ents[i].name);
    o->central_off[i] = a->len;
    put32 (a, 0x02014b50);
    put16 (a, 0x031e);
    put16 (a, 45);
    put16 (a, o->descriptor ? 8 : 0);
    put16 (a, ents[i].method);
    put16 (a, 0);
    put16 (a, 0);
    put32 (a, 0);
    put32 (a, o->zip64 ? 0xFFFFFFFFu : (guint32) ents[i].len);
    put32 (a, o->zip64 ? 0xFFFFFFFFu : (guint32) ents[i].len);
    put16 (a, (guint) nlen);
    put16 (a, o->zip64 ? 28 : 0);
    put16 (a, 0);
    put16 (a, 0);
    put16 (a, 0);
    put32 (a, 0);
    put32 (a, o->zip64 ? 0xFFFFFFFFu : (guint32) o->local_off[i]);
    g_byte_array_append (a, (const guint8 *) ents[i].name, (guint) nlen);
    if (o->zip64) {
      put16 (a, 1);
      put16 (a, 24);
      put64 (a, ents[i].len);
      put64 (a, ents[i].len);
      put64 (a, o->local_off[i]);
    }
  }
  gsize cd_size = a->len - cd_off;
  if (o->zip64) {
    o->eocd64_off = a->len;
    put32 (a, 0x06064b50);
    put64 (a, 44);
    put16 (a, 45);
    put16 (a, 45);
    put32 (a, 0);
    put32 (a, 0);
    put64 (a, n);
    put64 (a, n);
    put64 (a, cd_size);
    put64 (a, cd_off);
    put32 (a, 0x07064b50);
    put32 (a, 0);
    put64 (a, o->eocd64_off);
    put32 (a, 1);
  }
  o->eocd_off = a->len;
  put32 (a, 0x06054b50);
  put16 (a, 0);
  put16 (a, 0);
  put16 (a, o->zip64 ? 0xFFFF : n);
  put16 (a, o->zip64 ? 0xFFFF : n);
  put32 (a, o->zip64 ? 0xFFFFFFFFu : (guint32) cd_size);
  put32 (a, o->zip64 ? 0xFFFFFFFFu : (guint32) cd_off);
  put16 (a, 0);
  return a;
}

/* --- pickles --- */

static void
p_op (GByteArray *p, guint8 op)
{
  g_byte_array_append (p, &op, 1);
}

static void
p_str (GByteArray *p, const char *s)
{
  p_op (p, 'X');
  put32 (p, (guint32) strlen (s));
  g_byte_array_append (p, (const guint8 *) s, (guint) strlen (s));
}

static void
p_int (GByteArray *p, gint64 v)
{
  if (v >= 0 && v < 256) {
    p_op (p, 'K');
    p_op (p, (guint8) v);
  } else if (v >= G_MININT32 && v <= G_MAXINT32) {
    p_op (p, 'J');
    put32 (p, (guint32) v);
  } else {
    p_op (p, 0x8a);
    p_op (p, 8);
    put64 (p, (guint64) v);
  }
}

static void
p_global (GByteArray *p, const char *mod, const char *name)
{
  p_op (p, 'c');
  g_byte_array_append (p, (const guint8 *) mod, (guint) strlen (mod));
  p_op (p, '\n');
  g_byte_array_append (p, (const guint8 *) name, (guint) strlen (name));
  p_op (p, '\n');
}

static void
p_int_tuple (GByteArray *p, int n, const gint64 *v)
{
  p_op (p, '(');
  for (int i = 0; i < n; i++)
    p_int (p, v[i]);
  p_op (p, 't');
}

typedef struct {
  const char *key;
  const char *storage_type;   /* "FloatStorage" … */
  const char *storage_key;
  gint64 numel;
  gint64 offset;
  int ndim;
  gint64 shape[8];
  gint64 stride[8];           /* all 0: computed row-major */
} TSpec;

static void
p_tensor (GByteArray *p, const TSpec *t)
{
  gint64 stride[8];
  gboolean given = FALSE;
  for (int i = 0; i < t->ndim; i++)
    given |= t->stride[i] != 0;
  guint64 s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    stride[i] = given ? t->stride[i] : (gint64) s;
    s *= (guint64) t->shape[i];
  }
  p_global (p, "torch._utils", "_rebuild_tensor_v2");
  p_op (p, '(');
  p_op (p, '(');
  p_str (p, "storage");
  p_global (p, "torch", t->storage_type);
  p_str (p, t->storage_key);
  p_str (p, "cpu");
  p_int (p, t->numel);
  p_op (p, 't');
  p_op (p, 'Q');
  p_int (p, t->offset);
  p_int_tuple (p, t->ndim, t->shape);
  p_int_tuple (p, t->ndim, stride);
  p_op (p, 0x89);
  p_global (p, "collections", "OrderedDict");
  p_op (p, ')');
  p_op (p, 'R');
  p_op (p, 't');
  p_op (p, 'R');
}

/* A protocol-2 OrderedDict state dict of @n tensors. */
static GByteArray *
build_state_dict (const TSpec *ts, guint n)
{
  GByteArray *p = g_byte_array_new ();
  p_op (p, 0x80);
  p_op (p, 2);
  p_global (p, "collections", "OrderedDict");
  p_op (p, ')');
  p_op (p, 'R');
  p_op (p, '(');
  for (guint i = 0; i < n; i++) {
    p_str (p, ts[i].key);
    p_tensor (p, &ts[i]);
  }
  p_op (p, 'u');
  p_op (p, '.');
  return p;
}

static const float storage0[6] = { 1, 2, 3, 4, 5, 6 };
static const float storage1[3] = { -1, -2, -3 };

/* An archive "<prefix>data.pkl" + "<prefix>data/0" (6 floats) + "<prefix>data/1" (3 floats). */
static GByteArray *
build_archive (const char *prefix, GByteArray *pickle, ZOpts *o)
{
  g_autofree char *n0 = g_strconcat (prefix, "data.pkl", NULL);
  g_autofree char *n1 = g_strconcat (prefix, "data/0", NULL);
  g_autofree char *n2 = g_strconcat (prefix, "data/1", NULL);
  g_autofree char *n3 = g_strconcat (prefix, "version", NULL);
  ZEnt e[4] = {
    { n0, pickle->data, pickle->len, 0 },
    { n1, storage0, sizeof storage0, 0 },
    { n2, storage1, sizeof storage1, 0 },
    { n3, "3\n", 2, 0 },
  };
  return build_zip (e, 4, o);
}

static const TSpec good[] = {
  { "w", "FloatStorage", "0", 6, 0, 2, { 2, 3 } },
  { "b", "FloatStorage", "1", 3, 0, 1, { 3 } },
  { "tail", "FloatStorage", "0", 6, 4, 1, { 2 } },
};

static void
check_good (KinWeights *ws)
{
  g_assert_cmpuint (kin_weights_count (ws), ==, 3);
  const KinWeightEntry *w = kin_weights_lookup (ws, "w");
  g_assert_cmpint (w->ndim, ==, 2);
  g_assert_cmpint (w->shape[0], ==, 2);
  g_assert_cmpint (w->shape[1], ==, 3);
  g_assert_cmpint (w->dtype, ==, KIN_DTYPE_F32);
  g_assert_cmpmem (w->data, w->nbytes, storage0, sizeof storage0);
  const KinWeightEntry *b = kin_weights_lookup (ws, "b");
  g_assert_cmpmem (b->data, b->nbytes, storage1, sizeof storage1);
  const KinWeightEntry *t = kin_weights_lookup (ws, "tail");
  g_assert_cmpmem (t->data, t->nbytes, storage0 + 4, 2 * sizeof (float));
}

static void
expect_ok (const guint8 *data, gsize len)
{
  g_autoptr (KinWeights) ws = kin_weights_new ();
  g_autoptr (GError) error = NULL;
  gboolean ok = kin_pth_parse (ws, data, len, "crafted.pth", &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  check_good (ws);
}

static void
test_crafted_layouts (void)
{
  static const char *const prefixes[] = { "archive/", "my_model-v1/", "" };
  for (guint pi = 0; pi < G_N_ELEMENTS (prefixes); pi++)
    for (int zip64 = 0; zip64 < 2; zip64++)
      for (int desc = 0; desc < 2; desc++)
        for (int align = 0; align < 2; align++) {
          g_autoptr (GByteArray) pk = build_state_dict (good, G_N_ELEMENTS (good));
          ZOpts o = { .zip64 = zip64, .descriptor = desc, .align64 = align };
          g_autoptr (GByteArray) z = build_archive (prefixes[pi], pk, &o);
          expect_ok (z->data, z->len);
          /* Every truncation of these fails too. */
          for (gsize cut = 0; cut < z->len; cut += 7) {
            g_autofree guint8 *copy = g_memdup2 (z->data, cut);
            g_free (expect_fail (copy, cut));
          }
        }
}

/* Other pickle spellings of the same state dict. */
static void
test_crafted_pickle_variants (void)
{
  /* Plain dict, SETITEM one by one, MEMOIZE/BINGET, protocol 4 frame, _rebuild_tensor (v1),
   * _rebuild_parameter, NEWOBJ OrderedDict, LONG1 numel, BUILD with _metadata. */
  g_autoptr (GByteArray) p = g_byte_array_new ();
  p_op (p, 0x80);
  p_op (p, 4);
  p_op (p, 0x95);
  put64 (p, 0);
  p_global (p, "collections", "OrderedDict");
  p_op (p, ')');
  p_op (p, 0x81);                 /* NEWOBJ */
  p_op (p, 0x94);                 /* MEMOIZE → 0 */
  /* "w": _rebuild_parameter(_rebuild_tensor_v2(...), True, OrderedDict()) */
  p_str (p, "w");
  p_global (p, "torch._utils", "_rebuild_parameter");
  p_op (p, '(');
  p_tensor (p, &good[0]);
  p_op (p, 0x88);
  p_op (p, '}');
  p_op (p, 't');
  p_op (p, 'R');
  p_op (p, 's');
  /* "b": _rebuild_tensor(storage, 0, (3,), (1,)) with a LONG1 numel and STACK_GLOBAL */
  p_str (p, "b");
  p_op (p, 0x8c); p_op (p, 12); g_byte_array_append (p, (const guint8 *) "torch._utils", 12);
  p_op (p, 0x8c); p_op (p, 15); g_byte_array_append (p, (const guint8 *) "_rebuild_tensor", 15);
  p_op (p, 0x93);
  p_op (p, '(');
  p_op (p, '(');
  p_str (p, "storage");
  p_global (p, "torch", "FloatStorage");
  p_str (p, "1");
  p_str (p, "cpu");
  p_op (p, 0x8a); p_op (p, 2); p_op (p, 3); p_op (p, 0);   /* LONG1 3 */
  p_op (p, 't');
  p_op (p, 'Q');
  p_op (p, 'K'); p_op (p, 0);
  p_op (p, 'K'); p_op (p, 3); p_op (p, 0x85);
  p_op (p, 'K'); p_op (p, 1); p_op (p, 0x85);
  p_op (p, 't');
  p_op (p, 'R');
  p_op (p, 's');
  /* "tail" and a few non-tensor values in one SETITEMS */
  p_op (p, '(');
  p_str (p, "tail");
  p_tensor (p, &good[2]);
  p_str (p, "step");
  p_op (p, 'G'); put64 (p, 0);    /* BINFLOAT 0.0 */
  p_str (p, "meta");
  p_op (p, ']');
  p_op (p, '(');
  p_op (p, 'N');
  p_op (p, 0x89);
  p_op (p, 'M'); put16 (p, 300);
  p_op (p, 'e');
  p_op (p, 'u');
  /* BUILD with {'_metadata': {}} */
  p_op (p, '}');
  p_str (p, "_metadata");
  p_op (p, '}');
  p_op (p, 's');
  p_op (p, 'b');
  p_op (p, '.');
  ZOpts o = { 0 };
  g_autoptr (GByteArray) z = build_archive ("archive/", p, &o);
  expect_ok (z->data, z->len);
}

/* ============================================================================================
 * 3. Hostile input
 * ============================================================================================ */

static GByteArray *
archive_with_tensors (const TSpec *ts, guint n)
{
  g_autoptr (GByteArray) pk = build_state_dict (ts, n);
  ZOpts o = { 0 };
  return build_archive ("archive/", pk, &o);
}

static GByteArray *
archive_with_pickle (const void *pickle, gsize len)
{
  g_autoptr (GByteArray) pk = g_byte_array_new ();
  g_byte_array_append (pk, pickle, (guint) len);
  ZOpts o = { 0 };
  return build_archive ("archive/", pk, &o);
}

static void
test_bad_zip (void)
{
  g_autoptr (GByteArray) pk = build_state_dict (good, G_N_ELEMENTS (good));

  expect_fail_containing ((const guint8 *) "", 0, "too short");
  expect_fail_containing ((const guint8 *) "PK\x03\x04 not really a zip file at all....", 40,
                          "end-of-central-directory");

  for (int zip64 = 0; zip64 < 2; zip64++) {
    ZOpts o = { .zip64 = zip64 };
    g_autoptr (GByteArray) z = build_archive ("archive/", pk, &o);
    gsize cd_off_field = zip64 ? o.eocd64_off + 48 : o.eocd_off + 16;
    gsize cd_size_field = zip64 ? o.eocd64_off + 40 : o.eocd_off + 12;
    guint32 huge[] = { (guint32) z->len, (guint32) z->len + 100, 0x7FFFFFFF, 0xFFFFFFF0 };

    /* Central directory offset / size out of range. */
    for (guint i = 0; i < G_N_ELEMENTS (huge); i++) {
      g_autoptr (GByteArray) c = g_byte_array_new ();
      g_byte_array_append (c, z->data, z->len);
      set32 (c, cd_off_field, huge[i]);
      g_free (expect_fail (c->data, c->len));
      g_byte_array_set_size (c, 0);
      g_byte_array_append (c, z->data, z->len);
      set32 (c, cd_size_field, huge[i]);
      g_free (expect_fail (c->data, c->len));
    }
    if (zip64) {
      /* ZIP64 locator pointing nowhere / at garbage. */
      g_autoptr (GByteArray) c = g_byte_array_new ();
      g_byte_array_append (c, z->data, z->len);
      set32 (c, o.eocd_off - 20 + 8, 0xFFFFFF00);
      expect_fail_containing (c->data, c->len, "ZIP64");
      set32 (c, o.eocd_off - 20 + 8, 3);
      expect_fail_containing (c->data, c->len, "ZIP64");
      /* ZIP64 extra of the storage entry claims a huge size / offset. */
      g_byte_array_set_size (c, 0);
      g_byte_array_append (c, z->data, z->len);
      gsize extra = o.central_off[1] + 46 + strlen ("archive/data/0");
      set32 (c, extra + 4, 0x10000);                    /* size low word */
      set32 (c, extra + 12, 0x10000);                   /* compressed size */
      g_free (expect_fail (c->data, c->len));
      g_byte_array_set_size (c, 0);
      g_byte_array_append (c, z->data, z->len);
      set32 (c, extra + 20, (guint32) z->len - 10);     /* local header offset */
      g_free (expect_fail (c->data, c->len));
      /* ZIP64 extra field shorter than needed. */
      g_byte_array_set_size (c, 0);
      g_byte_array_append (c, z->data, z->len);
      c->data[extra + 2] = 8;
      g_free (expect_fail (c->data, c->len));
    } else {
      /* Entry count bigger than the directory can hold. */
      g_autoptr (GByteArray) c = g_byte_array_new ();
      g_byte_array_append (c, z->data, z->len);
      c->data[o.eocd_off + 8] = c->data[o.eocd_off + 10] = 200;
      g_free (expect_fail (c->data, c->len));
    }
  }

  /* Local header lying about its sizes (no data descriptor: both must agree). */
  {
    ZOpts o = { 0 };
    g_autoptr (GByteArray) z = build_archive ("archive/", pk, &o);
    g_autoptr (GByteArray) c = g_byte_array_new ();
    g_byte_array_append (c, z->data, z->len);
    set32 (c, o.local_off[1] + 18, 4);
    set32 (c, o.local_off[1] + 22, 4);
    expect_fail_containing (c->data, c->len, "local header");
    /* Central directory claiming more bytes than lie before it. */
    g_byte_array_set_size (c, 0);
    g_byte_array_append (c, z->data, z->len);
    set32 (c, o.central_off[2] + 20, 4096);
    set32 (c, o.central_off[2] + 24, 4096);
    set32 (c, o.local_off[2] + 18, 4096);
    set32 (c, o.local_off[2] + 22, 4096);
    g_free (expect_fail (c->data, c->len));
    /* Local header offset pointing into another entry's data. */
    g_byte_array_set_size (c, 0);
    g_byte_array_append (c, z->data, z->len);
    set32 (c, o.central_off[1] + 42, (guint32) o.local_off[1] + 8);
    expect_fail_containing (c->data, c->len, "local header");
    /* Local header naming another file. */
    g_byte_array_set_size (c, 0);
    g_byte_array_append (c, z->data, z->len);
    c->data[o.local_off[1] + 30 + 13] = '7';
    expect_fail_containing (c->data, c->len, "names another file");
    /* Name length in the central directory running past it. */
    g_byte_array_set_size (c, 0);
    g_byte_array_append (c, z->data, z->len);
    c->data[o.central_off[3] + 28] = 0xff;
    c->data[o.central_off[3] + 29] = 0xff;
    g_free (expect_fail (c->data, c->len));
    /* Encrypted flag. */
    g_byte_array_set_size (c, 0);
    g_byte_array_append (c, z->data, z->len);
    c->data[o.central_off[1] + 8] |= 1;
    expect_fail_containing (c->data, c->len, "encrypted");
  }

  /* Compressed data.pkl. */
  {
    g_autoptr (GByteArray) z = NULL;
    ZEnt e[2] = { { "archive/data.pkl", pk->data, pk->len, 8 },
                  { "archive/data/0", storage0, sizeof storage0, 0 } };
    ZOpts o = { 0 };
    z = build_zip (e, 2, &o);
    expect_fail_containing (z->data, z->len, "compressed");
  }
  /* No data.pkl; data.pkl nested two folders deep; duplicate names. */
  {
    ZEnt e[2] = { { "archive/other.pkl", pk->data, pk->len, 0 },
                  { "a/b/data.pkl", pk->data, pk->len, 0 } };
    ZOpts o = { 0 };
    g_autoptr (GByteArray) z = build_zip (e, 2, &o);
    expect_fail_containing (z->data, z->len, "data.pkl");
    ZEnt d[2] = { { "archive/data.pkl", pk->data, pk->len, 0 },
                  { "archive/data.pkl", pk->data, pk->len, 0 } };
    g_autoptr (GByteArray) z2 = build_zip (d, 2, &o);
    expect_fail_containing (z2->data, z2->len, "twice");
  }
  /* Big-endian byte order. */
  {
    ZEnt e[3] = { { "archive/data.pkl", pk->data, pk->len, 0 },
                  { "archive/data/0", storage0, sizeof storage0, 0 },
                  { "archive/byteorder", "big", 3, 0 } };
    ZOpts o = { 0 };
    g_autoptr (GByteArray) z = build_zip (e, 3, &o);
    expect_fail_containing (z->data, z->len, "big-endian");
  }
  /* A storage record that is missing. */
  {
    ZEnt e[2] = { { "archive/data.pkl", pk->data, pk->len, 0 },
                  { "archive/data/0", storage0, sizeof storage0, 0 } };
    ZOpts o = { 0 };
    g_autoptr (GByteArray) z = build_zip (e, 2, &o);
    expect_fail_containing (z->data, z->len, "archive/data/1");
  }
}

static void
test_bad_tensors (void)
{
  static const struct {
    TSpec t;
    const char *needle;
  } cases[] = {
    /* storage smaller than its record claims / than the shape needs */
    { { "x", "FloatStorage", "1", 4, 0, 1, { 4 } }, "holds 12 bytes" },
    { { "x", "FloatStorage", "0", 6, 0, 2, { 3, 3 } }, "does not fit" },
    { { "x", "FloatStorage", "0", 6, 5, 1, { 2 } }, "does not fit" },
    { { "x", "FloatStorage", "0", 6, 7, 1, { 0 } }, "does not fit" },
    { { "x", "DoubleStorage", "0", 6, 0, 1, { 6 } }, "holds 24 bytes" },
    /* absurd shapes */
    { { "x", "FloatStorage", "0", 6, 0, 3, { 1LL << 40, 1LL << 40, 1LL << 40 } }, "shape" },
    { { "x", "FloatStorage", "0", 6, 0, 2, { G_MAXINT64, 2 } }, "shape" },
    { { "x", "FloatStorage", "0", 6, 0, 2, { -1, 2 } }, "non-negative" },
    { { "x", "FloatStorage", "0", 6, 0, 7, { 1, 1, 1, 1, 1, 1, 6 } }, "dimensions" },
    { { "x", "FloatStorage", "0", 6, G_MAXINT64, 1, { 2 } }, "does not fit" },
    { { "x", "FloatStorage", "0", 6, -3, 1, { 2 } }, "offset" },
    { { "x", "FloatStorage", "0", G_MAXINT64, 0, 1, { 2 } }, "elements" },
    { { "x", "FloatStorage", "0", -1, 0, 1, { 2 } }, "persistent id" },
    /* strides: overflow, non-contiguous */
    { { "x", "FloatStorage", "0", 6, 0, 2, { 2, 3 }, { G_MAXINT64 / 2, 1 } }, "does not fit" },
    { { "x", "FloatStorage", "0", 6, 0, 2, { 3, 2 }, { 1, 3 } }, "x is not contiguous" },
    /* storage types */
    { { "x", "QInt8Storage", "0", 6, 0, 1, { 6 } }, "torch.QInt8Storage" },
    { { "x", "UntypedStorage", "0", 6, 0, 1, { 6 } }, "not supported" },
    /* storage keys */
    { { "x", "FloatStorage", "9", 6, 0, 1, { 6 } }, "archive/data/9" },
    { { "x", "FloatStorage", "", 6, 0, 1, { 6 } }, "storage key" },
    { { "x", "FloatStorage", "../0", 6, 0, 1, { 6 } }, "missing" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GByteArray) z = archive_with_tensors (&cases[i].t, 1);
    g_test_message ("case %u", i);
    expect_fail_containing (z->data, z->len, cases[i].needle);
  }
  /* A good tensor followed by a bad one: nothing is added. */
  TSpec two[2] = { good[0], { "y", "FloatStorage", "0", 6, 0, 1, { 7 } } };
  g_autoptr (GByteArray) z = archive_with_tensors (two, 2);
  expect_fail_containing (z->data, z->len, "does not fit");
  /* Same key twice. */
  TSpec dup[2] = { good[0], good[0] };
  g_autoptr (GByteArray) z2 = archive_with_tensors (dup, 2);
  expect_fail_containing (z2->data, z2->len, "twice");
}

static void
fail_pickle (const void *pickle, gsize len, const char *needle)
{
  g_autoptr (GByteArray) z = archive_with_pickle (pickle, len);
  if (needle)
    expect_fail_containing (z->data, z->len, needle);
  else
    g_free (expect_fail (z->data, z->len));
}

#define FAIL_PICKLE(lit, needle) fail_pickle (lit, sizeof (lit) - 1, needle)

static void
test_bad_pickles (void)
{
  /* Structure */
  FAIL_PICKLE ("", "without STOP");
  FAIL_PICKLE ("\x80\x02}", "without STOP");
  FAIL_PICKLE ("\x80\x02.", "underflow");
  FAIL_PICKLE ("\x80\x09}.", "protocol");
  FAIL_PICKLE ("\x80\x02]\x2e", "not hold a dict");
  FAIL_PICKLE ("\x80\x02}.", "no tensors");
  FAIL_PICKLE ("\x80\x02R.", "underflow");
  FAIL_PICKLE ("\x80\x02}(K\x01u.", "odd");
  FAIL_PICKLE ("\x80\x02}K\x01u.", "MARK");
  FAIL_PICKLE ("\x80\x02}(K\x01s.", "underflow");     /* SETITEM across a MARK */
  FAIL_PICKLE ("\x80\x02K\x01K\x02K\x03s.", "not a dict");
  FAIL_PICKLE ("\x80\x02K\x01K\x02" "a.", "not a list");
  FAIL_PICKLE ("\x80\x02(\x85.", "underflow");
  FAIL_PICKLE ("\x80\x02ibuiltins\nobject\n.", "opcode 0x69");
  FAIL_PICKLE ("\x80\x02P0\n.", "opcode");
  FAIL_PICKLE ("\x80\x02\x93.", "underflow");
  FAIL_PICKLE ("\x80\x02K\x01K\x02\x93.", "two strings");
  FAIL_PICKLE ("\x80\x02\x63torch\n", "newline");
  FAIL_PICKLE ("\x80\x02(K\x01" "d.", "odd");
  FAIL_PICKLE ("\x80\x02K\x01Q.", "persistent id");
  FAIL_PICKLE ("\x80\x02(X\x07\x00\x00\x00storageK\x01K\x02K\x03K\x04tQ.", "malformed");
  /* Memo */
  FAIL_PICKLE ("\x80\x02h\x05.", "memo index 5");
  FAIL_PICKLE ("\x80\x02j\xff\xff\xff\xff.", "memo");
  FAIL_PICKLE ("\x80\x02}r\xf0\xff\xff\xff.", "too large");
  FAIL_PICKLE ("\x80\x02}q\x03h\x02.", "memo index 2");
  FAIL_PICKLE ("\x80\x02q\x00.", "underflow");
  FAIL_PICKLE ("\x80\x02\x94.", "underflow");
  /* Oversized strings and ints */
  FAIL_PICKLE ("\x80\x02X\xff\xff\xff\xff" "abc.", "runs past");
  FAIL_PICKLE ("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f" "abc.", "runs past");
  FAIL_PICKLE ("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff" "abc.", "runs past");
  FAIL_PICKLE ("\x80\x02\x8c\x10" "abc.", "runs past");
  FAIL_PICKLE ("\x80\x02T\xff\xff\xff\xff" "abc.", "negative");
  FAIL_PICKLE ("\x80\x02\x8b\xff\xff\xff\x7f" "abc.", "runs past");
  FAIL_PICKLE ("\x80\x02\x8a\x40" "abc.", "runs past");
  FAIL_PICKLE ("\x80\x02J\x01", "truncated");
  FAIL_PICKLE ("\x80\x02G\x01\x02", "truncated");
  FAIL_PICKLE ("\x80\x02\x95\x01", "truncated");

  /* Deep nesting: MARKs, lists appended into lists, tuples of tuples, dicts in dicts. */
  {
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    for (int i = 0; i < 100000; i++)
      p_op (p, '(');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "MARK");
  }
  {
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    for (int i = 0; i < 100000; i++)
      p_op (p, ']');
    for (int i = 0; i < 99999; i++)
      p_op (p, 'a');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "nested");
  }
  {
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, ')');
    for (int i = 0; i < 100000; i++)
      p_op (p, 0x85);
    p_op (p, '.');
    fail_pickle (p->data, p->len, "nested");
  }
  {
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, '}');
    for (int i = 0; i < 100000; i++) {
      p_op (p, 'K'); p_op (p, 1);
      p_op (p, '}');
    }
    for (int i = 0; i < 100000; i++)
      p_op (p, 's');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "nested");
  }
  {
    /* A list appended to itself many times (a cycle). */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, ']'); p_op (p, 'q'); p_op (p, 0);
    for (int i = 0; i < 1000; i++) {
      p_op (p, 'h'); p_op (p, 0);
      p_op (p, 'a');
    }
    p_op (p, '.');
    fail_pickle (p->data, p->len, "nested");
  }
  {
    /* Stack growth: 2 million pushes. */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    for (int i = 0; i < 2000000; i++)
      p_op (p, 'N');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "stack");
  }
  {
    /* Object count: many empty dicts popped right away. */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    for (int i = 0; i < 1100000; i++) {
      p_op (p, '}');
      p_op (p, '0');
    }
    p_op (p, '.');
    fail_pickle (p->data, p->len, "objects");
  }
  {
    /* Element count: None appended to one list millions of times. */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, ']');
    for (int i = 0; i < 9000000; i++) {
      p_op (p, 'N');
      p_op (p, 'a');
    }
    p_op (p, '.');
    fail_pickle (p->data, p->len, "elements");
  }

  /* Tensor-level pickle errors */
  {
    /* _rebuild_tensor_v2 with a wrong argument count / non-storage argument */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, '}');
    p_str (p, "x");
    p_global (p, "torch._utils", "_rebuild_tensor_v2");
    p_op (p, '(');
    p_op (p, 'K'); p_op (p, 1);
    p_op (p, 't');
    p_op (p, 'R');
    p_op (p, 's');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "arguments");
    p->data[p->len - 6] = 'N';   /* two arguments: None, None */
    p->data[p->len - 5] = 'N';
    fail_pickle (p->data, p->len, "arguments");
  }
  {
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, '}');
    p_str (p, "x");
    p_global (p, "torch._utils", "_rebuild_tensor_v2");
    p_op (p, '(');
    for (int i = 0; i < 6; i++)
      p_op (p, 'N');
    p_op (p, 't');
    p_op (p, 'R');
    p_op (p, 's');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "not a storage");
  }
  {
    /* _rebuild_tensor_v3 / other _rebuild_* in the state dict: refused with the key */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, '}');
    p_str (p, "weird.weight");
    p_global (p, "torch._utils", "_rebuild_tensor_v3");
    p_op (p, ')');
    p_op (p, 'R');
    p_op (p, 's');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "weird.weight is stored with torch._utils._rebuild_tensor_v3");
  }
  {
    /* A tensor under a non-string key */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, '}');
    p_op (p, 'K'); p_op (p, 5);
    p_tensor (p, &good[0]);
    p_op (p, 's');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "not a string");
  }
  {
    /* A key that is not UTF-8 */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, '}');
    p_op (p, 0x8c); p_op (p, 2); p_op (p, 0xc3); p_op (p, 0x28);
    p_tensor (p, &good[0]);
    p_op (p, 's');
    p_op (p, '.');
    fail_pickle (p->data, p->len, "invalid tensor name");
  }
  {
    /* Unknown callables give opaque values: fine outside the state dict, skipped inside. */
    g_autoptr (GByteArray) p = g_byte_array_new ();
    p_op (p, 0x80); p_op (p, 2);
    p_op (p, '}');
    p_str (p, "w");
    p_tensor (p, &good[0]);
    p_op (p, 's');
    p_str (p, "obj");
    p_global (p, "os", "system");
    p_str (p, "rm -rf /");
    p_op (p, 0x85);
    p_op (p, 'R');
    p_op (p, '(');
    p_op (p, 'K'); p_op (p, 1);
    p_op (p, 'K'); p_op (p, 2);
    p_op (p, 'u');          /* SETITEMS on the opaque object: ignored */
    p_op (p, '}');
    p_op (p, 'b');          /* BUILD on it: ignored */
    p_op (p, 's');
    p_op (p, '.');
    g_autoptr (GByteArray) z = archive_with_pickle (p->data, p->len);
    g_autoptr (KinWeights) ws = kin_weights_new ();
    g_autoptr (GError) error = NULL;
    g_assert_true (kin_pth_parse (ws, z->data, z->len, "crafted.pth", &error));
    g_assert_no_error (error);
    g_assert_cmpuint (kin_weights_count (ws), ==, 1);
    g_assert_true (kin_weights_contains (ws, "w"));
  }
}

/* Every truncation of the pickle itself (inside a valid archive) fails cleanly. */
static void
test_truncated_pickle (void)
{
  g_autoptr (GByteArray) pk = build_state_dict (good, G_N_ELEMENTS (good));
  for (gsize cut = 0; cut < pk->len; cut++)
    fail_pickle (pk->data, cut, NULL);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  static const char *const fixtures[] = { "flat-f32.pth", "dtypes.pth", "nested.pth",
                                          "model-key.pth", "proto4.pth" };
  for (guint i = 0; i < G_N_ELEMENTS (fixtures); i++) {
    g_autofree char *name = g_strdup_printf ("/pth/fixture/%s", fixtures[i]);
    g_test_add_data_func (name, fixtures[i], test_fixture);
  }
  g_test_add_func ("/pth/fixture/details", test_fixture_details);
  g_test_add_func ("/pth/fixture/refused", test_fixture_refused);
  g_test_add_func ("/pth/fixture/truncated", test_fixture_truncated);
  g_test_add_func ("/pth/fixture/flipped", test_fixture_flipped);
  g_test_add_func ("/pth/crafted/layouts", test_crafted_layouts);
  g_test_add_func ("/pth/crafted/pickle-variants", test_crafted_pickle_variants);
  g_test_add_func ("/pth/bad/zip", test_bad_zip);
  g_test_add_func ("/pth/bad/tensors", test_bad_tensors);
  g_test_add_func ("/pth/bad/pickles", test_bad_pickles);
  g_test_add_func ("/pth/bad/truncated-pickle", test_truncated_pickle);
  return g_test_run ();
}
