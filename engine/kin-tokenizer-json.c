/* kin-tokenizer-json.c — Hugging Face `tokenizer.json` (Unigram model) and the part of the HF
 * tokenizers pipeline a T5 file uses: added-token splitting, the normaliser sequence, the
 * pre-tokenizer, then the unigram Viterbi per word with f64 scores (kin-tokenizer.c).
 *
 * Supported: model "Unigram" (vocab, unk_id, byte_fallback); normalizers Sequence, Precompiled,
 * Strip, Replace (String or Regex, the regex run by GRegex/PCRE2 rather than Oniguruma), NFC,
 * NFD, NFKC, NFKD, Lowercase, Prepend; pre-tokenizers Sequence, Metaspace (replacement,
 * prepend_scheme / add_prefix_space, split), WhitespaceSplit; post_processor TemplateProcessing
 * (only to learn the EOS id); padding.pad_id.  Anything else is KIN_ENGINE_ERROR_UNSUPPORTED.
 *
 * Known approximations (none matter for T5 files on ordinary text): HF's Precompiled normaliser
 * walks extended grapheme clusters; ours uses a simplified UAX #29 segmentation (combining marks,
 * ZWJ sequences, emoji modifiers, Hangul jamo, regional-indicator pairs, CR LF).  Added tokens'
 * `single_word` uses GLib's alnum + '_' as the word class. */
#include "kin-tokenizer-private.h"
#include "kin-error.h"
#include <json-glib/json-glib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Small JSON helpers: type-checked, never a g_critical on a malformed file                    */

static JsonNode *
member (JsonObject *o, const char *name)
{
  return o != NULL && json_object_has_member (o, name) ? json_object_get_member (o, name) : NULL;
}

static JsonObject *
member_object (JsonObject *o, const char *name)
{
  JsonNode *n = member (o, name);
  return n != NULL && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static JsonArray *
member_array (JsonObject *o, const char *name)
{
  JsonNode *n = member (o, name);
  return n != NULL && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

static const char *
node_string (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) &&
         json_node_get_value_type (n) == G_TYPE_STRING ? json_node_get_string (n) : NULL;
}

static const char *
member_string (JsonObject *o, const char *name)
{
  return node_string (member (o, name));
}

static gboolean
node_number (JsonNode *n, double *out)
{
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return FALSE;
  return TRUE;
}

static gboolean
member_int (JsonObject *o, const char *name, gint64 *out)
{
  JsonNode *n = member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (n);
  return TRUE;
}

static gboolean
member_bool (JsonObject *o, const char *name, gboolean def)
{
  JsonNode *n = member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return def;
  return json_node_get_boolean (n);
}

static gboolean
bad_json (GError **error, const char *what)
{
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "tokenizer.json: %s", what);
  return FALSE;
}

static gboolean
unsupported (GError **error, const char *kind, const char *type)
{
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
               "tokenizer.json: %s type \"%s\" is not supported", kind, type ? type : "(none)");
  return FALSE;
}

/* ------------------------------------------------------------------------------------------ */
/* Unicode helpers                                                                             */

/* Rust's char::is_whitespace (the White_Space property). */
static gboolean
is_white_space (gunichar c)
{
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

static gboolean
is_word_char (gunichar c)
{
  return g_unichar_isalnum (c) || c == '_';
}

/* ------------------------------------------------------------------------------------------ */
/* Grapheme clusters (simplified UAX #29) for the Precompiled normaliser                        */

static gboolean
is_extend (gunichar c)
{
  GUnicodeType t = g_unichar_type (c);
  return t == G_UNICODE_NON_SPACING_MARK || t == G_UNICODE_ENCLOSING_MARK ||
         t == G_UNICODE_SPACING_MARK || c == 0x200c || c == 0x200d ||
         (c >= 0x1f3fb && c <= 0x1f3ff) || (c >= 0xe0020 && c <= 0xe007f);
}

static gboolean
is_control (gunichar c)
{
  GUnicodeType t = g_unichar_type (c);
  return c != 0x200c && c != 0x200d &&
         (t == G_UNICODE_CONTROL || t == G_UNICODE_LINE_SEPARATOR ||
          t == G_UNICODE_PARAGRAPH_SEPARATOR || t == G_UNICODE_FORMAT);
}

static gboolean
is_pictographic (gunichar c)
{
  return g_unichar_type (c) == G_UNICODE_OTHER_SYMBOL || (c >= 0x1f000 && c <= 0x1faff);
}

static gboolean
is_regional (gunichar c)
{
  return c >= 0x1f1e6 && c <= 0x1f1ff;
}

typedef enum { HANGUL_NONE, HANGUL_L, HANGUL_V, HANGUL_T, HANGUL_LV, HANGUL_LVT } Hangul;

static Hangul
hangul_type (gunichar c)
{
  if ((c >= 0x1100 && c <= 0x115f) || (c >= 0xa960 && c <= 0xa97c))
    return HANGUL_L;
  if ((c >= 0x1160 && c <= 0x11a7) || (c >= 0xd7b0 && c <= 0xd7c6))
    return HANGUL_V;
  if ((c >= 0x11a8 && c <= 0x11ff) || (c >= 0xd7cb && c <= 0xd7fb))
    return HANGUL_T;
  if (c >= 0xac00 && c <= 0xd7a3)
    return (c - 0xac00) % 28 == 0 ? HANGUL_LV : HANGUL_LVT;
  return HANGUL_NONE;
}

static gboolean
hangul_joins (gunichar a, gunichar b)
{
  Hangul ha = hangul_type (a), hb = hangul_type (b);
  if (ha == HANGUL_L)
    return hb == HANGUL_L || hb == HANGUL_V || hb == HANGUL_LV || hb == HANGUL_LVT;
  if (ha == HANGUL_LV || ha == HANGUL_V)
    return hb == HANGUL_V || hb == HANGUL_T;
  if (ha == HANGUL_LVT || ha == HANGUL_T)
    return hb == HANGUL_T;
  return FALSE;
}

/* Byte length of the cluster that starts at s (valid UTF-8, NUL-terminated). */
static gsize
grapheme_len (const char *s)
{
  const char *p = s;
  gunichar prev = g_utf8_get_char (p);
  p = g_utf8_next_char (p);
  if (prev == '\r' && *p == '\n')
    return 2;
  if (prev == '\n' || prev == '\r' || is_control (prev))
    return (gsize) (p - s);
  gboolean pict_seen = is_pictographic (prev);
  guint n_regional = is_regional (prev) ? 1 : 0;
  while (*p != '\0') {
    gunichar c = g_utf8_get_char (p);
    gboolean joins = is_extend (c) ||
                     hangul_joins (prev, c) ||
                     (prev == 0x200d && pict_seen && is_pictographic (c)) ||
                     (is_regional (prev) && is_regional (c) && n_regional % 2 == 1);
    if (!joins || c == '\r' || c == '\n' || (is_control (c) && c != 0x200d))
      break;
    if (is_regional (c))
      n_regional++;
    pict_seen = pict_seen || is_pictographic (c);
    prev = c;
    p = g_utf8_next_char (p);
  }
  return (gsize) (p - s);
}

/* ------------------------------------------------------------------------------------------ */
/* Normalisers                                                                                 */

/* HF Precompiled: a cluster under 6 bytes is looked up whole (shortest rule that is a prefix of
 * it replaces the whole cluster); otherwise, or when nothing matches, character by character. */
static char *
norm_precompiled (const KinCharsmap *cm, const char *s)
{
  GString *out = g_string_sized_new (strlen (s) + 1);
  while (*s != '\0') {
    gsize g = grapheme_len (s);
    const char *rep = NULL;
    if (g < 6 && kin_charsmap_match (cm, (const guint8 *) s, g, FALSE, &rep) > 0) {
      g_string_append (out, rep);
      s += g;
      continue;
    }
    for (const char *end = s + g; s < end;) {
      gsize cl = (gsize) (g_utf8_next_char (s) - s);
      if (kin_charsmap_match (cm, (const guint8 *) s, cl, FALSE, &rep) > 0)
        g_string_append (out, rep);
      else
        g_string_append_len (out, s, cl);
      s += cl;
    }
  }
  return g_string_free (out, FALSE);
}

static char *
norm_strip (const char *s, gboolean left, gboolean right)
{
  const char *b = s, *e = s + strlen (s);
  while (left && b < e && is_white_space (g_utf8_get_char (b)))
    b = g_utf8_next_char (b);
  while (right && e > b) {
    const char *prev = g_utf8_prev_char (e);
    if (!is_white_space (g_utf8_get_char (prev)))
      break;
    e = prev;
  }
  return g_strndup (b, (gsize) (e - b));
}

static char *
norm_replace_literal (const char *s, const char *pattern, const char *content)
{
  if (pattern[0] == '\0')
    return g_strdup (s);
  GString *out = g_string_new (NULL);
  gsize pl = strlen (pattern);
  for (const char *hit; (hit = strstr (s, pattern)) != NULL; s = hit + pl) {
    g_string_append_len (out, s, hit - s);
    g_string_append (out, content);
  }
  g_string_append (out, s);
  return g_string_free (out, FALSE);
}

static char *
apply_normalizer (const KinHfNormalizer *nm, const char *s)
{
  switch (nm->type) {
  case KIN_HF_NORM_PRECOMPILED:
    return nm->charsmap.n_units ? norm_precompiled (&nm->charsmap, s) : g_strdup (s);
  case KIN_HF_NORM_STRIP:
    return norm_strip (s, nm->strip_left, nm->strip_right);
  case KIN_HF_NORM_REPLACE:
    if (nm->regex != NULL) {
      char *r = g_regex_replace_literal (nm->regex, s, -1, 0, nm->content, 0, NULL);
      return r ? r : g_strdup (s);
    }
    return norm_replace_literal (s, nm->pattern, nm->content);
  case KIN_HF_NORM_UNICODE: {
    char *r = g_utf8_normalize (s, -1, nm->mode);
    return r ? r : g_strdup (s);
  }
  case KIN_HF_NORM_LOWERCASE:
    return g_utf8_strdown (s, -1);
  case KIN_HF_NORM_PREPEND:
    return s[0] ? g_strconcat (nm->content, s, NULL) : g_strdup (s);
  default:
    return g_strdup (s);
  }
}

static char *
hf_normalize (const KinTokenizer *tok, const char *s)
{
  char *cur = g_strdup (s);
  for (guint i = 0; tok->hf_normalizers && i < tok->hf_normalizers->len; i++) {
    char *next = apply_normalizer (&g_array_index (tok->hf_normalizers, KinHfNormalizer, i), cur);
    g_free (cur);
    cur = next;
  }
  return cur;
}

/* ------------------------------------------------------------------------------------------ */
/* Pre-tokenizers: a word list, each word flagged when it begins the original text             */

typedef struct {
  char *text;
  gboolean first;
} Word;

static void
word_clear (gpointer p)
{
  g_free (((Word *) p)->text);
}

static void
push_word (GArray *words, const char *s, gsize len, gboolean first)
{
  if (len == 0)
    return;  /* HF drops empty splits */
  Word w = { g_strndup (s, len), first };
  g_array_append_val (words, w);
}

static void
pre_metaspace (const KinHfPreTokenizer *pt, const Word *w, GArray *out)
{
  g_autofree char *rep = norm_replace_literal (w->text, " ", pt->replacement);
  gboolean starts = g_str_has_prefix (rep, pt->replacement);
  gboolean prepend = rep[0] != '\0' && !starts &&
                     (pt->prepend == KIN_HF_PREPEND_ALWAYS ||
                      (pt->prepend == KIN_HF_PREPEND_FIRST && w->first));
  g_autofree char *s = prepend ? g_strconcat (pt->replacement, rep, NULL) : g_strdup (rep);
  if (!pt->split) {
    push_word (out, s, strlen (s), w->first);
    return;
  }
  /* Split before every replacement character (MergedWithNext). */
  gsize rl = strlen (pt->replacement), start = 0, n = strlen (s);
  for (gsize i = 1; i + rl <= n; i++) {
    if (memcmp (s + i, pt->replacement, rl) == 0) {
      push_word (out, s + start, i - start, w->first && start == 0);
      start = i;
    }
  }
  push_word (out, s + start, n - start, w->first && start == 0);
}

static void
pre_whitespace_split (const Word *w, GArray *out)
{
  const char *s = w->text, *word = NULL;
  for (const char *p = s; ; p = g_utf8_next_char (p)) {
    gboolean end = *p == '\0';
    gboolean ws = !end && is_white_space (g_utf8_get_char (p));
    if ((end || ws) && word != NULL) {
      push_word (out, word, (gsize) (p - word), w->first && word == s);
      word = NULL;
    } else if (!end && !ws && word == NULL) {
      word = p;
    }
    if (end)
      break;
  }
}

static GArray *
hf_pretokenize (const KinTokenizer *tok, const char *s, gboolean first)
{
  GArray *words = g_array_new (FALSE, FALSE, sizeof (Word));
  g_array_set_clear_func (words, word_clear);
  push_word (words, s, strlen (s), first);
  for (guint i = 0; tok->hf_pretokenizers && i < tok->hf_pretokenizers->len; i++) {
    const KinHfPreTokenizer *pt = &g_array_index (tok->hf_pretokenizers, KinHfPreTokenizer, i);
    GArray *next = g_array_new (FALSE, FALSE, sizeof (Word));
    g_array_set_clear_func (next, word_clear);
    for (guint k = 0; k < words->len; k++) {
      const Word *w = &g_array_index (words, Word, k);
      if (pt->type == KIN_HF_PRE_METASPACE)
        pre_metaspace (pt, w, next);
      else
        pre_whitespace_split (w, next);
    }
    g_array_unref (words);
    words = next;
  }
  return words;
}

/* ------------------------------------------------------------------------------------------ */
/* Added tokens                                                                                */

typedef struct {
  gsize start, end;  /* byte range in the text */
  int id;            /* −1: ordinary text */
} Segment;

/* Longest added token (of those with normalized == @normalized_pass) matching at s + i. */
static const KinAddedToken *
added_at (const KinTokenizer *tok, const char *s, gsize n, gsize i, gboolean normalized_pass)
{
  const KinAddedToken *best = NULL;
  for (guint k = 0; tok->added && k < tok->added->len; k++) {
    const KinAddedToken *t = &g_array_index (tok->added, KinAddedToken, k);
    if (t->len == 0 || t->len > n - i || t->normalized != normalized_pass)
      continue;
    if ((best == NULL || t->len > best->len) && memcmp (s + i, t->content, t->len) == 0)
      best = t;
  }
  return best;
}

static gboolean
single_word_ok (const char *s, gsize n, gsize start, gsize end)
{
  if (start > 0 && is_word_char (g_utf8_get_char (g_utf8_prev_char (s + start))))
    return FALSE;
  return end >= n || !is_word_char (g_utf8_get_char (s + end));
}

/* Splits s[0..n) around added tokens, leftmost-longest; lstrip/rstrip take the neighbouring
 * whitespace into the token. */
static GArray *
split_added (const KinTokenizer *tok, const char *s, gsize n, gboolean normalized_pass)
{
  GArray *segs = g_array_new (FALSE, FALSE, sizeof (Segment));
  gsize done = 0;
  for (gsize i = 0; i < n;) {
    const KinAddedToken *t = added_at (tok, s, n, i, normalized_pass);
    if (t == NULL || (t->single_word && !single_word_ok (s, n, i, i + t->len))) {
      i = (gsize) (g_utf8_next_char (s + i) - s);
      continue;
    }
    gsize start = i, stop = i + t->len;
    while (t->lstrip && start > done &&
           is_white_space (g_utf8_get_char (g_utf8_prev_char (s + start))))
      start = (gsize) (g_utf8_prev_char (s + start) - s);
    while (t->rstrip && stop < n && is_white_space (g_utf8_get_char (s + stop)))
      stop = (gsize) (g_utf8_next_char (s + stop) - s);
    if (start > done)
      g_array_append_val (segs, ((Segment) { done, start, -1 }));
    g_array_append_val (segs, ((Segment) { start, stop, t->id }));
    done = i = stop;
  }
  if (done < n || n == 0)
    g_array_append_val (segs, ((Segment) { done, n, -1 }));
  return segs;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                    */

static void
encode_word (const KinTokenizer *tok, const char *word, GArray *spans, GString *normalized)
{
  gsize off = normalized->len, n = strlen (word);
  g_string_append (normalized, word);
  GArray *tmp = g_array_new (FALSE, FALSE, sizeof (KinTokenSpan));
  kin_tokenizer_viterbi (tok, normalized->str + off, n, tmp);
  for (guint i = 0; i < tmp->len; i++) {
    KinTokenSpan sp = g_array_index (tmp, KinTokenSpan, i);
    sp.start += (guint32) off;
    sp.end += (guint32) off;
    g_array_append_val (spans, sp);
  }
  g_array_free (tmp, TRUE);
}

static void
push_added (int id, const char *s, gsize len, GArray *spans, GString *normalized)
{
  KinTokenSpan sp = { id, (guint32) normalized->len, (guint32) (normalized->len + len) };
  g_string_append_len (normalized, s, len);
  g_array_append_val (spans, sp);
}

/* A segment of ordinary text: normalise, split on normalised added tokens, pre-tokenize, encode. */
static void
encode_segment (const KinTokenizer *tok, const char *s, gsize len, gboolean first,
                GArray *spans, GString *normalized)
{
  g_autofree char *raw = g_strndup (s, len);
  g_autofree char *norm = hf_normalize (tok, raw);
  gsize n = strlen (norm);
  GArray *segs = split_added (tok, norm, n, TRUE);
  for (guint k = 0; k < segs->len; k++) {
    const Segment *sg = &g_array_index (segs, Segment, k);
    if (sg->id >= 0) {
      push_added (sg->id, norm + sg->start, sg->end - sg->start, spans, normalized);
      continue;
    }
    g_autofree char *part = g_strndup (norm + sg->start, sg->end - sg->start);
    GArray *words = hf_pretokenize (tok, part, first && sg->start == 0);
    for (guint w = 0; w < words->len; w++)
      encode_word (tok, g_array_index (words, Word, w).text, spans, normalized);
    g_array_unref (words);
  }
  g_array_free (segs, TRUE);
}

void
kin_tokenizer_hf_encode (const KinTokenizer *tok, const char *text, GArray *spans,
                         GString *normalized)
{
  g_autofree char *s = kin_tokenizer_make_valid (text);
  gsize n = strlen (s);
  if (n == 0)
    return;
  GArray *segs = split_added (tok, s, n, FALSE);
  for (guint k = 0; k < segs->len; k++) {
    const Segment *sg = &g_array_index (segs, Segment, k);
    if (sg->id >= 0)
      push_added (sg->id, s + sg->start, sg->end - sg->start, spans, normalized);
    else
      encode_segment (tok, s + sg->start, sg->end - sg->start, sg->start == 0, spans,
                      normalized);
  }
  g_array_free (segs, TRUE);
}

/* ------------------------------------------------------------------------------------------ */
/* Loading                                                                                     */

void
kin_tokenizer_hf_clear (KinTokenizer *tok)
{
  for (guint i = 0; tok->hf_normalizers && i < tok->hf_normalizers->len; i++) {
    KinHfNormalizer *nm = &g_array_index (tok->hf_normalizers, KinHfNormalizer, i);
    kin_charsmap_clear (&nm->charsmap);
    g_free (nm->pattern);
    g_free (nm->content);
    g_clear_pointer (&nm->regex, g_regex_unref);
  }
  g_clear_pointer (&tok->hf_normalizers, g_array_unref);
  g_clear_pointer (&tok->hf_pretokenizers, g_array_unref);
  for (guint i = 0; tok->added && i < tok->added->len; i++)
    g_free (g_array_index (tok->added, KinAddedToken, i).content);
  g_clear_pointer (&tok->added, g_array_unref);
}

static gboolean
load_vocab (KinTokenizer *tok, JsonObject *model, GError **error)
{
  const char *type = member_string (model, "type");
  if (g_strcmp0 (type, "Unigram") != 0)
    return unsupported (error, "model", type);
  JsonArray *vocab = member_array (model, "vocab");
  gint64 unk = -1;
  if (vocab == NULL)
    return bad_json (error, "model.vocab is missing");
  if (!member_int (model, "unk_id", &unk) || unk < 0 || unk >= json_array_get_length (vocab))
    return unsupported (error, "model without a valid unk_id:", "Unigram");
  guint n = json_array_get_length (vocab);
  KinPiece *pieces = g_new0 (KinPiece, n + 1);
  for (guint i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element (vocab, i);
    JsonArray *pair = JSON_NODE_HOLDS_ARRAY (e) ? json_node_get_array (e) : NULL;
    const char *text = pair && json_array_get_length (pair) == 2
                       ? node_string (json_array_get_element (pair, 0)) : NULL;
    double score;
    if (text == NULL || !node_number (json_array_get_element (pair, 1), &score)) {
      for (guint k = 0; k < i; k++)
        g_free (pieces[k].text);
      g_free (pieces);
      return bad_json (error, "model.vocab entries must be [piece, score]");
    }
    pieces[i] = (KinPiece) { g_strdup (text), (guint32) strlen (text), (float) score, score,
                             i == (guint) unk ? KIN_PIECE_UNKNOWN : KIN_PIECE_NORMAL };
  }
  tok->byte_fallback = member_bool (model, "byte_fallback", FALSE);
  if (!kin_tokenizer_set_pieces (tok, pieces, n, error))
    return FALSE;
  for (guint b = 0; b < 256; b++) {  /* "<0xXX>" pieces, when the vocabulary has them */
    char name[8];
    g_snprintf (name, sizeof name, "<0x%02X>", b);
    tok->byte_ids[b] = kin_tokenizer_piece_to_id (tok, name);
  }
  return TRUE;
}

static gboolean
load_charsmap (KinCharsmap *cm, JsonObject *o, GError **error)
{
  const char *b64 = member_string (o, "precompiled_charsmap");
  if (b64 == NULL || b64[0] == '\0')
    return TRUE;  /* identity */
  for (const char *p = b64; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '+' && *p != '/' && *p != '=')
      return bad_json (error, "precompiled_charsmap is not base64");
  gsize len = 0;
  g_autofree guint8 *blob = g_base64_decode (b64, &len);
  return kin_charsmap_init (cm, blob, len, error);
}

static gboolean
load_replace (KinHfNormalizer *nm, JsonObject *o, GError **error)
{
  JsonObject *pat = member_object (o, "pattern");
  const char *content = member_string (o, "content");
  const char *lit = member_string (pat, "String"), *re = member_string (pat, "Regex");
  if (content == NULL || (lit == NULL && re == NULL))
    return bad_json (error, "Replace needs pattern.String or pattern.Regex and content");
  nm->content = g_strdup (content);
  if (lit != NULL) {
    nm->pattern = g_strdup (lit);
    return TRUE;
  }
  GError *local = NULL;
  nm->regex = g_regex_new (re, 0, 0, &local);
  if (nm->regex == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "tokenizer.json: Replace regex \"%s\": %s", re, local->message);
    g_error_free (local);
    return FALSE;
  }
  return TRUE;
}

static gboolean load_normalizer (KinTokenizer *tok, JsonNode *node, guint depth, GError **error);

static gboolean
load_one_normalizer (KinTokenizer *tok, JsonObject *o, const char *type, GError **error)
{
  KinHfNormalizer nm = { 0 };
  gboolean ok = TRUE;
  if (g_strcmp0 (type, "Precompiled") == 0) {
    nm.type = KIN_HF_NORM_PRECOMPILED;
    ok = load_charsmap (&nm.charsmap, o, error);
  } else if (g_strcmp0 (type, "Strip") == 0) {
    nm.type = KIN_HF_NORM_STRIP;
    nm.strip_left = member_bool (o, "strip_left", TRUE);
    nm.strip_right = member_bool (o, "strip_right", TRUE);
  } else if (g_strcmp0 (type, "Replace") == 0) {
    nm.type = KIN_HF_NORM_REPLACE;
    ok = load_replace (&nm, o, error);
  } else if (g_strcmp0 (type, "NFC") == 0 || g_strcmp0 (type, "NFD") == 0 ||
             g_strcmp0 (type, "NFKC") == 0 || g_strcmp0 (type, "NFKD") == 0) {
    nm.type = KIN_HF_NORM_UNICODE;
    nm.mode = type[2] == 'K' ? (type[3] == 'C' ? G_NORMALIZE_NFKC : G_NORMALIZE_NFKD)
                             : (type[2] == 'C' ? G_NORMALIZE_NFC : G_NORMALIZE_NFD);
  } else if (g_strcmp0 (type, "Lowercase") == 0) {
    nm.type = KIN_HF_NORM_LOWERCASE;
  } else if (g_strcmp0 (type, "Prepend") == 0) {
    nm.type = KIN_HF_NORM_PREPEND;
    const char *p = member_string (o, "prepend");
    if (p == NULL)
      return bad_json (error, "Prepend needs \"prepend\"");
    nm.content = g_strdup (p);
  } else {
    return unsupported (error, "normalizer", type);
  }
  g_array_append_val (tok->hf_normalizers, nm);  /* appended even on error: freed with tok */
  return ok;
}

static gboolean
load_normalizer (KinTokenizer *tok, JsonNode *node, guint depth, GError **error)
{
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node) || depth > 8)
    return bad_json (error, "normalizer must be an object");
  JsonObject *o = json_node_get_object (node);
  const char *type = member_string (o, "type");
  if (g_strcmp0 (type, "Sequence") != 0)
    return load_one_normalizer (tok, o, type, error);
  JsonArray *list = member_array (o, "normalizers");
  if (list == NULL)
    return bad_json (error, "normalizer Sequence without \"normalizers\"");
  for (guint i = 0; i < json_array_get_length (list); i++)
    if (!load_normalizer (tok, json_array_get_element (list, i), depth + 1, error))
      return FALSE;
  return TRUE;
}

static gboolean
load_metaspace (KinHfPreTokenizer *pt, JsonObject *o, GError **error)
{
  const char *rep = member_string (o, "replacement");
  if (rep == NULL || rep[0] == '\0' || !g_utf8_validate (rep, -1, NULL) ||
      g_utf8_strlen (rep, -1) != 1)
    return bad_json (error, "Metaspace needs a one-character replacement");
  g_strlcpy (pt->replacement, rep, sizeof pt->replacement);
  pt->split = member_bool (o, "split", TRUE);
  const char *scheme = member_string (o, "prepend_scheme");
  pt->prepend = KIN_HF_PREPEND_ALWAYS;
  if (g_strcmp0 (scheme, "first") == 0)
    pt->prepend = KIN_HF_PREPEND_FIRST;
  else if (g_strcmp0 (scheme, "never") == 0)
    pt->prepend = KIN_HF_PREPEND_NEVER;
  else if (scheme != NULL && g_strcmp0 (scheme, "always") != 0)
    return bad_json (error, "Metaspace prepend_scheme must be always, first or never");
  if (!member_bool (o, "add_prefix_space", TRUE))
    pt->prepend = KIN_HF_PREPEND_NEVER;
  return TRUE;
}

static gboolean
load_pretokenizer (KinTokenizer *tok, JsonNode *node, guint depth, GError **error)
{
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node) || depth > 8)
    return bad_json (error, "pre_tokenizer must be an object");
  JsonObject *o = json_node_get_object (node);
  const char *type = member_string (o, "type");
  KinHfPreTokenizer pt = { 0 };
  if (g_strcmp0 (type, "Sequence") == 0) {
    JsonArray *list = member_array (o, "pretokenizers");
    if (list == NULL)
      return bad_json (error, "pre_tokenizer Sequence without \"pretokenizers\"");
    for (guint i = 0; i < json_array_get_length (list); i++)
      if (!load_pretokenizer (tok, json_array_get_element (list, i), depth + 1, error))
        return FALSE;
    return TRUE;
  } else if (g_strcmp0 (type, "Metaspace") == 0) {
    pt.type = KIN_HF_PRE_METASPACE;
    if (!load_metaspace (&pt, o, error))
      return FALSE;
  } else if (g_strcmp0 (type, "WhitespaceSplit") == 0) {
    pt.type = KIN_HF_PRE_WHITESPACE_SPLIT;
  } else {
    return unsupported (error, "pre_tokenizer", type);
  }
  g_array_append_val (tok->hf_pretokenizers, pt);
  return TRUE;
}

/* Added tokens.  As HF: special tokens and those with normalized false are cut from the raw
 * text; the others from the normalised text. */
static gboolean
load_added (KinTokenizer *tok, JsonArray *list, GError **error)
{
  for (guint i = 0; list && i < json_array_get_length (list); i++) {
    JsonNode *e = json_array_get_element (list, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
    const char *content = member_string (o, "content");
    gint64 id;
    if (content == NULL || !member_int (o, "id", &id) || id < 0 || id > G_MAXINT)
      return bad_json (error, "added_tokens entries need content and id");
    if (id >= tok->n_pieces)
      return unsupported (error, "added token outside the model vocabulary:", content);
    gboolean special = member_bool (o, "special", FALSE);
    KinAddedToken t = { g_strdup (content), strlen (content), (int) id,
                        member_bool (o, "lstrip", FALSE), member_bool (o, "rstrip", FALSE),
                        member_bool (o, "single_word", FALSE),
                        !special && member_bool (o, "normalized", !special) };
    g_array_append_val (tok->added, t);
  }
  return TRUE;
}

/* EOS from TemplateProcessing's single template (the special token after $A); else "</s>". */
static int
find_eos (KinTokenizer *tok, JsonObject *post)
{
  JsonArray *single = member_array (post, "single");
  JsonObject *specials = member_object (post, "special_tokens");
  for (guint i = 0; single && i < json_array_get_length (single); i++) {
    JsonNode *e = json_array_get_element (single, i);
    JsonObject *item = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
    const char *name = member_string (member_object (item, "SpecialToken"), "id");
    JsonArray *ids = member_array (member_object (specials, name ? name : ""), "ids");
    double v;
    if (ids && json_array_get_length (ids) == 1 &&
        node_number (json_array_get_element (ids, 0), &v) && v >= 0 && v < tok->n_pieces)
      return (int) v;
  }
  return kin_tokenizer_piece_to_id (tok, "</s>");
}

gboolean
kin_tokenizer_load_json (KinTokenizer *tok, const char *data, gsize len, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  GError *local = NULL;
  if (!json_parser_load_from_data (parser, data, (gssize) len, &local)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "tokenizer.json: %s",
                 local->message);
    g_error_free (local);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonObject *model = member_object (o, "model");
  if (model == NULL)
    return bad_json (error, "no \"model\" object");
  if (!load_vocab (tok, model, error))
    return FALSE;
  tok->hf_normalizers = g_array_new (FALSE, TRUE, sizeof (KinHfNormalizer));
  tok->hf_pretokenizers = g_array_new (FALSE, TRUE, sizeof (KinHfPreTokenizer));
  tok->added = g_array_new (FALSE, TRUE, sizeof (KinAddedToken));
  if (!load_normalizer (tok, member (o, "normalizer"), 0, error) ||
      !load_pretokenizer (tok, member (o, "pre_tokenizer"), 0, error) ||
      !load_added (tok, member_array (o, "added_tokens"), error))
    return FALSE;
  tok->eos_id = find_eos (tok, member_object (o, "post_processor"));
  gint64 pad;
  JsonObject *padding = member_object (o, "padding");
  tok->pad_id = member_int (padding, "pad_id", &pad) && pad >= 0 && pad < tok->n_pieces
                ? (int) pad : kin_tokenizer_piece_to_id (tok, "<pad>");
  return TRUE;
}
