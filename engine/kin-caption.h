/* kin-caption.h — Open-Sora's caption cleaning, done before T5 tokenisation.
 *
 * Open-Sora v1.0 (T5Embedder with use_text_preprocessing) and v1.1 (scripts/inference.py →
 * text_preprocessing) both run the PixArt / DeepFloyd-IF `clean_caption` twice on every prompt
 * before tokenising: URL-unquote, strip, lower-case, remove URLs, HTML tags, @handles and CJK
 * ideographs, unify dashes and quotes, drop IP addresses, ids, long numbers and file names, turn
 * runs of "bad punctuation" into spaces, ftfy + HTML-unescape, drop shop/spam phrases and
 * alphanumeric junk, then tidy punctuation and whitespace (opensora/models/text_encoder/t5.py).
 *
 * This is a port of those steps with the same regular expressions (run by GRegex/PCRE2 with
 * Unicode classes, as Python's `re` uses for str patterns).  Where Python leans on libraries the
 * port keeps what matters for prompts and says what it leaves out:
 *  - BeautifulSoup(html.parser).text: tags, comments, declarations, processing instructions and
 *    <script>/<style> bodies are removed; character references are decoded, named ones from a
 *    table of the HTML entities that occur in text (all of Latin-1, the punctuation, arrows, maths
 *    and Greek ones) rather than all 2,231 HTML5 names;
 *  - ftfy.fix_text: ligatures, character width, curly quotes, line breaks, control characters,
 *    terminal escapes and NFC are applied; mojibake repair (re-decoding text that was decoded with
 *    the wrong codec) is not;
 *  - html.unescape: the same entity table, with HTML5's legacy names accepted without ';'.
 * Input that is not UTF-8 is made valid first (each malformed byte → U+FFFD). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One pass of clean_caption() (g_free). */
char *kin_caption_clean (const char *caption);

/* Open-Sora's text_preprocessing(text): clean_caption applied twice (g_free).  With
 * @use_cleaner FALSE: text.lower().strip(), the path without preprocessing. */
char *kin_caption_preprocess (const char *text, gboolean use_cleaner);

G_END_DECLS
