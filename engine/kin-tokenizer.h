/* kin-tokenizer.h — the T5 tokenizer: SentencePiece unigram from `spiece.model` or from a
 * Hugging Face `tokenizer.json`, with T5's EOS / pad / truncation rules.
 *
 * Two readers, two reference behaviours:
 *
 *  - `*.model` (SentencePiece's protobuf, e.g. DeepFloyd/t5-v1_1-xxl's `spiece.model`) encodes
 *    exactly as SentencePiece 0.1.97 does (`spm_encode`, `sp.encode`): the model's own normaliser
 *    (the `precompiled_charsmap` rules, e.g. nmt_nfkc; leading/trailing whitespace removed, inner
 *    runs collapsed, a dummy `▁` prefix, spaces escaped as `▁`), then one Viterbi best path over the
 *    whole sentence with float32 path scores, the unknown penalty (min score − 10) and runs of
 *    unknown characters fused into one `<unk>`.  Literal special-token text (`</s>`,
 *    `<extra_id_0>`) is not split out, as in SentencePiece.
 *
 *  - `*.json` (tokenizer.json) encodes as Hugging Face `tokenizers` does with that file: added
 *    tokens are split out first, then the file's normaliser sequence (Precompiled, Strip, Replace,
 *    NFKC…, Lowercase, Prepend) and pre-tokenizer (Metaspace, WhitespaceSplit), then a Viterbi
 *    per word with float64 path scores.  Exact score ties can resolve differently from
 *    SentencePiece (`:zzz` with the T5 vocabulary); see kin_tokenizer_set_hf_scores().
 *
 * Invalid UTF-8 in the text is not an error.  `.model`: as SentencePiece, every byte that does
 * not start a valid UTF-8 sequence becomes U+FFFD in the normalised text (usually an `<unk>`).
 * `.json`: the text is first made valid the same way (what Python's decode with "replace" would
 * hand HF), then normalised, so nmt_nfkc maps those U+FFFD to spaces.
 *
 * A tokenizer is immutable once loaded (except kin_tokenizer_set_hf_scores()), so one instance
 * can encode from several threads at once. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct _KinTokenizer KinTokenizer;

typedef enum {
  KIN_TOKENIZER_FORMAT_MODEL,   /* SentencePiece protobuf (`spiece.model`) */
  KIN_TOKENIZER_FORMAT_JSON,    /* Hugging Face `tokenizer.json` */
} KinTokenizerFormat;

/* Loads @path: a `.json` name is read as tokenizer.json, anything else as a SentencePiece model
 * (a file that starts with `{` is taken as JSON whatever its name).  A folder is searched for
 * `spiece.model`, `tokenizer.model`, then `tokenizer.json`.  Corrupt, truncated or unsupported
 * files (BPE/WordPiece models, unknown normalisers) give a GError in KIN_ENGINE_ERROR. */
KinTokenizer *kin_tokenizer_new_from_file (const char *path, GError **error);
KinTokenizer *kin_tokenizer_new_from_model_data (const void *data, gsize len, GError **error);
KinTokenizer *kin_tokenizer_new_from_json_data (const char *data, gssize len, GError **error);
void          kin_tokenizer_free (KinTokenizer *tok);

KinTokenizerFormat kin_tokenizer_get_format (const KinTokenizer *tok);

/* Ids of @text without EOS (g_free).  Never NULL: empty text gives a 1-element allocation and
 * *n_ids = 0.  @text may be NULL (same as ""). */
int64_t      *kin_tokenizer_encode (const KinTokenizer *tok, const char *text, gsize *n_ids);
/* The pieces of the same encoding (g_strfreev).  An unknown run is given as the normalised text
 * it covers, as SentencePiece does (`🐱`, not `<unk>`). */
char        **kin_tokenizer_encode_pieces (const KinTokenizer *tok, const char *text);
/* The normalised text the Viterbi sees (`▁Hello▁world`).  For JSON tokenizers: the normalised
 * pre-tokenized words concatenated, added tokens included verbatim. */
char         *kin_tokenizer_normalize (const KinTokenizer *tok, const char *text);

/* T5 post-processing as Open-Sora calls the HF tokenizer (padding="max_length",
 * truncation=True, add_special_tokens=True): the first max_len − 1 ids, then EOS (always, also
 * when truncated), then pad up to @max_len.  @mask (may be NULL) is 1 on the ids and the EOS, 0
 * on padding.  Returns the number of mask-1 positions.  max_len 0 writes nothing.  A vocabulary
 * without an EOS piece keeps max_len ids and appends nothing; without a pad piece pads with 0. */
gsize         kin_tokenizer_encode_padded (const KinTokenizer *tok, const char *text,
                                           gsize max_len, int64_t *ids, int64_t *mask);

/* Vocabulary. */
guint         kin_tokenizer_get_vocab_size (const KinTokenizer *tok);
/* The piece of @id, or NULL when out of range. */
const char   *kin_tokenizer_id_to_piece (const KinTokenizer *tok, int id);
/* The id of @piece, or -1 when the vocabulary has no such piece. */
int           kin_tokenizer_piece_to_id (const KinTokenizer *tok, const char *piece);
/* The piece's score (log probability; 0 for specials); NAN when out of range. */
double        kin_tokenizer_get_score (const KinTokenizer *tok, int id);
int           kin_tokenizer_get_unk_id (const KinTokenizer *tok);
int           kin_tokenizer_get_eos_id (const KinTokenizer *tok);   /* -1: none */
int           kin_tokenizer_get_pad_id (const KinTokenizer *tok);   /* -1: none */
int           kin_tokenizer_get_bos_id (const KinTokenizer *tok);   /* -1: none (T5) */

/* Path-score arithmetic of the Viterbi.  FALSE (the default for `.model`): float32 as
 * SentencePiece.  TRUE (the default for `.json`): float64 as HF tokenizers (T5TokenizerFast).  The
 * two differ only on exact ties between equally scored segmentations.  Not thread-safe against
 * concurrent encodes. */
void          kin_tokenizer_set_hf_scores (KinTokenizer *tok, gboolean hf_scores);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinTokenizer, kin_tokenizer_free)

G_END_DECLS
