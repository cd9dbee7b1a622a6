/* test-tokenizer.c — unit tests of kin-tokenizer (SentencePiece unigram, tokenizer.json, T5
 * post-processing).  The caption cleaner has its own test-caption.c.
 *
 * Data: tests/data/golden/tokenizer.model (a 500-piece toy model, always present), the genuine T5
 * vocabulary in $KIN_SHARED_DIR/golden/t5-vocab/ (read in place; tests skip without it), and
 * Debian's `spm_encode` (tests skip without it; CI installs it). */
#include "kin-tokenizer.h"
#include "kin-protobuf.h"
#include "kin-error.h"
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <string.h>

#define TOY_MODEL KIN_TEST_DATADIR "/golden/tokenizer.model"

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                     */

static char *
shared_dir (void)
{
  const char *env = g_getenv ("KIN_SHARED_DIR");
  if (env != NULL && *env != '\0')
    return g_strdup (env);
  return g_build_filename (KIN_TEST_DATADIR, "..", "..", "..", "shared", NULL);
}

/* $KIN_SHARED_DIR/golden/t5-vocab/NAME, or NULL (and the test skipped) when absent. */
static char *
t5_vocab_file (const char *name)
{
  g_autofree char *dir = shared_dir ();
  char *p = g_build_filename (dir, "golden", "t5-vocab", name, NULL);
  if (!g_file_test (p, G_FILE_TEST_IS_REGULAR)) {
    g_autofree char *msg = g_strdup_printf ("%s is absent", p);
    g_test_skip (msg);
    g_free (p);
    return NULL;
  }
  return p;
}

static KinTokenizer *
load_ok (const char *path)
{
  g_autoptr (GError) error = NULL;
  KinTokenizer *tok = kin_tokenizer_new_from_file (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (tok);
  return tok;
}

static char *
ids_to_string (const int64_t *ids, gsize n)
{
  GString *s = g_string_new (NULL);
  for (gsize i = 0; i < n; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? " " : "", ids[i]);
  return g_string_free (s, FALSE);
}

static char *
encode_string (const KinTokenizer *tok, const char *text)
{
  gsize n = 0;
  g_autofree int64_t *ids = kin_tokenizer_encode (tok, text, &n);
  return ids_to_string (ids, n);
}

static char *
json_ids_string (JsonObject *o, const char *name)
{
  JsonArray *a = json_object_get_array_member (o, name);
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < json_array_get_length (a); i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? " " : "",
                            json_array_get_int_element (a, i));
  return g_string_free (s, FALSE);
}

static JsonParser *
load_json (const char *path)
{
  g_autoptr (GError) error = NULL;
  JsonParser *p = json_parser_new ();
  json_parser_load_from_file (p, path, &error);
  g_assert_no_error (error);
  return p;
}

/* ------------------------------------------------------------------------------------------ */
/* The toy model and the API                                                                   */

static void
test_toy_basics (void)
{
  g_autoptr (KinTokenizer) tok = load_ok (TOY_MODEL);
  g_assert_cmpint (kin_tokenizer_get_format (tok), ==, KIN_TOKENIZER_FORMAT_MODEL);
  g_assert_cmpuint (kin_tokenizer_get_vocab_size (tok), ==, 500);
  g_assert_cmpint (kin_tokenizer_get_unk_id (tok), ==, 2);
  g_assert_cmpint (kin_tokenizer_get_eos_id (tok), ==, 1);
  g_assert_cmpint (kin_tokenizer_get_pad_id (tok), ==, 0);
  g_assert_cmpint (kin_tokenizer_get_bos_id (tok), ==, -1);
  g_assert_cmpstr (kin_tokenizer_id_to_piece (tok, 0), ==, "<pad>");
  g_assert_cmpstr (kin_tokenizer_id_to_piece (tok, 1), ==, "</s>");
  g_assert_cmpstr (kin_tokenizer_id_to_piece (tok, 2), ==, "<unk>");
  g_assert_null (kin_tokenizer_id_to_piece (tok, 500));
  g_assert_null (kin_tokenizer_id_to_piece (tok, -1));
  g_assert_cmpint (kin_tokenizer_piece_to_id (tok, "</s>"), ==, 1);
  g_assert_cmpint (kin_tokenizer_piece_to_id (tok, "no such piece"), ==, -1);
  g_assert_cmpfloat (kin_tokenizer_get_score (tok, 0), ==, 0.0);
  g_assert_true (kin_tokenizer_get_score (tok, 3) < 0.0);

  /* Golden case #8: "Hello, World!". */
  g_autofree char *ids = encode_string (tok, "Hello, World!");
  g_assert_cmpstr (ids, ==, "254 389 7 3 490 52 265 87");
  g_autofree char *norm = kin_tokenizer_normalize (tok, "  Hello,\t World!  ");
  g_assert_cmpstr (norm, ==, "\xe2\x96\x81Hello,\xe2\x96\x81World!");
  g_auto (GStrv) pieces = kin_tokenizer_encode_pieces (tok, "Greek \xce\xb1\xce\xb2");
  g_assert_cmpstr (pieces[g_strv_length (pieces) - 1], ==, "\xce\xb1\xce\xb2");  /* fused unk */

  gsize n = 99;
  g_autofree int64_t *none = kin_tokenizer_encode (tok, NULL, &n);
  g_assert_nonnull (none);
  g_assert_cmpuint (n, ==, 0);
}

static void
test_padded (void)
{
  g_autoptr (KinTokenizer) tok = load_ok (TOY_MODEL);
  int64_t ids[8], mask[8];
  /* Empty text: [eos, pad…], mask [1, 0…]. */
  g_assert_cmpuint (kin_tokenizer_encode_padded (tok, "", 8, ids, mask), ==, 1);
  g_assert_cmpint (ids[0], ==, 1);
  g_assert_cmpint (mask[0], ==, 1);
  for (int i = 1; i < 8; i++) {
    g_assert_cmpint (ids[i], ==, 0);
    g_assert_cmpint (mask[i], ==, 0);
  }
  /* Truncation keeps the EOS in the last slot. */
  gsize n = 0;
  g_autofree int64_t *all = kin_tokenizer_encode (tok, "Hello, World!", &n);
  g_assert_cmpuint (n, ==, 8);
  g_assert_cmpuint (kin_tokenizer_encode_padded (tok, "Hello, World!", 5, ids, mask), ==, 5);
  g_assert_cmpmem (ids, 4 * sizeof (int64_t), all, 4 * sizeof (int64_t));
  g_assert_cmpint (ids[4], ==, 1);
  for (int i = 0; i < 5; i++)
    g_assert_cmpint (mask[i], ==, 1);
  /* Exactly full: 8 ids + eos in 9 → with max 9 nothing is dropped. */
  int64_t ids9[9], mask9[9];
  g_assert_cmpuint (kin_tokenizer_encode_padded (tok, "Hello, World!", 9, ids9, mask9), ==, 9);
  g_assert_cmpmem (ids9, 8 * sizeof (int64_t), all, 8 * sizeof (int64_t));
  g_assert_cmpint (ids9[8], ==, 1);
  /* max_len 1: only the EOS; 0: nothing, and a NULL mask is allowed. */
  g_assert_cmpuint (kin_tokenizer_encode_padded (tok, "Hello", 1, ids, NULL), ==, 1);
  g_assert_cmpint (ids[0], ==, 1);
  g_assert_cmpuint (kin_tokenizer_encode_padded (tok, "Hello", 0, NULL, NULL), ==, 0);
}

static void
test_folder_and_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KinTokenizer) none = kin_tokenizer_new_from_file ("/nonexistent/spiece.model", &error);
  g_assert_null (none);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO);
  g_clear_error (&error);

  /* A folder holding tokenizer.model is found. */
  g_autofree char *dir = g_dir_make_tmp ("kin-tok-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (TOY_MODEL, &data, &len, NULL));
  g_autofree char *file = g_build_filename (dir, "tokenizer.model", NULL);
  g_assert_true (g_file_set_contents (file, data, (gssize) len, NULL));
  g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_file (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kin_tokenizer_get_vocab_size (tok), ==, 500);
  g_unlink (file);
  g_autoptr (KinTokenizer) empty = kin_tokenizer_new_from_file (dir, &error);
  g_assert_null (empty);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO);
  g_rmdir (dir);
}

/* ------------------------------------------------------------------------------------------ */
/* The genuine T5 vocabulary: 60 cases recorded with sentencepiece 0.1.97                      */

static void
test_t5_vocab (void)
{
  g_autofree char *model = t5_vocab_file ("spiece.model");
  g_autofree char *cases_path = t5_vocab_file ("cases.json");
  if (model == NULL || cases_path == NULL)
    return;
  g_autoptr (KinTokenizer) tok = load_ok (model);
  g_assert_cmpuint (kin_tokenizer_get_vocab_size (tok), ==, 32000);
  g_autoptr (JsonParser) parser = load_json (cases_path);
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  gsize max_len = (gsize) json_object_get_int_member (root, "max_length");
  JsonArray *cases = json_object_get_array_member (root, "cases");
  g_assert_cmpuint (json_array_get_length (cases), ==, 60);
  guint matched = 0;
  for (guint i = 0; i < json_array_get_length (cases); i++) {
    JsonObject *c = json_array_get_object_element (cases, i);
    const char *text = json_object_get_string_member (c, "text");
    g_autofree char *got = encode_string (tok, text);
    g_autofree char *want = json_ids_string (c, "ids");
    if (g_strcmp0 (got, want) != 0)
      g_test_message ("case %u (%s): got %s, want %s", i,
                      json_object_get_string_member (c, "category"), got, want);
    g_assert_cmpstr (got, ==, want);

    /* Pieces, unknowns as their surface text. */
    g_auto (GStrv) pieces = kin_tokenizer_encode_pieces (tok, text);
    JsonArray *want_pieces = json_object_get_array_member (c, "pieces");
    g_assert_cmpuint (g_strv_length (pieces), ==, json_array_get_length (want_pieces));
    for (guint k = 0; pieces[k] != NULL; k++)
      g_assert_cmpstr (pieces[k], ==, json_array_get_string_element (want_pieces, k));

    g_autofree int64_t *ids = g_new (int64_t, max_len);
    g_autofree int64_t *mask = g_new (int64_t, max_len);
    kin_tokenizer_encode_padded (tok, text, max_len, ids, mask);
    g_autofree char *got_in = ids_to_string (ids, max_len);
    g_autofree char *got_mask = ids_to_string (mask, max_len);
    g_autofree char *want_in = json_ids_string (c, "input_ids");
    g_autofree char *want_mask = json_ids_string (c, "attention_mask");
    g_assert_cmpstr (got_in, ==, want_in);
    g_assert_cmpstr (got_mask, ==, want_mask);
    matched++;
  }
  g_test_message ("t5-vocab: %u of 60 cases match exactly", matched);
  g_assert_cmpuint (matched, ==, 60);
}

/* ------------------------------------------------------------------------------------------ */
/* Against Debian's spm_encode on a text of our own                                            */

static const char *const corpus[] = {
  "A golden retriever bounds across a sunlit meadow, chasing a bright red frisbee.",
  "The camera pans slowly from left to right; fog rolls over the hills at 6:45 a.m.",
  "Two astronauts float inside the International Space Station (ISS), laughing.",
  "Rain streaks down the window of a Tokyo café — neon signs blur into pink & blue.",
  "\"Don't move,\" she whispered. 'It's watching us...' The owl blinked twice!",
  "Prices: $19.99, \xe2\x82\xac" "5,00, \xc2\xa3" "12.50, \xc2\xa5" "1,000 — 50% off until 2024-12-31!",
  "Version 3.14.159-rc2 shipped on 07/04/2023 at 23:59:59 UTC+02:00 (build #4512).",
  "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 10000 123456789 3.5e-7 -42 +17 1/2 3/4",
  "Ordinals 1st 2nd 3rd 4th 21st 22nd 101st; Roman numerals XII, MCMXCIV, \xe2\x85\xab.",
  "https://example.com/path/to/video.mp4?query=cats&sort=desc#frame-120 and ftp://a.b/c",
  "E-mail me at someone.special+tag@example.co.uk or call +1 (555) 010-9999 ext. 42.",
  "ALL CAPS SENTENCE WITH SHOUTING AND NUMBERS 4K 8K 1080P HDR10+",
  "camelCaseIdentifier snake_case_identifier kebab-case-identifier SCREAMING_SNAKE",
  "iPhone, eBay, McDonald's, O'Reilly, D'Artagnan, rock 'n' roll, the '90s.",
  "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e, na\xc3\xafve r\xc3\xa9sum\xc3\xa9, pi\xc3\xb1" "ata, Z\xc3\xbcrich Stra\xc3\x9f" "e.",
  "Combining: e\xcc\x81 a\xcc\x80 o\xcc\x88 n\xcc\x83 vs \xc3\xa9 \xc3\xa0 \xc3\xb6 \xc3\xb1; Hangul jamo \xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab.",
  "Ligatures \xef\xac\x81sh \xef\xac\x82ow \xef\xac\x80" "ort; superscripts x\xc2\xb2 y\xc2\xb3 z\xe2\x81\xb4; fractions \xc2\xbd \xc2\xbc \xe2\x85\x93.",
  "Circled \xe2\x91\xa0\xe2\x91\xa1\xe2\x91\xa2, parenthesised \xe2\x91\xb4, squared \xe3\x8e\x8f \xe3\x8f\x84, full stop \xef\xbc\x8e ideographic \xe3\x80\x82",
  "\xef\xbc\xa6\xef\xbd\x95\xef\xbd\x8c\xef\xbd\x8c\xef\xbd\x97\xef\xbd\x89\xef\xbd\x84\xef\xbd\x94\xef\xbd\x88 \xef\xbc\x91\xef\xbc\x92\xef\xbc\x93 and halfwidth \xef\xbe\x8a\xef\xbe\x9d\xef\xbd\xb6\xef\xbd\xb8 katakana.",
  "Smart \xe2\x80\x9cquotes\xe2\x80\x9d, \xe2\x80\x98single\xe2\x80\x99, \xc2\xabguillemets\xc2\xbb, \xe2\x80\x9elow\xe2\x80\x9c, dashes \xe2\x80\x93 \xe2\x80\x94 \xe2\x80\x95, ellipsis\xe2\x80\xa6",
  "Symbols: # @ & * ~ | \\ / < > { } [ ] ( ) ^ % $ \xc2\xa7 \xc2\xb6 \xe2\x80\xa0 \xe2\x80\xa1 \xe2\x80\xa2 \xc2\xb0 \xc2\xb1 \xc3\x97 \xc3\xb7 \xe2\x89\xa0 \xe2\x89\xa4 \xe2\x89\xa5 \xe2\x88\x9e \xe2\x84\xa2 \xc2\xae \xc2\xa9",
  "Emoji: \xf0\x9f\x90\xb1 \xf0\x9f\x8c\x85 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 \xe2\x9d\xa4\xef\xb8\x8f \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xf0\x9f\x87\xaf\xf0\x9f\x87\xb5 end.",
  "\xe4\xb8\x80\xe5\x8f\xaa\xe7\x86\x8a\xe7\x8c\xab\xe5\x9c\xa8\xe7\xab\xb9\xe6\x9e\x97\xe9\x87\x8c\xe5\x90\x83\xe7\xab\xb9\xe5\xad\x90\xe3\x80\x82 \xe7\x8c\xab\xe3\x81\x8c\xe7\xaa\x93\xe8\xbe\xba\xe3\x81\xa7\xe7\x9c\xa0\xe3\x81\xa3\xe3\x81\xa6\xe3\x81\x84\xe3\x81\xbe\xe3\x81\x99\xe3\x80\x82 \xec\x84\x9c\xec\x9a\xb8\xec\x9d\x98 \xeb\xb0\xa4\xea\xb1\xb0\xeb\xa6\xac",
  "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80, \xce\x93\xce\xb5\xce\xb9\xce\xac \xcf\x83\xce\xbf\xcf\x85 \xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5, \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7, \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87, \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
  "\tTabs\tbetween\twords\tand a trailing tab\t",
  "   Leading spaces, inner      runs   of spaces, and trailing spaces   ",
  "Carriage\rreturn and form\x0c" "feed and vertical\x0btab and bell\x07 and escape\x1b[0m.",
  "No-break\xc2\xa0space, thin\xe2\x80\x89space, ideographic\xe3\x80\x80space, zero\xe2\x80\x8bwidth, joiner\xe2\x80\x8d, BOM\xef\xbb\xbf, soft\xc2\xad" "hyphen.",
  "Line\xe2\x80\xa8separator and paragraph\xe2\x80\xa9separator, next-line\xc2\x85" "char, ogham\xe1\x9a\x80space.",
  "Literal meta \xe2\x96\x81 symbol \xe2\x96\x81\xe2\x96\x81 twice, and <pad> </s> <unk> <extra_id_0> as text.",
  "Replacement \xef\xbf\xbd char, private use \xee\x80\x80, noncharacter \xef\xbf\xbe, astral \xf0\x9d\x90\x80\xf0\x9d\x90\x81 math bold.",
  "Invalid UTF-8: \xff\xfe bytes, a lone \x80 continuation, a truncated \xe2\x96 sequence, overlong \xc0\xaf, surrogate \xed\xa0\x80 end.",
  "zzz :zzz zzzz zzzzzzzzzzzzzzzzzzzzzzzzz aaaaaaaaaaaaaaaa ........ !!!!!! ?!?!?! ------ ______",
  "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
  "a serene night scene in a forested area. the video is a time-lapse, capturing the transition from twilight to the full dark of night.",
  "Aerial view of a winding river cutting through a dense green forest at dawn, time-lapse, 8K, cinematic lighting, shallow depth of field.",
  "Slow-motion shot of a glass of water being knocked over on a wooden table; droplets scatter in every direction, catching the light.",
  "A cozy library with tall wooden shelves, a crackling fireplace and a sleeping tabby cat curled up on a velvet armchair.",
  "",
  " ",
  "x",
  "\xe2\x96\x81",
};

/* Runs spm_encode over @lines (one per line) and returns its output lines; NULL (test skipped)
 * when spm_encode is not installed. */
static GStrv
spm_encode_lines (const char *model, const char *const *lines, guint n)
{
  g_autofree char *spm = g_find_program_in_path ("spm_encode");
  if (spm == NULL) {
    g_test_skip ("spm_encode is not installed (Debian package sentencepiece)");
    return NULL;
  }
  g_autoptr (GError) error = NULL;
  g_autofree char *input = NULL;
  int fd = g_file_open_tmp ("kin-spm-XXXXXX.txt", &input, &error);
  g_assert_no_error (error);
  GString *text = g_string_new (NULL);
  for (guint i = 0; i < n; i++) {
    g_string_append (text, lines[i]);
    g_string_append_c (text, '\n');
  }
  g_assert_true (g_file_set_contents (input, text->str, (gssize) text->len, NULL));
  g_string_free (text, TRUE);
  g_close (fd, NULL);
  g_autofree char *model_arg = g_strdup_printf ("--model=%s", model);
  const char *argv[] = { spm, model_arg, "--output_format=id", input, NULL };
  g_autofree char *out = NULL;
  int status = 0;
  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, NULL, &status,
                &error);
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  g_unlink (input);
  GStrv result = g_strsplit (out, "\n", -1);
  g_assert_cmpuint (g_strv_length (result), >=, n);
  return result;
}

static void
compare_with_spm (const char *model, const char *const *lines, guint n)
{
  g_auto (GStrv) expected = spm_encode_lines (model, lines, n);
  if (expected == NULL)
    return;
  g_autoptr (KinTokenizer) tok = load_ok (model);
  guint matched = 0;
  for (guint i = 0; i < n; i++) {
    g_autofree char *got = encode_string (tok, lines[i]);
    if (g_strcmp0 (got, expected[i]) != 0)
      g_test_message ("line %u: got %s\n  spm_encode %s", i, got, expected[i]);
    else
      matched++;
  }
  g_test_message ("%s: %u of %u lines match spm_encode", model, matched, n);
  g_assert_cmpuint (matched, ==, n);
}

/* The corpus plus a long line (~30 KB: every corpus line joined, then 8 KB without spaces). */
static GPtrArray *
corpus_lines (void)
{
  GPtrArray *lines = g_ptr_array_new_with_free_func (g_free);
  GString *joined = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (corpus); i++) {
    g_ptr_array_add (lines, g_strdup (corpus[i]));
    g_string_append (joined, corpus[i]);
    g_string_append_c (joined, ' ');
  }
  for (guint i = 0; i < 8192; i++)
    g_string_append_c (joined, "abcdefghijklmnopqrstuvwxyz0123456789.,"[(i * 7 + i / 13) % 38]);
  g_ptr_array_add (lines, g_string_free (joined, FALSE));
  return lines;
}

static void
test_spm_encode_toy (void)
{
  g_autoptr (GPtrArray) lines = corpus_lines ();
  compare_with_spm (TOY_MODEL, (const char *const *) lines->pdata, lines->len);
}

static void
test_spm_encode_t5 (void)
{
  g_autofree char *model = t5_vocab_file ("spiece.model");
  if (model == NULL)
    return;
  g_autoptr (GPtrArray) lines = corpus_lines ();
  compare_with_spm (model, (const char *const *) lines->pdata, lines->len);
}

/* Models trained here with spm_train exercise what the T5 vocabulary does not: user-defined
 * pieces, byte fallback, control symbols, other normalisation rules, no dummy prefix, whitespace
 * kept, whitespace as suffix. */
static void
test_spm_trained (void)
{
  g_autofree char *train = g_find_program_in_path ("spm_train");
  g_autofree char *encode = g_find_program_in_path ("spm_encode");
  if (train == NULL || encode == NULL) {
    g_test_skip ("spm_train / spm_encode are not installed (Debian package sentencepiece)");
    return;
  }
  static const char *const configs[][2] = {
    { "ud", "--user_defined_symbols=<sep>,foo,\xe2\x96\x81" "bar --byte_fallback=true "
            "--normalization_rule_name=identity --remove_extra_whitespaces=false "
            "--add_dummy_prefix=false --treat_whitespace_as_suffix=true" },
    { "cf", "--user_defined_symbols=xyz,qq --normalization_rule_name=nfkc_cf --split_digits=true" },
    { "ctl", "--control_symbols=<c1> --normalization_rule_name=nmt_nfkc_cf --byte_fallback=true" },
  };
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("kin-spm-train-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *input = g_build_filename (dir, "corpus.txt", NULL);
  g_autoptr (GPtrArray) lines = corpus_lines ();
  g_autofree char *text = g_strjoinv ("\n", (char **) (g_ptr_array_add (lines, NULL), lines->pdata));
  g_ptr_array_remove_index (lines, lines->len - 1);
  g_assert_true (g_file_set_contents (input, text, -1, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++) {
    g_autofree char *prefix = g_build_filename (dir, configs[i][0], NULL);
    g_autofree char *cmd = g_strdup_printf (
        "%s --input=%s --model_prefix=%s --model_type=unigram --vocab_size=700 "
        "--character_coverage=0.98 --hard_vocab_limit=false --num_threads=1 --random_seed=7 %s",
        train, input, prefix, configs[i][1]);
    g_auto (GStrv) argv = NULL;
    g_assert_true (g_shell_parse_argv (cmd, NULL, &argv, NULL));
    int status = 0;
    g_autofree char *log = NULL;
    g_spawn_sync (NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &log, &status,
                  &error);
    g_assert_no_error (error);
    if (!g_spawn_check_wait_status (status, NULL))
      g_test_message ("spm_train failed:\n%s", log);
    g_assert_true (g_spawn_check_wait_status (status, NULL));
    g_autofree char *model = g_strconcat (prefix, ".model", NULL);
    compare_with_spm (model, (const char *const *) lines->pdata, lines->len);
    g_autofree char *vocab = g_strconcat (prefix, ".vocab", NULL);
    g_unlink (model);
    g_unlink (vocab);
  }
  g_unlink (input);
  g_rmdir (dir);
}

/* ------------------------------------------------------------------------------------------ */
/* Invalid UTF-8 and long text                                                                 */

static void
test_invalid_utf8 (void)
{
  g_autoptr (KinTokenizer) tok = load_ok (TOY_MODEL);
  /* Every malformed byte becomes U+FFFD (SentencePiece's rule), which is unknown here. */
  g_autofree char *norm = kin_tokenizer_normalize (tok, "a\xff\xfe" "b");
  g_assert_cmpstr (norm, ==, "\xe2\x96\x81" "a\xef\xbf\xbd\xef\xbf\xbd" "b");
  g_autofree char *ids = encode_string (tok, "\xc0\xaf\xed\xa0\x80");
  g_autofree char *want = g_strdup_printf ("3 %d", kin_tokenizer_get_unk_id (tok));
  g_assert_cmpstr (ids, ==, want);
}

static void
test_long_text (void)
{
  g_autoptr (KinTokenizer) tok = load_ok (TOY_MODEL);
  /* 1 MB without a space, and 1 MB of unknown characters: linear time, one fused <unk>. */
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < (1u << 20); i++)
    g_string_append_c (s, "etaoinshrdlu"[i % 12]);
  g_autoptr (GTimer) timer = g_timer_new ();
  gsize n = 0;
  g_autofree int64_t *ids = kin_tokenizer_encode (tok, s->str, &n);
  g_assert_nonnull (ids);
  g_assert_cmpuint (n, >, 1000);
  g_string_truncate (s, 0);
  for (guint i = 0; i < (1u << 18); i++)
    g_string_append (s, "\xe9\xbe\x98");  /* 龘, not in the toy vocabulary */
  g_autofree int64_t *unk = kin_tokenizer_encode (tok, s->str, &n);
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpint (unk[1], ==, kin_tokenizer_get_unk_id (tok));
  g_test_message ("2 MB encoded in %.2f s", g_timer_elapsed (timer, NULL));
  g_assert_cmpfloat (g_timer_elapsed (timer, NULL), <, 30.0);
  g_string_free (s, TRUE);
}

/* ------------------------------------------------------------------------------------------ */
/* tokenizer.json: built from a .model the way transformers converts T5's spiece.model         */

typedef struct {
  GPtrArray *pieces;   /* char * */
  GArray *scores;      /* float */
  GArray *types;       /* gint32 */
  GBytes *charsmap;
} ModelDump;

static void
model_dump_clear (ModelDump *d)
{
  g_ptr_array_unref (d->pieces);
  g_array_unref (d->scores);
  g_array_unref (d->types);
  g_bytes_unref (d->charsmap);
}

static void
dump_model (const char *path, ModelDump *d)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  d->pieces = g_ptr_array_new_with_free_func (g_free);
  d->scores = g_array_new (FALSE, FALSE, sizeof (float));
  d->types = g_array_new (FALSE, FALSE, sizeof (gint32));
  d->charsmap = NULL;
  KinPbReader r, sub;
  KinPbField f, g;
  g_autoptr (GError) error = NULL;
  kin_pb_reader_init (&r, data, len);
  while (kin_pb_reader_next (&r, &f, &error)) {
    kin_pb_reader_init_sub (&sub, &f);
    if (f.number == 1) {
      char *piece = NULL;
      float score = 0;
      gint32 type = 1;
      while (kin_pb_reader_next (&sub, &g, &error)) {
        if (g.number == 1)
          piece = g_strndup ((const char *) g.data, g.len);
        else if (g.number == 2)
          score = kin_pb_field_float (&g);
        else if (g.number == 3)
          type = kin_pb_field_int32 (&g);
      }
      g_ptr_array_add (d->pieces, piece);
      g_array_append_val (d->scores, score);
      g_array_append_val (d->types, type);
    } else if (f.number == 3) {
      while (kin_pb_reader_next (&sub, &g, &error))
        if (g.number == 2)
          d->charsmap = g_bytes_new (g.data, g.len);
    }
    g_assert_no_error (error);
  }
  g_assert_no_error (error);
  g_assert_nonnull (d->charsmap);
}

static void
add_token (JsonBuilder *b, int id, const char *content)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_int_value (b, id);
  json_builder_set_member_name (b, "content");
  json_builder_add_string_value (b, content);
  const char *flags[] = { "single_word", "lstrip", "rstrip", "normalized" };
  for (guint i = 0; i < G_N_ELEMENTS (flags); i++) {
    json_builder_set_member_name (b, flags[i]);
    json_builder_add_boolean_value (b, FALSE);
  }
  json_builder_set_member_name (b, "special");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_end_object (b);
}

static void
add_normalizers (JsonBuilder *b, const ModelDump *d, gboolean legacy_file)
{
  gsize len = 0;
  const guint8 *cm = g_bytes_get_data (d->charsmap, &len);
  g_autofree char *b64 = g_base64_encode (cm, len);
  json_builder_set_member_name (b, "normalizer");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "Sequence");
  json_builder_set_member_name (b, "normalizers");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "Precompiled");
  json_builder_set_member_name (b, "precompiled_charsmap");
  json_builder_add_string_value (b, b64);
  json_builder_end_object (b);
  if (!legacy_file) {
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "type");
    json_builder_add_string_value (b, "Strip");
    json_builder_set_member_name (b, "strip_left");
    json_builder_add_boolean_value (b, FALSE);
    json_builder_set_member_name (b, "strip_right");
    json_builder_add_boolean_value (b, TRUE);
    json_builder_end_object (b);
  }
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "Replace");
  json_builder_set_member_name (b, "pattern");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Regex");
  json_builder_add_string_value (b, " {2,}");
  json_builder_end_object (b);
  json_builder_set_member_name (b, "content");
  json_builder_add_string_value (b, legacy_file ? " " : "\xe2\x96\x81");
  json_builder_end_object (b);
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
add_pre_and_post (JsonBuilder *b, gboolean legacy_file)
{
  json_builder_set_member_name (b, "pre_tokenizer");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "Metaspace");
  json_builder_set_member_name (b, "replacement");
  json_builder_add_string_value (b, "\xe2\x96\x81");
  json_builder_set_member_name (b, "add_prefix_space");
  json_builder_add_boolean_value (b, TRUE);
  if (!legacy_file) {
    json_builder_set_member_name (b, "prepend_scheme");
    json_builder_add_string_value (b, "first");
  }
  json_builder_end_object (b);

  json_builder_set_member_name (b, "post_processor");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "TemplateProcessing");
  json_builder_set_member_name (b, "single");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Sequence");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, "A");
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "SpecialToken");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, "</s>");
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "special_tokens");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "</s>");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ids");
  json_builder_begin_array (b);
  json_builder_add_int_value (b, 1);
  json_builder_end_array (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
}

/* A T5-style tokenizer.json for @model (pieces + 100 <extra_id_N> added tokens, ids descending
 * from n + 99 down to n), newer transformers layout (Strip + Replace → ▁, Metaspace "first") or
 * the legacy one (Replace → " ", Metaspace add_prefix_space). */
static char *
t5_json_from_model (const char *model, gboolean legacy_file)
{
  ModelDump d;
  dump_model (model, &d);
  guint n = d.pieces->len;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, "1.0");
  json_builder_set_member_name (b, "added_tokens");
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    if (g_array_index (d.types, gint32, i) == 2 || g_array_index (d.types, gint32, i) == 3)
      add_token (b, (int) i, g_ptr_array_index (d.pieces, i));
  for (guint k = 0; k < 100; k++) {
    g_autofree char *name = g_strdup_printf ("<extra_id_%u>", 99 - k);
    add_token (b, (int) (n + k), name);
  }
  json_builder_end_array (b);
  add_normalizers (b, &d, legacy_file);
  add_pre_and_post (b, legacy_file);
  json_builder_set_member_name (b, "model");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "Unigram");
  json_builder_set_member_name (b, "unk_id");
  json_builder_add_int_value (b, 2);
  json_builder_set_member_name (b, "vocab");
  json_builder_begin_array (b);
  for (guint i = 0; i < n + 100; i++) {
    g_autofree char *extra = i >= n ? g_strdup_printf ("<extra_id_%u>", 99 - (i - n)) : NULL;
    json_builder_begin_array (b);
    json_builder_add_string_value (b, extra ? extra : g_ptr_array_index (d.pieces, i));
    json_builder_add_double_value (b, extra ? 0.0 : (double) g_array_index (d.scores, float, i));
    json_builder_end_array (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "byte_fallback");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  model_dump_clear (&d);
  return json_generator_to_data (gen, NULL);
}

static KinTokenizer *
json_tokenizer (const char *model, gboolean legacy_file)
{
  g_autofree char *json = t5_json_from_model (model, legacy_file);
  g_autoptr (GError) error = NULL;
  KinTokenizer *tok = kin_tokenizer_new_from_json_data (json, -1, &error);
  g_assert_no_error (error);
  g_assert_cmpint (kin_tokenizer_get_format (tok), ==, KIN_TOKENIZER_FORMAT_JSON);
  return tok;
}

/* The 60 T5 cases through tokenizer.json (HF semantics).  They equal SentencePiece's ids except
 * where HF is known to differ: an exact score tie (case 20, `:zzz`), and whitespace the
 * SentencePiece normaliser collapses but HF's Replace(" {2,}") only sees after Precompiled mapped
 * tabs/newlines to single spaces (cases 50–52, 54: runs such as "\t\n \r\n"). */
static void
test_json_t5 (void)
{
  g_autofree char *model = t5_vocab_file ("spiece.model");
  g_autofree char *cases_path = t5_vocab_file ("cases.json");
  if (model == NULL || cases_path == NULL)
    return;
  g_autoptr (KinTokenizer) tok = json_tokenizer (model, FALSE);
  g_assert_cmpuint (kin_tokenizer_get_vocab_size (tok), ==, 32100);
  g_assert_cmpint (kin_tokenizer_get_eos_id (tok), ==, 1);
  g_assert_cmpint (kin_tokenizer_get_pad_id (tok), ==, 0);
  g_assert_cmpint (kin_tokenizer_piece_to_id (tok, "<extra_id_0>"), ==, 32099);
  g_autoptr (JsonParser) parser = load_json (cases_path);
  JsonArray *cases = json_object_get_array_member (
      json_node_get_object (json_parser_get_root (parser)), "cases");
  guint same = 0;
  for (guint i = 0; i < json_array_get_length (cases); i++) {
    JsonObject *c = json_array_get_object_element (cases, i);
    g_autofree char *got = encode_string (tok, json_object_get_string_member (c, "text"));
    g_autofree char *want = json_ids_string (c, "ids");
    if (g_strcmp0 (got, want) == 0) {
      same++;
      continue;
    }
    g_test_message ("json case %u differs from sentencepiece: %s vs %s", i, got, want);
    g_assert_true (i == 20);
  }
  g_test_message ("tokenizer.json: %u of 60 equal to sentencepiece", same);
}

/* Published Hugging Face (fast, legacy=False) results for the T5 vocabulary (nai-t5-wrapper
 * docs/tokenizers.md), and the f32/f64 tie-break switch. */
static void
test_json_published (void)
{
  g_autofree char *model = t5_vocab_file ("spiece.model");
  if (model == NULL)
    return;
  g_autoptr (KinTokenizer) tok = json_tokenizer (model, FALSE);
  g_autofree char *a = encode_string (tok, "Today is a fine <extra_id_0> on which to walk my "
                                           "<extra_id_1> in the park.");
  g_assert_cmpstr (a, ==, "1960 19 3 9 1399 32099 30 84 12 1482 82 32098 16 8 2447 5");
  g_autofree char *zzz = encode_string (tok, "zzz");
  g_assert_cmpstr (zzz, ==, "3 172 5271");
  g_autofree char *czzz = encode_string (tok, ":zzz");
  g_assert_cmpstr (czzz, ==, "3 10 172 5271");
  /* The same file with SentencePiece's float32 arithmetic gives SentencePiece's tie-break. */
  kin_tokenizer_set_hf_scores (tok, FALSE);
  g_autofree char *czzz32 = encode_string (tok, ":zzz");
  g_assert_cmpstr (czzz32, ==, "3 10 5271 172");

  /* And the .model with HF's f64 arithmetic gives HF's. */
  g_autoptr (KinTokenizer) spm = load_ok (model);
  g_autofree char *s32 = encode_string (spm, ":zzz");
  g_assert_cmpstr (s32, ==, "3 10 5271 172");
  kin_tokenizer_set_hf_scores (spm, TRUE);
  g_autofree char *s64 = encode_string (spm, ":zzz");
  g_assert_cmpstr (s64, ==, "3 10 172 5271");
}

/* The corpus through both tokenizer.json layouts.  Every line gives SentencePiece's ids except
 * where HF's rules differ by design: literal special-token text is split out as added tokens;
 * invalid UTF-8 is replaced before normalisation, so nmt_nfkc turns the U+FFFD into a space; and
 * the legacy layout (no Strip) keeps a trailing "▁" for trailing whitespace. */
static gboolean
hf_may_differ (const char *t, gboolean legacy)
{
  gsize n = strlen (t);
  gboolean trailing_ws = n > 0 && (g_ascii_isspace (t[n - 1]) ||
                                   g_str_has_suffix (t, "\xe2\x96\x81"));
  return strstr (t, "</s>") != NULL || !g_utf8_validate (t, -1, NULL) ||
         (legacy && trailing_ws);
}

static void
test_json_toy (void)
{
  g_autoptr (KinTokenizer) spm = load_ok (TOY_MODEL);
  for (int legacy = 0; legacy <= 1; legacy++) {
    g_autoptr (KinTokenizer) tok = json_tokenizer (TOY_MODEL, legacy);
    guint same = 0, differ = 0;
    for (guint i = 0; i < G_N_ELEMENTS (corpus); i++) {
      g_autofree char *want = encode_string (spm, corpus[i]);
      g_autofree char *got = encode_string (tok, corpus[i]);
      if (g_strcmp0 (got, want) == 0) {
        same++;
        continue;
      }
      differ++;
      if (!hf_may_differ (corpus[i], legacy))
        g_test_message ("layout %d, line %u: %s\n  sentencepiece %s", legacy, i, got, want);
      g_assert_true (hf_may_differ (corpus[i], legacy));
    }
    g_test_message ("layout %s: %u lines equal, %u differ as expected",
                    legacy ? "legacy" : "current", same, differ);
    /* Special-token text: <pad> </s> <unk> <extra_id_0> become 0 1 2 and 599 (n + 99). */
    g_autofree char *special = encode_string (tok, "a <pad></s><unk><extra_id_0>");
    g_assert_true (g_str_has_suffix (special, " 0 1 2 599"));
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Corrupt input: a GError, never a crash                                                      */

static void
test_model_truncated (void)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (TOY_MODEL, &data, &len, NULL));
  guint errors = 0, loaded = 0;
  for (gsize cut = 0; cut < len; cut += (cut < 64 ? 1 : 997)) {
    g_autoptr (GError) error = NULL;
    g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_model_data (data, cut, &error);
    if (tok == NULL) {
      g_assert_nonnull (error);
      g_assert_true (error->domain == KIN_ENGINE_ERROR);
      errors++;
    } else {
      /* A cut that falls between top-level fields after the specs is still a model. */
      g_assert_no_error (error);
      g_autofree char *ids = encode_string (tok, "Hello, World!");
      g_assert_nonnull (ids);
      loaded++;
    }
  }
  g_test_message ("truncations: %u errors, %u still loadable", errors, loaded);
  g_assert_cmpuint (errors, >, 100);
  /* The empty and one-byte files. */
  g_autoptr (GError) error = NULL;
  g_assert_null (kin_tokenizer_new_from_model_data ("", 0, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE);
}

static void
test_model_flipped (void)
{
  g_autofree char *orig = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (TOY_MODEL, &orig, &len, NULL));
  g_autofree char *data = g_memdup2 (orig, len);
  GRand *rand = g_rand_new_with_seed (1234);
  guint errors = 0;
  for (guint round = 0; round < 400; round++) {
    memcpy (data, orig, len);
    guint flips = 1 + round % 8;
    for (guint k = 0; k < flips; k++) {
      /* Half of the rounds hit the charsmap region (the last part of the file). */
      gsize pos = round % 2 ? g_rand_int_range (rand, (gint32) (len / 2), (gint32) len)
                            : g_rand_int_range (rand, 0, (gint32) len);
      data[pos] = (char) g_rand_int_range (rand, 0, 256);
    }
    g_autoptr (GError) error = NULL;
    g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_model_data (data, len, &error);
    if (tok == NULL) {
      g_assert_nonnull (error);
      errors++;
      continue;
    }
    for (guint i = 0; i < G_N_ELEMENTS (corpus); i += 3) {
      int64_t ids[16];
      kin_tokenizer_encode_padded (tok, corpus[i], 16, ids, NULL);
    }
  }
  g_rand_free (rand);
  g_test_message ("byte flips: %u of 400 rejected", errors);
}

static void
expect_json_error (const char *json, int code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_json_data (json, -1, &error);
  g_assert_null (tok);
  g_assert_error (error, KIN_ENGINE_ERROR, code);
}

static void
test_json_corrupt (void)
{
  expect_json_error ("", KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("{", KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("[1,2]", KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("{\"model\": 3}", KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}", KIN_ENGINE_ERROR_UNSUPPORTED);
  expect_json_error ("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0}}", KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 5, \"vocab\": [[\"a\", 0]]}}",
                     KIN_ENGINE_ERROR_UNSUPPORTED);
  expect_json_error ("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"a\"]]}}",
                     KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"a\", \"x\"]]}}",
                     KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"\", 0]]}}",
                     KIN_ENGINE_ERROR_BAD_FILE);
  expect_json_error ("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0], [\"a\", 0], [\"a\", -1]]}}",
                     KIN_ENGINE_ERROR_BAD_FILE);
  const char *model = "\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0], [\"\xe2\x96\x81\", -1]]}";
  g_autofree char *bad_charsmap = g_strdup_printf (
      "{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"AAAA\"}, %s}", model);
  expect_json_error (bad_charsmap, KIN_ENGINE_ERROR_BAD_FILE);
  g_autofree char *not_b64 = g_strdup_printf (
      "{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"!!\"}, %s}", model);
  expect_json_error (not_b64, KIN_ENGINE_ERROR_BAD_FILE);
  g_autofree char *bad_norm = g_strdup_printf ("{\"normalizer\": {\"type\": \"BertNormalizer\"}, %s}", model);
  expect_json_error (bad_norm, KIN_ENGINE_ERROR_UNSUPPORTED);
  g_autofree char *bad_regex = g_strdup_printf (
      "{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(\"}, \"content\": \"\"}, %s}", model);
  expect_json_error (bad_regex, KIN_ENGINE_ERROR_UNSUPPORTED);
  g_autofree char *bad_pre = g_strdup_printf ("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, %s}", model);
  expect_json_error (bad_pre, KIN_ENGINE_ERROR_UNSUPPORTED);
  g_autofree char *bad_added = g_strdup_printf ("{\"added_tokens\": [{\"id\": 9, \"content\": \"x\"}], %s}", model);
  expect_json_error (bad_added, KIN_ENGINE_ERROR_UNSUPPORTED);

  /* A minimal valid file: no normaliser, no pre-tokenizer. */
  g_autofree char *ok = g_strdup_printf ("{%s}", model);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_json_data (ok, -1, &error);
  g_assert_no_error (error);
  g_autofree char *ids = encode_string (tok, "\xe2\x96\x81x\xe2\x96\x81");
  g_assert_cmpstr (ids, ==, "1 0 1");
  g_assert_cmpint (kin_tokenizer_get_eos_id (tok), ==, -1);
  int64_t padded[3];
  g_assert_cmpuint (kin_tokenizer_encode_padded (tok, "\xe2\x96\x81x\xe2\x96\x81\xe2\x96\x81", 3, padded, NULL), ==, 3);

  /* Truncations of a real tokenizer.json. */
  g_autofree char *json = t5_json_from_model (TOY_MODEL, FALSE);
  gsize len = strlen (json);
  for (gsize cut = 0; cut < len; cut += 1 + cut / 3) {
    g_autoptr (GError) e = NULL;
    g_autoptr (KinTokenizer) t = kin_tokenizer_new_from_json_data (json, (gssize) cut, &e);
    g_assert_null (t);
    g_assert_nonnull (e);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tokenizer/toy-basics", test_toy_basics);
  g_test_add_func ("/tokenizer/padded", test_padded);
  g_test_add_func ("/tokenizer/folder-and-errors", test_folder_and_errors);
  g_test_add_func ("/tokenizer/t5-vocab", test_t5_vocab);
  g_test_add_func ("/tokenizer/spm-encode/toy", test_spm_encode_toy);
  g_test_add_func ("/tokenizer/spm-encode/t5", test_spm_encode_t5);
  g_test_add_func ("/tokenizer/spm-encode/trained", test_spm_trained);
  g_test_add_func ("/tokenizer/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/tokenizer/long-text", test_long_text);
  g_test_add_func ("/tokenizer/json/t5", test_json_t5);
  g_test_add_func ("/tokenizer/json/published", test_json_published);
  g_test_add_func ("/tokenizer/json/toy", test_json_toy);
  g_test_add_func ("/tokenizer/corrupt/model-truncated", test_model_truncated);
  g_test_add_func ("/tokenizer/corrupt/model-flipped", test_model_flipped);
  g_test_add_func ("/tokenizer/corrupt/json", test_json_corrupt);
  return g_test_run ();
}
