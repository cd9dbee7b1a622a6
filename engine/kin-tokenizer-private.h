/* kin-tokenizer-private.h — the tokenizer's insides, shared by kin-tokenizer.c (vocabulary,
 * SentencePiece normaliser, Viterbi, `spiece.model`, T5 post-processing) and
 * kin-tokenizer-json.c (Hugging Face `tokenizer.json` and its normaliser/pre-tokenizer pipeline).
 * Not installed, not for other engine files. */
#pragma once

#include "kin-tokenizer.h"

G_BEGIN_DECLS

/* SentencePiece piece types (sentencepiece_model.proto). */
typedef enum {
  KIN_PIECE_NORMAL = 1,
  KIN_PIECE_UNKNOWN = 2,
  KIN_PIECE_CONTROL = 3,
  KIN_PIECE_USER_DEFINED = 4,
  KIN_PIECE_UNUSED = 5,
  KIN_PIECE_BYTE = 6,
} KinPieceType;

typedef struct {
  char *text;       /* UTF-8, NUL-terminated */
  guint32 len;      /* bytes */
  float score;      /* float32 as SentencePiece keeps it */
  double score64;   /* as Hugging Face keeps it (the JSON double, or the float widened) */
  guint8 type;      /* KinPieceType */
} KinPiece;

/* A decoded `precompiled_charsmap`: Darts-clone double-array units + replacement-string pool.
 * `pool` has one extra NUL at pool[pool_len], so every offset below pool_len names a
 * terminated string. */
typedef struct {
  guint32 *units;
  gsize n_units;
  char *pool;
  gsize pool_len;
} KinCharsmap;

/* One normaliser of a tokenizer.json "normalizer" Sequence. */
typedef enum {
  KIN_HF_NORM_PRECOMPILED,
  KIN_HF_NORM_STRIP,
  KIN_HF_NORM_REPLACE,
  KIN_HF_NORM_UNICODE,     /* NFC/NFD/NFKC/NFKD */
  KIN_HF_NORM_LOWERCASE,
  KIN_HF_NORM_PREPEND,
} KinHfNormType;

typedef struct {
  KinHfNormType type;
  KinCharsmap charsmap;      /* PRECOMPILED (n_units 0: identity) */
  gboolean strip_left, strip_right;
  char *pattern;             /* REPLACE with a literal pattern */
  GRegex *regex;             /* REPLACE with a regex pattern */
  char *content;             /* REPLACE replacement, PREPEND text */
  GNormalizeMode mode;       /* UNICODE */
} KinHfNormalizer;

typedef enum {
  KIN_HF_PRE_METASPACE,
  KIN_HF_PRE_WHITESPACE_SPLIT,
} KinHfPreType;

typedef enum {
  KIN_HF_PREPEND_ALWAYS,
  KIN_HF_PREPEND_FIRST,
  KIN_HF_PREPEND_NEVER,
} KinHfPrepend;

typedef struct {
  KinHfPreType type;
  char replacement[8];       /* METASPACE: the replacement character, UTF-8 */
  KinHfPrepend prepend;
  gboolean split;
} KinHfPreTokenizer;

typedef struct {
  char *content;
  gsize len;
  int id;
  gboolean lstrip, rstrip, single_word;
  gboolean normalized;       /* matched on normalised text (after the normaliser) */
} KinAddedToken;

struct _KinTokenizer {
  KinTokenizerFormat format;

  KinPiece *pieces;
  guint n_pieces;
  GHashTable *piece_ids;       /* text → GINT_TO_POINTER (id + 1) */
  guint32 *sorted;             /* ids searchable by the Viterbi, sorted by bytes */
  guint n_sorted;
  guint32 *user_defined;       /* USER_DEFINED ids sorted by bytes (spm normaliser bypass) */
  guint n_user_defined;

  int unk_id, eos_id, pad_id, bos_id;
  gboolean byte_fallback;
  int byte_ids[256];
  float min_score, max_score;  /* over NORMAL pieces (SentencePiece) */
  double min_score64;          /* over every piece (Hugging Face) */
  gboolean hf_scores;          /* accumulate path scores in f64 like HF tokenizers */

  /* SentencePiece normaliser (format MODEL). */
  KinCharsmap charsmap;
  gboolean add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
  gboolean treat_whitespace_as_suffix;

  /* Hugging Face pipeline (format JSON). */
  GArray *hf_normalizers;      /* KinHfNormalizer */
  GArray *hf_pretokenizers;    /* KinHfPreTokenizer */
  GArray *added;               /* KinAddedToken */
};

/* A piece of an encoding: its id and the byte range of the normalised text it covers. */
typedef struct {
  int id;
  guint32 start, end;
} KinTokenSpan;

KinTokenizer *kin_tokenizer_alloc (KinTokenizerFormat format);
/* Takes the pieces (ownership of the array and the strings); validates them and builds the
 * look-up tables.  Pieces must be non-empty and unique per SentencePiece's rules. */
gboolean  kin_tokenizer_set_pieces (KinTokenizer *tok, KinPiece *pieces, guint n, GError **error);
gboolean  kin_charsmap_init (KinCharsmap *cm, const guint8 *blob, gsize len, GError **error);
void      kin_charsmap_clear (KinCharsmap *cm);
/* First (shortest) and longest rule matching a prefix of s[0..len); 0 when none. */
gsize     kin_charsmap_match (const KinCharsmap *cm, const guint8 *s, gsize len,
                              gboolean longest, const char **replacement);
/* Unigram best path over s[0..n) (normalised bytes), appended to @spans (KinTokenSpan) with
 * runs of unknowns fused and byte fallback applied. */
void      kin_tokenizer_viterbi (const KinTokenizer *tok, const char *s, gsize n, GArray *spans);
/* Copy of @text with every byte that does not start a valid UTF-8 sequence replaced by U+FFFD
 * (the replacement SentencePiece's normaliser makes). */
char     *kin_tokenizer_make_valid (const char *text);

/* kin-tokenizer-json.c */
gboolean  kin_tokenizer_load_json (KinTokenizer *tok, const char *data, gsize len, GError **error);
void      kin_tokenizer_hf_clear (KinTokenizer *tok);
/* Encodes with the Hugging Face pipeline; appends spans (offsets into *normalized, which the
 * function builds: the concatenation of every normalised word). */
void      kin_tokenizer_hf_encode (const KinTokenizer *tok, const char *text, GArray *spans,
                                   GString *normalized);

G_END_DECLS
