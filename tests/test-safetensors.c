/* test-safetensors.c — the safetensors reader and writer, sharded indexes, folders, and the
 * weight-set API, on good files and on crafted bad ones. */
#include "kin-weights.h"
#include "kin-error.h"
#include <glib/gstdio.h>
#include <string.h>

static char *tmpdir;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

static void
write_sample (const char *path)
{
  float a[6] = { 1, 2, 3, 4, 5, 6 };
  uint16_t b[3] = { 0x3f80, 0x4000, 0xc040 }; /* bf16 1, 2, -3 */
  int64_t c[2] = { 7, -9 };
  const char *names[3] = { "layer.weight", "layer.bias", "ids" };
  KinDType dt[3] = { KIN_DTYPE_F32, KIN_DTYPE_BF16, KIN_DTYPE_I64 };
  int nd[3] = { 2, 1, 1 };
  int64_t s0[2] = { 2, 3 }, s1[1] = { 3 }, s2[1] = { 2 };
  const int64_t *shapes[3] = { s0, s1, s2 };
  const void *datas[3] = { a, b, c };
  g_autoptr (GHashTable) meta = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (meta, "format", "pt");
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_safetensors_write (path, 3, names, dt, nd, shapes, datas, meta, &error));
  g_assert_no_error (error);
}

static void
test_roundtrip (void)
{
  g_autofree char *p = tmp_path ("sample.safetensors");
  write_sample (p);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinWeights) ws = kin_weights_open (p, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kin_weights_count (ws), ==, 3);
  g_assert_cmpstr (kin_weights_nth (ws, 0)->name, ==, "layer.weight");
  int64_t want[2] = { 2, 3 };
  g_autoptr (KinTensor) w = kin_weights_get_f32 (ws, kin_backend_cpu (), "layer.weight", 2, want, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (((float *) w->data)[5], ==, 6.0f);
  int64_t bs[1] = { 3 };
  g_autoptr (KinTensor) b = kin_weights_get_f32 (ws, kin_backend_cpu (), "layer.bias", 1, bs, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (((float *) b->data)[2], ==, -3.0f);
  g_autoptr (KinTensor) bn = kin_weights_get_native (ws, kin_backend_cpu (), "layer.bias", 1, bs, &error);
  g_assert_cmpint (bn->dtype, ==, KIN_DTYPE_BF16);
  const KinWeightEntry *e = kin_weights_lookup (ws, "ids");
  g_assert_cmpint (e->dtype, ==, KIN_DTYPE_I64);
  g_assert_cmpint (((const int64_t *) e->data)[1], ==, -9);
  g_auto (GStrv) unused = kin_weights_unused (ws);
  g_assert_cmpuint (g_strv_length (unused), ==, 0);
}

static void
test_require_errors (void)
{
  g_autofree char *p = tmp_path ("sample.safetensors");
  write_sample (p);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinWeights) ws = kin_weights_open (p, &error);
  int64_t wrong[2] = { 3, 2 };
  g_assert_null (kin_weights_require (ws, "layer.weight", 2, wrong, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS);
  /* the message names the key, the file, the actual and the expected shape */
  g_assert_nonnull (strstr (error->message, "layer.weight"));
  g_assert_nonnull (strstr (error->message, "sample.safetensors"));
  g_assert_nonnull (strstr (error->message, "[2, 3]"));
  g_assert_nonnull (strstr (error->message, "[3, 2]"));
  g_clear_error (&error);
  g_assert_null (kin_weights_require (ws, "missing.key", 1, wrong, &error));
  g_assert_nonnull (strstr (error->message, "missing.key"));
  g_clear_error (&error);
  int64_t any[2] = { -1, 3 };
  g_assert_nonnull (kin_weights_require (ws, "layer.weight", 2, any, &error));
  g_auto (GStrv) unused = kin_weights_unused (ws);
  g_assert_cmpuint (g_strv_length (unused), ==, 2);
}

/* Builds a file from a header string and a data size. */
static GBytes *
craft (const char *header, size_t data_len)
{
  size_t n = strlen (header);
  guint8 *buf = g_malloc0 (8 + n + data_len);
  for (int i = 0; i < 8; i++)
    buf[i] = (guint8) ((uint64_t) n >> (8 * i));
  memcpy (buf + 8, header, n);
  return g_bytes_new_take (buf, 8 + n + data_len);
}

static void
expect_bad (GBytes *bytes, const char *what)
{
  g_autoptr (KinWeights) ws = kin_weights_new ();
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *d = g_bytes_get_data (bytes, &len);
  gboolean ok = kin_safetensors_parse (ws, d, len, "crafted.safetensors", &error);
  if (ok)
    g_error ("crafted file accepted: %s", what);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE);
  g_bytes_unref (bytes);
}

static void
test_bad_headers (void)
{
  const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  {
    g_autoptr (KinWeights) ws = kin_weights_new ();
    g_autoptr (GBytes) b = craft (good, 8);
    g_assert_true (kin_safetensors_parse (ws, g_bytes_get_data (b, NULL), g_bytes_get_size (b), "ok", NULL));
  }
  expect_bad (craft (good, 4), "data shorter than offsets");
  expect_bad (craft (good, 12), "trailing bytes");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "shape × dtype ≠ bytes");
  expect_bad (craft ("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "unknown dtype");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "overlap");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "gap");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8), "reversed");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}", 8), "absurd");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8), "negative dim");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8), "too many dims");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8), "no offsets");
  expect_bad (craft ("{\"a\":[1,2]}", 0), "entry not an object");
  expect_bad (craft ("[1,2,3]", 0), "not an object");
  expect_bad (craft ("{\"a\":", 0), "bad json");
  expect_bad (craft ("{\"__metadata__\":5}", 0), "bad metadata");
  expect_bad (craft ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8), "fractional dim");
  /* header length larger than the file */
  GBytes *b = craft (good, 8);
  gsize len;
  guint8 *d = g_bytes_unref_to_data (b, &len);
  d[0] = 0xff;
  d[1] = 0x0f;
  expect_bad (g_bytes_new_take (d, len), "header longer than file");
  /* truncated at every length */
  g_autoptr (GBytes) full = craft (good, 8);
  for (gsize cut = 0; cut < g_bytes_get_size (full); cut++)
    expect_bad (g_bytes_new (g_bytes_get_data (full, NULL), cut), "truncated");
}

static void
test_files_and_folders (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *missing = tmp_path ("nope.safetensors");
  g_assert_null (kin_weights_open (missing, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO);
  g_clear_error (&error);

  g_autofree char *dir = tmp_path ("model");
  g_mkdir_with_parents (dir, 0755);
  g_assert_null (kin_weights_open (dir, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE);
  g_clear_error (&error);
  g_autofree char *m = g_build_filename (dir, "model.safetensors", NULL);
  write_sample (m);
  g_autoptr (KinWeights) ws = kin_weights_open (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kin_weights_count (ws), ==, 3);

  /* garbage in a file named .safetensors */
  g_autofree char *junk = tmp_path ("junk.safetensors");
  g_file_set_contents (junk, "hello, this is not a tensor file", -1, NULL);
  g_assert_null (kin_weights_open (junk, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE);
}

static void
test_sharded_index (void)
{
  g_autofree char *dir = tmp_path ("sharded");
  g_mkdir_with_parents (dir, 0755);
  float a[2] = { 1, 2 }, b[3] = { 3, 4, 5 };
  int64_t sa[1] = { 2 }, sb[1] = { 3 };
  KinDType f32 = KIN_DTYPE_F32;
  int one = 1;
  const char *na[1] = { "x.a" }, *nb[1] = { "x.b" };
  const int64_t *pa[1] = { sa }, *pb[1] = { sb };
  const void *da[1] = { a }, *db[1] = { b };
  g_autofree char *s1 = g_build_filename (dir, "model-00001-of-00002.safetensors", NULL);
  g_autofree char *s2 = g_build_filename (dir, "model-00002-of-00002.safetensors", NULL);
  g_assert_true (kin_safetensors_write (s1, 1, na, &f32, &one, pa, da, NULL, NULL));
  g_assert_true (kin_safetensors_write (s2, 1, nb, &f32, &one, pb, db, NULL, NULL));
  g_autofree char *idx = g_build_filename (dir, "model.safetensors.index.json", NULL);
  g_file_set_contents (idx, "{\"metadata\":{},\"weight_map\":{\"x.a\":\"model-00001-of-00002.safetensors\","
                            "\"x.b\":\"model-00002-of-00002.safetensors\"}}", -1, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinWeights) ws = kin_weights_open (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kin_weights_count (ws), ==, 2);
  g_assert_cmpfloat (((const float *) kin_weights_lookup (ws, "x.b")->data)[2], ==, 5.0f);

  /* an index naming a tensor that no shard holds, and one escaping the folder */
  g_file_set_contents (idx, "{\"weight_map\":{\"x.a\":\"model-00001-of-00002.safetensors\",\"x.c\":"
                            "\"model-00001-of-00002.safetensors\"}}", -1, NULL);
  KinWeights *bad = kin_weights_open (idx, &error);
  g_assert_null (bad);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS);
  g_clear_error (&error);
  g_file_set_contents (idx, "{\"weight_map\":{\"x.a\":\"../etc/passwd\"}}", -1, NULL);
  g_assert_null (kin_weights_open (idx, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE);
}

static void
test_writer_errors (void)
{
  g_autoptr (GError) error = NULL;
  float a[1] = { 1 };
  int64_t s[1] = { 1 };
  KinDType dt = KIN_DTYPE_F32;
  int nd = 1;
  const char *n[1] = { "a" };
  const int64_t *sh[1] = { s };
  const void *d[1] = { a };
  g_assert_false (kin_safetensors_write ("/nonexistent-dir/x.safetensors", 1, n, &dt, &nd, sh, d, NULL, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("kin-test-st-XXXXXX", NULL);
  g_test_add_func ("/safetensors/roundtrip", test_roundtrip);
  g_test_add_func ("/safetensors/require-errors", test_require_errors);
  g_test_add_func ("/safetensors/bad-headers", test_bad_headers);
  g_test_add_func ("/safetensors/files-and-folders", test_files_and_folders);
  g_test_add_func ("/safetensors/sharded-index", test_sharded_index);
  g_test_add_func ("/safetensors/writer-errors", test_writer_errors);
  int rc = g_test_run ();
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  (void) !system (cmd);
  g_free (tmpdir);
  return rc;
}
