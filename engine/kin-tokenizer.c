/* kin-tokenizer.c — SentencePiece unigram tokenizer (see kin-tokenizer.h).
 *
 * This file holds the vocabulary tables, the `precompiled_charsmap` double array, SentencePiece's
 * normaliser, the Viterbi, the `spiece.model` reader and T5's post-processing.  The
 * tokenizer.json reader and Hugging Face's pipeline live in kin-tokenizer-json.c.
 *
 * Behaviour follows SentencePiece 0.1.97 (normalizer.cc, unigram_model.cc EncodeOptimized,
 * sentencepiece_processor.cc) and Hugging Face tokenizers (models/unigram, normalizers,
 * pre_tokenizers/metaspace), read for facts; the code is ours. */
#include "kin-tokenizer-private.h"
#include "kin-protobuf.h"
#include "kin-error.h"
#include <float.h>
#include <math.h>
#include <string.h>

#define SPACE_SYMBOL "\xe2\x96\x81"   /* U+2581 '▁' */
#define SPACE_SYMBOL_LEN 3
#define UNK_PENALTY 10.0f             /* SentencePiece kUnkPenalty (float) */
#define MAX_TRIE_RESULTS 32           /* SentencePiece's kMaxTrieResultsSize */

/* ------------------------------------------------------------------------------------------ */
/* Life cycle                                                                                  */

KinTokenizer *
kin_tokenizer_alloc (KinTokenizerFormat format)
{
  KinTokenizer *tok = g_new0 (KinTokenizer, 1);
  tok->format = format;
  tok->unk_id = tok->eos_id = tok->pad_id = tok->bos_id = -1;
  tok->add_dummy_prefix = tok->remove_extra_whitespaces = tok->escape_whitespaces = TRUE;
  tok->hf_scores = format == KIN_TOKENIZER_FORMAT_JSON;
  for (guint i = 0; i < 256; i++)
    tok->byte_ids[i] = -1;
  return tok;
}

void
kin_tokenizer_free (KinTokenizer *tok)
{
  if (tok == NULL)
    return;
  for (guint i = 0; i < tok->n_pieces; i++)
    g_free (tok->pieces[i].text);
  g_free (tok->pieces);
  g_clear_pointer (&tok->piece_ids, g_hash_table_unref);
  g_free (tok->sorted);
  g_free (tok->user_defined);
  kin_charsmap_clear (&tok->charsmap);
  kin_tokenizer_hf_clear (tok);
  g_free (tok);
}

KinTokenizerFormat
kin_tokenizer_get_format (const KinTokenizer *tok)
{
  return tok->format;
}

void
kin_tokenizer_set_hf_scores (KinTokenizer *tok, gboolean hf_scores)
{
  tok->hf_scores = hf_scores != FALSE;
}

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary                                                                                  */

/* Byte-wise order, a prefix before its extensions: the order the prefix search relies on. */
static int
piece_cmp (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const KinPiece *pieces = user_data;
  const KinPiece *pa = &pieces[*(const guint32 *) a], *pb = &pieces[*(const guint32 *) b];
  int c = memcmp (pa->text, pb->text, MIN (pa->len, pb->len));
  if (c != 0)
    return c;
  return pa->len < pb->len ? -1 : pa->len > pb->len ? 1 : 0;
}

static guint32 *
sorted_ids (const KinPiece *pieces, guint n, gboolean (*keep) (const KinPiece *, gboolean),
            gboolean json, guint *n_out)
{
  guint32 *ids = g_new (guint32, n + 1);
  guint k = 0;
  for (guint i = 0; i < n; i++)
    if (keep (&pieces[i], json))
      ids[k++] = i;
  g_qsort_with_data (ids, k, sizeof (guint32), piece_cmp, (gpointer) pieces);
  *n_out = k;
  return ids;
}

/* The pieces the Viterbi may use.  SentencePiece: NORMAL, USER_DEFINED and UNUSED (UNUSED are
 * skipped when matched).  Hugging Face: every vocabulary entry. */
static gboolean
keep_searchable (const KinPiece *p, gboolean json)
{
  return json || p->type == KIN_PIECE_NORMAL || p->type == KIN_PIECE_USER_DEFINED ||
         p->type == KIN_PIECE_UNUSED;
}

static gboolean
keep_user_defined (const KinPiece *p, gboolean json)
{
  return !json && p->type == KIN_PIECE_USER_DEFINED;
}

/* "<0x41>" → 0x41, or -1. */
static int
byte_piece_value (const char *s)
{
  if (strlen (s) != 6 || strncmp (s, "<0x", 3) != 0 || s[5] != '>' ||
      !g_ascii_isxdigit (s[3]) || !g_ascii_isxdigit (s[4]))
    return -1;
  return g_ascii_xdigit_value (s[3]) * 16 + g_ascii_xdigit_value (s[4]);
}

static gboolean
register_piece (KinTokenizer *tok, guint id, GHashTable *normal, GError **error)
{
  KinPiece *p = &tok->pieces[id];
  if (p->len == 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "tokenizer: piece %u is empty", id);
    return FALSE;
  }
  /* As SentencePiece: normal-like and reserved pieces are two name spaces; a reserved piece
   * wins in piece → id look-ups. */
  gboolean is_normal = keep_searchable (p, FALSE);
  GHashTable *table = is_normal ? normal : tok->piece_ids;
  if (g_hash_table_contains (table, p->text)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "tokenizer: piece \"%s\" is defined twice", p->text);
    return FALSE;
  }
  g_hash_table_insert (table, p->text, GINT_TO_POINTER (id + 1));
  if (p->type == KIN_PIECE_UNKNOWN) {
    if (tok->unk_id >= 0 && tok->format == KIN_TOKENIZER_FORMAT_MODEL) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "tokenizer: more than one unknown piece (%d and %u)", tok->unk_id, id);
      return FALSE;
    }
    tok->unk_id = (int) id;
  }
  if (p->type == KIN_PIECE_BYTE) {
    int b = byte_piece_value (p->text);
    if (b < 0) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "tokenizer: invalid byte piece \"%s\"", p->text);
      return FALSE;
    }
    tok->byte_ids[b] = (int) id;
  }
  return TRUE;
}

static void
compute_score_range (KinTokenizer *tok)
{
  /* SentencePiece starts max at FLT_MIN (the smallest positive float), so with the usual
   * negative scores it stays there; user-defined pieces score length·max − 0.1. */
  tok->min_score = FLT_MAX;
  tok->max_score = FLT_MIN;
  tok->min_score64 = INFINITY;
  for (guint i = 0; i < tok->n_pieces; i++) {
    const KinPiece *p = &tok->pieces[i];
    if (p->type == KIN_PIECE_NORMAL) {
      tok->min_score = MIN (tok->min_score, p->score);
      tok->max_score = MAX (tok->max_score, p->score);
    }
    if (p->score64 < tok->min_score64)
      tok->min_score64 = p->score64;
  }
}

gboolean
kin_tokenizer_set_pieces (KinTokenizer *tok, KinPiece *pieces, guint n, GError **error)
{
  gboolean json = tok->format == KIN_TOKENIZER_FORMAT_JSON;
  tok->pieces = pieces;
  tok->n_pieces = n;
  tok->piece_ids = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) normal = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < n; i++)
    if (!register_piece (tok, i, normal, error))
      return FALSE;
  /* Merge the normal name space under the reserved one. */
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, normal);
  while (g_hash_table_iter_next (&it, &key, &value))
    if (!g_hash_table_contains (tok->piece_ids, key))
      g_hash_table_insert (tok->piece_ids, key, value);
  if (tok->unk_id < 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "tokenizer: the vocabulary has no unknown piece");
    return FALSE;
  }
  tok->sorted = sorted_ids (pieces, n, keep_searchable, json, &tok->n_sorted);
  tok->user_defined = sorted_ids (pieces, n, keep_user_defined, json, &tok->n_user_defined);
  compute_score_range (tok);
  return TRUE;
}

/* A walk down the sorted piece list, one byte at a time: [lo, hi) are the pieces that start
 * with the bytes consumed so far (depth of them). */
typedef struct {
  const KinPiece *pieces;
  const guint32 *ids;
  guint lo, hi;
  guint32 depth;
} PrefixCursor;

static void
prefix_cursor_init (PrefixCursor *c, const KinPiece *pieces, const guint32 *ids, guint n)
{
  c->pieces = pieces;
  c->ids = ids;
  c->lo = 0;
  c->hi = n;
  c->depth = 0;
}

static inline guint8
piece_byte (const PrefixCursor *c, guint i)
{
  return (guint8) c->pieces[c->ids[i]].text[c->depth];
}

/* Consumes @byte.  Returns FALSE when no piece continues; otherwise *match is the id of the piece
 * that ends exactly here, or -1. */
static gboolean
prefix_cursor_step (PrefixCursor *c, guint8 byte, int *match)
{
  guint lo = c->lo, hi = c->hi;
  if (lo < hi && c->pieces[c->ids[lo]].len == c->depth)
    lo++;  /* the piece that ended at the previous byte sorts first */
  guint a = lo, b = hi;  /* first index with byte ≥ @byte */
  while (a < b) {
    guint mid = a + (b - a) / 2;
    if (piece_byte (c, mid) < byte) a = mid + 1; else b = mid;
  }
  guint first = a;
  b = hi;  /* first index with byte > @byte */
  while (a < b) {
    guint mid = a + (b - a) / 2;
    if (piece_byte (c, mid) <= byte) a = mid + 1; else b = mid;
  }
  c->lo = first;
  c->hi = a;
  c->depth++;
  if (c->lo >= c->hi)
    return FALSE;
  const guint32 id = c->ids[c->lo];
  *match = c->pieces[id].len == c->depth ? (int) id : -1;
  return TRUE;
}

/* Length of the longest piece of @ids that is a prefix of s[0..n), 0 when none. */
static gsize
longest_piece_prefix (const KinTokenizer *tok, const guint32 *ids, guint n_ids,
                      const char *s, gsize n)
{
  PrefixCursor c;
  prefix_cursor_init (&c, tok->pieces, ids, n_ids);
  gsize best = 0;
  for (gsize i = 0; i < n; i++) {
    int id;
    if (!prefix_cursor_step (&c, (guint8) s[i], &id))
      break;
    if (id >= 0)
      best = i + 1;
  }
  return best;
}

guint
kin_tokenizer_get_vocab_size (const KinTokenizer *tok)
{
  return tok->n_pieces;
}

const char *
kin_tokenizer_id_to_piece (const KinTokenizer *tok, int id)
{
  return id >= 0 && (guint) id < tok->n_pieces ? tok->pieces[id].text : NULL;
}

int
kin_tokenizer_piece_to_id (const KinTokenizer *tok, const char *piece)
{
  gpointer v = piece ? g_hash_table_lookup (tok->piece_ids, piece) : NULL;
  return v ? GPOINTER_TO_INT (v) - 1 : -1;
}

double
kin_tokenizer_get_score (const KinTokenizer *tok, int id)
{
  if (id < 0 || (guint) id >= tok->n_pieces)
    return NAN;
  return tok->hf_scores ? tok->pieces[id].score64 : tok->pieces[id].score;
}

int kin_tokenizer_get_unk_id (const KinTokenizer *tok) { return tok->unk_id; }
int kin_tokenizer_get_eos_id (const KinTokenizer *tok) { return tok->eos_id; }
int kin_tokenizer_get_pad_id (const KinTokenizer *tok) { return tok->pad_id; }
int kin_tokenizer_get_bos_id (const KinTokenizer *tok) { return tok->bos_id; }

/* ------------------------------------------------------------------------------------------ */
/* precompiled_charsmap: [u32 LE trie size][Darts-clone units][NUL-terminated replacements]    */

void
kin_charsmap_clear (KinCharsmap *cm)
{
  g_clear_pointer (&cm->units, g_free);
  g_clear_pointer (&cm->pool, g_free);
  cm->n_units = cm->pool_len = 0;
}

gboolean
kin_charsmap_init (KinCharsmap *cm, const guint8 *blob, gsize len, GError **error)
{
  kin_charsmap_clear (cm);
  if (len == 0)
    return TRUE;  /* no rules: identity */
  guint32 trie_size = len >= 4 ? (guint32) blob[0] | (guint32) blob[1] << 8 |
                                 (guint32) blob[2] << 16 | (guint32) blob[3] << 24 : 0;
  /* The checks SentencePiece makes (DecodePrecompiledCharsMap). */
  if (len <= 4 || trie_size >= len || trie_size > len - 4) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "tokenizer: the precompiled_charsmap is broken (%zu bytes, trie %u)",
                 len, trie_size);
    return FALSE;
  }
  cm->n_units = trie_size / 4;
  cm->units = g_new (guint32, cm->n_units + 1);
  for (gsize i = 0; i < cm->n_units; i++) {
    const guint8 *u = blob + 4 + 4 * i;
    cm->units[i] = (guint32) u[0] | (guint32) u[1] << 8 | (guint32) u[2] << 16 |
                   (guint32) u[3] << 24;
  }
  cm->pool_len = len - 4 - trie_size;
  cm->pool = g_malloc (cm->pool_len + 1);
  memcpy (cm->pool, blob + 4 + trie_size, cm->pool_len);
  cm->pool[cm->pool_len] = '\0';
  return TRUE;
}

/* Darts-clone unit fields. */
static inline gboolean unit_has_leaf (guint32 u) { return (u >> 8) & 1; }
static inline guint32 unit_value (guint32 u) { return u & 0x7fffffffu; }
static inline guint32 unit_label (guint32 u) { return u & 0x800000ffu; }
static inline guint32 unit_offset (guint32 u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* Common-prefix search of s[0..len) in the double array.  As SentencePiece, at most the first
 * MAX_TRIE_RESULTS matches are looked at; @longest picks the longest of them (SentencePiece),
 * otherwise the first (Hugging Face's Precompiled::transform).  Units or values out of range (a
 * corrupt map) end the search or are ignored: never read outside the arrays. */
gsize
kin_charsmap_match (const KinCharsmap *cm, const guint8 *s, gsize len, gboolean longest,
                    const char **replacement)
{
  if (cm->n_units == 0)
    return 0;
  gsize best_len = 0, n_results = 0;
  gsize pos = unit_offset (cm->units[0]);
  for (gsize i = 0; i < len; i++) {
    pos ^= s[i];
    if (pos >= cm->n_units)
      break;
    guint32 u = cm->units[pos];
    if (unit_label (u) != s[i])
      break;
    pos ^= unit_offset (u);
    if (!unit_has_leaf (u))
      continue;
    if (pos >= cm->n_units)
      break;
    guint32 value = unit_value (cm->units[pos]);
    if (n_results++ >= MAX_TRIE_RESULTS)
      continue;
    if (value < cm->pool_len && (best_len == 0 || i + 1 > best_len)) {
      best_len = i + 1;
      *replacement = cm->pool + value;
      if (!longest)
        break;
    }
  }
  return best_len;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 as SentencePiece sees it (string_util::DecodeUTF8 / OneCharLen)                       */

static inline gsize
one_char_len (guint8 lead)
{
  static const guint8 table[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
  return table[lead >> 4];
}

static inline gboolean
is_trail (guint8 b)
{
  return (b & 0xc0) == 0x80;
}

/* Length of the valid UTF-8 character at s[0..n), or 0 when it is malformed (overlong, a
 * surrogate, above U+10FFFF, truncated). */
static gsize
valid_char_len (const guint8 *s, gsize n)
{
  if (s[0] < 0x80)
    return 1;
  gunichar cp;
  if (n >= 2 && (s[0] & 0xe0) == 0xc0) {
    cp = (gunichar) (s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    return is_trail (s[1]) && cp >= 0x80 ? 2 : 0;
  }
  if (n >= 3 && (s[0] & 0xf0) == 0xe0) {
    cp = (gunichar) (s[0] & 0x0f) << 12 | (gunichar) (s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    return is_trail (s[1]) && is_trail (s[2]) && cp >= 0x800 &&
           (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
  }
  if (n >= 4 && (s[0] & 0xf8) == 0xf0) {
    cp = (gunichar) (s[0] & 0x07) << 18 | (gunichar) (s[1] & 0x3f) << 12 |
         (gunichar) (s[2] & 0x3f) << 6 | (s[3] & 0x3f);
    return is_trail (s[1]) && is_trail (s[2]) && is_trail (s[3]) && cp >= 0x10000 &&
           cp <= 0x10ffff ? 4 : 0;
  }
  return 0;
}

char *
kin_tokenizer_make_valid (const char *text)
{
  gsize n = strlen (text);
  GString *out = g_string_sized_new (n + 1);
  const guint8 *s = (const guint8 *) text;
  for (gsize i = 0; i < n;) {
    gsize l = valid_char_len (s + i, n - i);
    if (l == 0) {
      g_string_append (out, "\xef\xbf\xbd");
      i++;
    } else {
      g_string_append_len (out, text + i, l);
      i += l;
    }
  }
  return g_string_free (out, FALSE);
}

/* ------------------------------------------------------------------------------------------ */
/* SentencePiece normaliser (normalizer.cc)                                                    */

typedef struct {
  const char *text;  /* the replacement (not necessarily NUL-terminated) */
  gsize len;
  gsize consumed;    /* input bytes it replaces */
} NormPrefix;

/* The rule for the start of s[0..n): a user-defined piece verbatim, else the longest charsmap
 * rule, else the character unchanged, else (malformed UTF-8) U+FFFD for one byte. */
static NormPrefix
spm_normalize_prefix (const KinTokenizer *tok, const char *s, gsize n)
{
  NormPrefix p;
  gsize ud = tok->n_user_defined ? longest_piece_prefix (tok, tok->user_defined,
                                                         tok->n_user_defined, s, n) : 0;
  if (ud > 0)
    return (NormPrefix) { s, ud, ud };
  const char *rep = NULL;
  gsize m = kin_charsmap_match (&tok->charsmap, (const guint8 *) s, n, TRUE, &rep);
  if (m > 0)
    return (NormPrefix) { rep, strlen (rep), m };
  gsize l = valid_char_len ((const guint8 *) s, n);
  if (l == 0)
    p = (NormPrefix) { "\xef\xbf\xbd", 3, 1 };
  else
    p = (NormPrefix) { s, l, l };
  return p;
}

static void
append_ws (const KinTokenizer *tok, GString *out)
{
  if (tok->escape_whitespaces)
    g_string_append_len (out, SPACE_SYMBOL, SPACE_SYMBOL_LEN);
  else
    g_string_append_c (out, ' ');
}

static void
spm_normalize (const KinTokenizer *tok, const char *text, GString *out)
{
  gsize n = strlen (text);
  const char *s = text;
  if (tok->remove_extra_whitespaces) {  /* drop leading whitespace */
    while (n > 0) {
      NormPrefix p = spm_normalize_prefix (tok, s, n);
      if (p.len != 1 || p.text[0] != ' ')
        break;
      s += p.consumed;
      n -= p.consumed;
    }
  }
  if (n == 0)
    return;
  if (!tok->treat_whitespace_as_suffix && tok->add_dummy_prefix)
    append_ws (tok, out);
  gboolean prev_space = tok->remove_extra_whitespaces;
  while (n > 0) {
    NormPrefix p = spm_normalize_prefix (tok, s, n);
    const char *r = p.text;
    gsize rl = p.len;
    while (prev_space && rl > 0 && r[0] == ' ') {  /* collapse runs of spaces */
      r++;
      rl--;
    }
    if (rl > 0) {
      for (gsize i = 0; i < rl; i++) {
        if (tok->escape_whitespaces && r[i] == ' ')
          g_string_append_len (out, SPACE_SYMBOL, SPACE_SYMBOL_LEN);
        else
          g_string_append_c (out, r[i]);
      }
      prev_space = r[rl - 1] == ' ';
    }
    s += p.consumed;
    n -= p.consumed;
    if (!tok->remove_extra_whitespaces)
      prev_space = FALSE;
  }
  if (tok->remove_extra_whitespaces) {  /* drop trailing whitespace */
    const char *sp = tok->escape_whitespaces ? SPACE_SYMBOL : " ";
    gsize sl = tok->escape_whitespaces ? SPACE_SYMBOL_LEN : 1;
    while (out->len >= sl && memcmp (out->str + out->len - sl, sp, sl) == 0)
      g_string_truncate (out, out->len - sl);
  }
  if (tok->treat_whitespace_as_suffix && tok->add_dummy_prefix)
    append_ws (tok, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Unigram Viterbi (unigram_model.cc EncodeOptimized / tokenizers unigram encode_optimized)    */

typedef struct {
  int id;
  int start;     /* −1: unreached */
  double score;  /* SentencePiece mode: always a float32 value */
} BestNode;

/* Offers the path (start → end with @id) scored @piece_score (float widened to double, or the
 * f64 score).  SentencePiece computes the candidate in double (its score variable is a double
 * because of the user-defined branch) and stores it as a float; HF stays in f64. */
static inline void
offer (const KinTokenizer *tok, BestNode *best, gsize start, gsize end, int id,
       double piece_score)
{
  double cand = piece_score + best[start].score;
  if (best[end].start < 0 || cand > best[end].score) {
    best[end].score = tok->hf_scores ? cand : (double) (float) cand;
    best[end].start = (int) start;
    best[end].id = id;
  }
}

/* The unknown path: SentencePiece adds two floats in float; HF in f64. */
static inline void
offer_unk (const KinTokenizer *tok, BestNode *best, gsize start, gsize end)
{
  double cand;
  if (tok->hf_scores) {
    cand = (tok->min_score64 - (double) UNK_PENALTY) + best[start].score;
  } else {
    float c = (tok->min_score - UNK_PENALTY) + (float) best[start].score;
    cand = c;
  }
  if (best[end].start < 0 || cand > best[end].score) {
    best[end].score = cand;
    best[end].start = (int) start;
    best[end].id = tok->unk_id;
  }
}

static double
piece_score (const KinTokenizer *tok, int id, gsize length)
{
  const KinPiece *p = &tok->pieces[id];
  /* SentencePiece's user-defined pieces are always preferred: length · max − 0.1.  (HF turns
   * them into added tokens; tokenizer.json pieces are never USER_DEFINED here.) */
  if (p->type == KIN_PIECE_USER_DEFINED)
    return (double) ((float) length * tok->max_score) - 0.1;
  return tok->hf_scores ? p->score64 : p->score;
}

/* Scans the pieces starting at @start; returns whether one of them is exactly one character. */
static gboolean
viterbi_from (const KinTokenizer *tok, const char *s, gsize n, gsize start, gsize mblen,
              BestNode *best)
{
  PrefixCursor c;
  prefix_cursor_init (&c, tok->pieces, tok->sorted, tok->n_sorted);
  gboolean single = FALSE;
  for (gsize pos = start; pos < n; pos++) {
    int id;
    if (!prefix_cursor_step (&c, (guint8) s[pos], &id))
      break;
    if (id < 0 || tok->pieces[id].type == KIN_PIECE_UNUSED)  /* matched, never used */
      continue;
    gsize length = pos + 1 - start;
    offer (tok, best, start, pos + 1, id, piece_score (tok, id, length));
    if (length == mblen)
      single = TRUE;
  }
  return single;
}

static void
push_span (const KinTokenizer *tok, GArray *spans, int id, gsize start, gsize end,
           const char *s)
{
  if (id == tok->unk_id && tok->byte_fallback) {
    for (gsize i = start; i < end; i++) {  /* one <0xXX> piece per byte */
      int b = tok->byte_ids[(guint8) s[i]];
      KinTokenSpan sp = { b >= 0 ? b : tok->unk_id, (guint32) i, (guint32) i + 1 };
      g_array_append_val (spans, sp);
    }
    return;
  }
  if (id == tok->unk_id && spans->len > 0) {  /* fuse runs of unknowns */
    KinTokenSpan *last = &g_array_index (spans, KinTokenSpan, spans->len - 1);
    if (last->id == tok->unk_id && last->end == start) {
      last->end = (guint32) end;
      return;
    }
  }
  KinTokenSpan sp = { id, (guint32) start, (guint32) end };
  g_array_append_val (spans, sp);
}

void
kin_tokenizer_viterbi (const KinTokenizer *tok, const char *s, gsize n, GArray *spans)
{
  if (n == 0)
    return;
  BestNode *best = g_new (BestNode, n + 1);
  for (gsize i = 0; i <= n; i++)
    best[i] = (BestNode) { -1, -1, 0.0 };
  for (gsize start = 0; start < n;) {
    gsize mblen = MIN (one_char_len ((guint8) s[start]), n - start);
    if (!viterbi_from (tok, s, n, start, mblen, best))
      offer_unk (tok, best, start, start + mblen);
    start += mblen;
  }
  /* Backtrack, then emit in order. */
  GArray *rev = g_array_new (FALSE, FALSE, sizeof (KinTokenSpan));
  for (gsize end = n; end > 0;) {
    const BestNode *node = &best[end];
    g_assert (node->start >= 0 && (gsize) node->start < end);
    KinTokenSpan sp = { node->id, (guint32) node->start, (guint32) end };
    g_array_append_val (rev, sp);
    end = (gsize) node->start;
  }
  for (guint i = rev->len; i > 0; i--) {
    const KinTokenSpan *sp = &g_array_index (rev, KinTokenSpan, i - 1);
    push_span (tok, spans, sp->id, sp->start, sp->end, s);
  }
  g_array_free (rev, TRUE);
  g_free (best);
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                    */

static GArray *
encode_spans (const KinTokenizer *tok, const char *text, GString *normalized)
{
  GArray *spans = g_array_new (FALSE, FALSE, sizeof (KinTokenSpan));
  if (text == NULL)
    text = "";
  if (tok->format == KIN_TOKENIZER_FORMAT_JSON) {
    kin_tokenizer_hf_encode (tok, text, spans, normalized);
  } else {
    spm_normalize (tok, text, normalized);
    kin_tokenizer_viterbi (tok, normalized->str, normalized->len, spans);
  }
  return spans;
}

int64_t *
kin_tokenizer_encode (const KinTokenizer *tok, const char *text, gsize *n_ids)
{
  g_autoptr (GString) normalized = g_string_new (NULL);
  GArray *spans = encode_spans (tok, text, normalized);
  int64_t *ids = g_new (int64_t, spans->len + 1);
  for (guint i = 0; i < spans->len; i++)
    ids[i] = g_array_index (spans, KinTokenSpan, i).id;
  if (n_ids)
    *n_ids = spans->len;
  g_array_free (spans, TRUE);
  return ids;
}

char **
kin_tokenizer_encode_pieces (const KinTokenizer *tok, const char *text)
{
  g_autoptr (GString) normalized = g_string_new (NULL);
  GArray *spans = encode_spans (tok, text, normalized);
  char **pieces = g_new0 (char *, spans->len + 1);
  for (guint i = 0; i < spans->len; i++) {
    const KinTokenSpan *sp = &g_array_index (spans, KinTokenSpan, i);
    if (sp->id == tok->unk_id || sp->id < 0 || (guint) sp->id >= tok->n_pieces)
      pieces[i] = g_strndup (normalized->str + sp->start, sp->end - sp->start);
    else
      pieces[i] = g_strdup (tok->pieces[sp->id].text);
  }
  g_array_free (spans, TRUE);
  return pieces;
}

char *
kin_tokenizer_normalize (const KinTokenizer *tok, const char *text)
{
  GString *normalized = g_string_new (NULL);
  g_array_free (encode_spans (tok, text, normalized), TRUE);
  return g_string_free (normalized, FALSE);
}

gsize
kin_tokenizer_encode_padded (const KinTokenizer *tok, const char *text, gsize max_len,
                             int64_t *ids, int64_t *mask)
{
  if (max_len == 0)
    return 0;
  gsize n = 0;
  g_autofree int64_t *all = kin_tokenizer_encode (tok, text, &n);
  gboolean eos = tok->eos_id >= 0;
  gsize keep = MIN (n, eos ? max_len - 1 : max_len);
  memcpy (ids, all, keep * sizeof (int64_t));
  gsize used = keep;
  if (eos)
    ids[used++] = tok->eos_id;
  for (gsize i = used; i < max_len; i++)
    ids[i] = tok->pad_id >= 0 ? tok->pad_id : 0;
  if (mask != NULL)
    for (gsize i = 0; i < max_len; i++)
      mask[i] = i < used ? 1 : 0;
  return used;
}

/* ------------------------------------------------------------------------------------------ */
/* spiece.model (sentencepiece_model.proto, proto2)                                            */

typedef struct {
  GArray *pieces;          /* KinPiece */
  gboolean has_trainer, has_normalizer;
  gint32 model_type;       /* 1 unigram, 2 bpe, 3 word, 4 char */
  gboolean byte_fallback, ws_suffix;
  char *unk_piece, *bos_piece, *eos_piece, *pad_piece;
  const guint8 *charsmap;
  gsize charsmap_len;
  char *normalizer_name;
  gboolean add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} ModelProto;

static void
model_proto_clear (ModelProto *m)
{
  if (m->pieces != NULL) {
    for (guint i = 0; i < m->pieces->len; i++)
      g_free (g_array_index (m->pieces, KinPiece, i).text);
    g_array_free (m->pieces, TRUE);
  }
  g_free (m->unk_piece);
  g_free (m->bos_piece);
  g_free (m->eos_piece);
  g_free (m->pad_piece);
  g_free (m->normalizer_name);
}

static void
replace_string (char **dst, const KinPbField *f)
{
  g_free (*dst);
  *dst = g_strndup ((const char *) f->data, f->len);
}

static gboolean
parse_piece (ModelProto *m, const KinPbField *msg, GError **error)
{
  KinPbReader r;
  KinPbField f;
  KinPiece p = { NULL, 0, 0.0f, 0.0, KIN_PIECE_NORMAL };
  kin_pb_reader_init_sub (&r, msg);
  while (kin_pb_reader_next (&r, &f, error)) {
    if (f.number == 1 && f.wire == KIN_PB_LEN) {
      g_free (p.text);
      p.text = g_strndup ((const char *) f.data, f.len);
      p.len = (guint32) strlen (p.text);  /* an embedded NUL ends the piece */
    } else if (f.number == 2 && f.wire == KIN_PB_FIXED32) {
      p.score = kin_pb_field_float (&f);
    } else if (f.number == 3 && f.wire == KIN_PB_VARINT) {
      gint32 t = kin_pb_field_int32 (&f);
      if (t < KIN_PIECE_NORMAL || t > KIN_PIECE_BYTE) {
        g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                     "sentencepiece model: piece %u has an invalid type %d", m->pieces->len, t);
        g_free (p.text);
        return FALSE;
      }
      p.type = (guint8) t;
    }
  }
  if (error && *error) {
    g_free (p.text);
    return FALSE;
  }
  if (p.text == NULL)
    p.text = g_strdup ("");
  p.score64 = p.score;
  g_array_append_val (m->pieces, p);
  return TRUE;
}

static gboolean
parse_trainer_spec (ModelProto *m, const KinPbField *msg, GError **error)
{
  KinPbReader r;
  KinPbField f;
  kin_pb_reader_init_sub (&r, msg);
  m->has_trainer = TRUE;
  while (kin_pb_reader_next (&r, &f, error)) {
    gboolean v = f.wire == KIN_PB_VARINT, l = f.wire == KIN_PB_LEN;
    switch (f.number) {
    case 3: if (v) m->model_type = kin_pb_field_int32 (&f); break;
    case 24: if (v) m->ws_suffix = kin_pb_field_bool (&f); break;
    case 35: if (v) m->byte_fallback = kin_pb_field_bool (&f); break;
    case 45: if (l) replace_string (&m->unk_piece, &f); break;
    case 46: if (l) replace_string (&m->bos_piece, &f); break;
    case 47: if (l) replace_string (&m->eos_piece, &f); break;
    case 48: if (l) replace_string (&m->pad_piece, &f); break;
    default: break;
    }
  }
  return error == NULL || *error == NULL;
}

static gboolean
parse_normalizer_spec (ModelProto *m, const KinPbField *msg, GError **error)
{
  KinPbReader r;
  KinPbField f;
  kin_pb_reader_init_sub (&r, msg);
  m->has_normalizer = TRUE;
  while (kin_pb_reader_next (&r, &f, error)) {
    gboolean v = f.wire == KIN_PB_VARINT, l = f.wire == KIN_PB_LEN;
    switch (f.number) {
    case 1: if (l) replace_string (&m->normalizer_name, &f); break;
    case 2: if (l) { m->charsmap = f.data; m->charsmap_len = f.len; } break;
    case 3: if (v) m->add_dummy_prefix = kin_pb_field_bool (&f); break;
    case 4: if (v) m->remove_extra_whitespaces = kin_pb_field_bool (&f); break;
    case 5: if (v) m->escape_whitespaces = kin_pb_field_bool (&f); break;
    default: break;
    }
  }
  return error == NULL || *error == NULL;
}

static gboolean
parse_model_proto (ModelProto *m, const void *data, gsize len, GError **error)
{
  KinPbReader r;
  KinPbField f;
  GError *local = NULL;
  kin_pb_reader_init (&r, data, len);
  while (kin_pb_reader_next (&r, &f, &local)) {
    if (f.wire != KIN_PB_LEN)
      continue;
    gboolean ok = TRUE;
    if (f.number == 1)
      ok = parse_piece (m, &f, &local);
    else if (f.number == 2)
      ok = parse_trainer_spec (m, &f, &local);
    else if (f.number == 3)
      ok = parse_normalizer_spec (m, &f, &local);
    if (!ok)
      break;
  }
  if (local != NULL) {
    g_propagate_prefixed_error (error, local, "sentencepiece model: ");
    return FALSE;
  }
  if (!m->has_trainer || !m->has_normalizer || m->pieces->len == 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "sentencepiece model: no %s (truncated, or not a SentencePiece model)",
                 m->pieces->len == 0 ? "pieces" : !m->has_trainer ? "trainer_spec"
                                                                   : "normalizer_spec");
    return FALSE;
  }
  return TRUE;
}

/* The special ids as SentencePiece reports them: the id of the named piece when it is a
 * CONTROL piece (UNKNOWN for unk), else −1. */
static int
control_id (const KinTokenizer *tok, const char *piece)
{
  int id = kin_tokenizer_piece_to_id (tok, piece);
  return id >= 0 && tok->pieces[id].type == KIN_PIECE_CONTROL ? id : -1;
}

static gboolean
model_apply (KinTokenizer *tok, ModelProto *m, GError **error)
{
  if (m->model_type != 1) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "sentencepiece model: model type %d is not supported (only unigram)",
                 m->model_type);
    return FALSE;
  }
  guint n = m->pieces->len;
  KinPiece *pieces = (KinPiece *) g_array_free (g_steal_pointer (&m->pieces), FALSE);
  tok->byte_fallback = m->byte_fallback;
  if (!kin_tokenizer_set_pieces (tok, pieces, n, error))
    return FALSE;
  for (guint i = 0; i < n; i++) {
    if (pieces[i].type == KIN_PIECE_BYTE && !m->byte_fallback) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "sentencepiece model: byte piece %s without byte_fallback", pieces[i].text);
      return FALSE;
    }
  }
  for (guint b = 0; m->byte_fallback && b < 256; b++) {
    if (tok->byte_ids[b] < 0) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "sentencepiece model: byte_fallback without all 256 byte pieces");
      return FALSE;
    }
  }
  tok->eos_id = control_id (tok, m->eos_piece ? m->eos_piece : "</s>");
  tok->pad_id = control_id (tok, m->pad_piece ? m->pad_piece : "<pad>");
  tok->bos_id = control_id (tok, m->bos_piece ? m->bos_piece : "<s>");
  tok->add_dummy_prefix = m->add_dummy_prefix;
  tok->remove_extra_whitespaces = m->remove_extra_whitespaces;
  tok->escape_whitespaces = m->escape_whitespaces;
  tok->treat_whitespace_as_suffix = m->ws_suffix;
  return kin_charsmap_init (&tok->charsmap, m->charsmap, m->charsmap_len, error);
}

KinTokenizer *
kin_tokenizer_new_from_model_data (const void *data, gsize len, GError **error)
{
  ModelProto m = { 0 };
  m.pieces = g_array_new (FALSE, FALSE, sizeof (KinPiece));
  m.model_type = 1;
  m.add_dummy_prefix = m.remove_extra_whitespaces = m.escape_whitespaces = TRUE;
  g_autoptr (KinTokenizer) tok = kin_tokenizer_alloc (KIN_TOKENIZER_FORMAT_MODEL);
  gboolean ok = parse_model_proto (&m, data, len, error) && model_apply (tok, &m, error);
  model_proto_clear (&m);
  return ok ? g_steal_pointer (&tok) : NULL;
}

KinTokenizer *
kin_tokenizer_new_from_json_data (const char *data, gssize len, GError **error)
{
  g_autoptr (KinTokenizer) tok = kin_tokenizer_alloc (KIN_TOKENIZER_FORMAT_JSON);
  if (!kin_tokenizer_load_json (tok, data, len < 0 ? strlen (data) : (gsize) len, error))
    return NULL;
  return g_steal_pointer (&tok);
}

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                       */

static char *
find_in_folder (const char *dir)
{
  static const char *const names[] = { "spiece.model", "tokenizer.model", "tokenizer.json" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    char *p = g_build_filename (dir, names[i], NULL);
    if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
      return p;
    g_free (p);
  }
  return NULL;
}

KinTokenizer *
kin_tokenizer_new_from_file (const char *path, GError **error)
{
  g_autofree char *file = NULL;
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    file = find_in_folder (path);
    if (file == NULL) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO,
                   "%s: no spiece.model, tokenizer.model or tokenizer.json", path);
      return NULL;
    }
  } else {
    file = g_strdup (path);
  }
  g_autofree char *data = NULL;
  gsize len = 0;
  GError *local = NULL;
  if (!g_file_get_contents (file, &data, &len, &local)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "%s", local->message);
    g_error_free (local);
    return NULL;
  }
  gsize skip = 0;
  while (skip < len && g_ascii_isspace (data[skip]))
    skip++;
  gboolean json = g_str_has_suffix (file, ".json") || (skip < len && data[skip] == '{');
  KinTokenizer *tok = json ? kin_tokenizer_new_from_json_data (data, (gssize) len, &local)
                           : kin_tokenizer_new_from_model_data (data, len, &local);
  if (tok == NULL)
    g_propagate_prefixed_error (error, local, "%s: ", file);
  return tok;
}
