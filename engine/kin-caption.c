/* kin-caption.c — Open-Sora's clean_caption (see kin-caption.h).  The regular expressions are
 * those of opensora/models/text_encoder/t5.py (v1.0.0 / v1.1.0), in the same order. */
#include "kin-caption.h"
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* The regex steps                                                                             */

typedef struct {
  const char *pattern;
  const char *replacement;   /* GRegex replacement syntax (\1), NULL: literal "" */
} Step;

enum {
  RE_PERSON, RE_URL1, RE_URL2, RE_HANDLE,
  RE_CJK1, RE_CJK2, RE_CJK3, RE_CJK4, RE_CJK5, RE_CJK6, RE_CJK7,
  RE_DASH, RE_DQUOTE, RE_SQUOTE, RE_QUOT, RE_AMP, RE_IP, RE_ARTICLE, RE_BACKSLASH_N,
  RE_HASH3, RE_HASH5, RE_NUM6, RE_FILENAME, RE_QUOTES, RE_DOTS, RE_BAD_PUNCT, RE_SPACED_DOT,
  RE_DASH_UNDERSCORE,
  RE_ID1, RE_ID2, RE_ID3, RE_SHIPPING, RE_DOWNLOAD, RE_CLICK, RE_IMAGE_EXT, RE_PAGE,
  RE_JUNK, RE_SIZE, RE_COLON, RE_PUNCT_SPACE, RE_SPACES,
  RE_QUOTED, RE_LEAD_PUNCT, RE_TRAIL_PUNCT, RE_DOT_WORD,
  RE_COUNT
};

static const Step steps[RE_COUNT] = {
  [RE_PERSON] = { "<person>", "person" },
  [RE_URL1] = { "\\b((?:https?:(?:\\/{1,3}|[a-zA-Z0-9%])|[a-zA-Z0-9.\\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\\w/-]*\\b\\/?(?!@)))", NULL },
  [RE_URL2] = { "\\b((?:www:(?:\\/{1,3}|[a-zA-Z0-9%])|[a-zA-Z0-9.\\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\\w/-]*\\b\\/?(?!@)))", NULL },
  [RE_HANDLE] = { "@[\\w\\d]+\\b", NULL },
  [RE_CJK1] = { "[\\x{31c0}-\\x{31ef}]+", NULL },
  [RE_CJK2] = { "[\\x{31f0}-\\x{31ff}]+", NULL },
  [RE_CJK3] = { "[\\x{3200}-\\x{32ff}]+", NULL },
  [RE_CJK4] = { "[\\x{3300}-\\x{33ff}]+", NULL },
  [RE_CJK5] = { "[\\x{3400}-\\x{4dbf}]+", NULL },
  [RE_CJK6] = { "[\\x{4dc0}-\\x{4dff}]+", NULL },
  [RE_CJK7] = { "[\\x{4e00}-\\x{9fff}]+", NULL },
  [RE_DASH] = { "[\\x{002D}\\x{058A}\\x{05BE}\\x{1400}\\x{1806}\\x{2010}-\\x{2015}\\x{2E17}\\x{2E1A}"
                "\\x{2E3A}\\x{2E3B}\\x{2E40}\\x{301C}\\x{3030}\\x{30A0}\\x{FE31}\\x{FE32}\\x{FE58}"
                "\\x{FE63}\\x{FF0D}]+", "-" },
  [RE_DQUOTE] = { "[`\\x{00B4}\\x{00AB}\\x{00BB}\\x{201C}\\x{201D}\\x{00A8}]", "\"" },
  [RE_SQUOTE] = { "[\\x{2018}\\x{2019}]", "'" },
  [RE_QUOT] = { "&quot;?", NULL },
  [RE_AMP] = { "&amp", NULL },
  [RE_IP] = { "\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}", " " },
  [RE_ARTICLE] = { "\\d:\\d\\d\\s+$", NULL },
  [RE_BACKSLASH_N] = { "\\\\n", " " },
  [RE_HASH3] = { "#\\d{1,3}\\b", NULL },
  [RE_HASH5] = { "#\\d{5,}\\b", NULL },
  [RE_NUM6] = { "\\b\\d{6,}\\b", NULL },
  [RE_FILENAME] = { "[\\S]+\\.(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)", NULL },
  [RE_QUOTES] = { "[\"']{2,}", "\"" },
  [RE_DOTS] = { "[\\.]{2,}", " " },
  /* BAD_PUNCT_REGEX: # ® • © ™ & @ · º ½ ¾ ¿ ¡ § ~ ) ( ] [ } { | \ / * */
  [RE_BAD_PUNCT] = { "[#\\x{00AE}\\x{2022}\\x{00A9}\\x{2122}&@\\x{00B7}\\x{00BA}\\x{00BD}\\x{00BE}"
                     "\\x{00BF}\\x{00A1}\\x{00A7}~\\)\\(\\]\\[\\}\\{\\|\\\\/\\*]{1,}", " " },
  [RE_SPACED_DOT] = { "\\s+\\.\\s+", " " },
  [RE_DASH_UNDERSCORE] = { "(?:\\-|\\_)", " " },
  [RE_ID1] = { "\\b[a-zA-Z]{1,3}\\d{3,15}\\b", NULL },
  [RE_ID2] = { "\\b[a-zA-Z]+\\d+[a-zA-Z]+\\b", NULL },
  [RE_ID3] = { "\\b\\d+[a-zA-Z]+\\d+\\b", NULL },
  [RE_SHIPPING] = { "(worldwide\\s+)?(free\\s+)?shipping", NULL },
  [RE_DOWNLOAD] = { "(free\\s)?download(\\sfree)?", NULL },
  [RE_CLICK] = { "\\bclick\\b\\s(?:for|on)\\s\\w+", NULL },
  [RE_IMAGE_EXT] = { "\\b(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)(\\simage[s]?)?", NULL },
  [RE_PAGE] = { "\\bpage\\s+\\d+\\b", NULL },
  [RE_JUNK] = { "\\b\\d*[a-zA-Z]+\\d+[a-zA-Z]+\\d+[a-zA-Z\\d]*\\b", " " },
  [RE_SIZE] = { "\\b\\d+\\.?\\d*[x\\x{0445}\\x{00D7}]\\d+\\.?\\d*\\b", NULL },
  [RE_COLON] = { "\\b\\s+\\:\\s+", ": " },
  [RE_PUNCT_SPACE] = { "(\\D[,\\./])\\b", "\\1 " },
  [RE_SPACES] = { "\\s+", " " },
  [RE_QUOTED] = { "^[\"']([\\w\\W]+)[\"']$", "\\1" },
  [RE_LEAD_PUNCT] = { "^['\\_,\\-\\:;]", NULL },
  [RE_TRAIL_PUNCT] = { "['\\_,\\-\\:\\-\\+]$", NULL },
  [RE_DOT_WORD] = { "^\\.\\S+$", NULL },
};

static GRegex *compiled[RE_COUNT];

static void
compile_steps (void)
{
  static gsize done = 0;
  if (!g_once_init_enter (&done))
    return;
  for (guint i = 0; i < RE_COUNT; i++) {
    g_autoptr (GError) error = NULL;
    compiled[i] = g_regex_new (steps[i].pattern, 0, 0, &error);
    if (compiled[i] == NULL)  /* a bug in the table above, not a run-time condition */
      g_error ("kin-caption: regex %u does not compile: %s", i, error->message);
  }
  g_once_init_leave (&done, 1);
}

/* re.sub(pattern, repl, *s) in place. */
static void
sub (char **s, guint step)
{
  const char *rep = steps[step].replacement ? steps[step].replacement : "";
  char *r = strchr (rep, '\\') != NULL
            ? g_regex_replace (compiled[step], *s, -1, 0, rep, 0, NULL)
            : g_regex_replace_literal (compiled[step], *s, -1, 0, rep, 0, NULL);
  if (r != NULL) {
    g_free (*s);
    *s = r;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Python string helpers                                                                       */

/* str.isspace() */
static gboolean
py_isspace (gunichar c)
{
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

/* str.strip() */
static void
py_strip (char **s)
{
  const char *b = *s, *e = *s + strlen (*s);
  while (b < e && py_isspace (g_utf8_get_char (b)))
    b = g_utf8_next_char (b);
  while (e > b && py_isspace (g_utf8_get_char (g_utf8_prev_char (e))))
    e = g_utf8_prev_char (e);
  char *r = g_strndup (b, (gsize) (e - b));
  g_free (*s);
  *s = r;
}

static void
py_lower (char **s)
{
  char *r = g_utf8_strdown (*s, -1);
  g_free (*s);
  *s = r;
}

/* Appends the UTF-8 decoding of b[0..n) with Python's errors="replace": each maximal invalid
 * subsequence becomes one U+FFFD. */
static void
append_decoded (GString *out, const guint8 *b, gsize n)
{
  for (gsize i = 0; i < n;) {
    guint8 c = b[i];
    gsize need = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
               : c >= 0xf0 && c <= 0xf4 ? 3 : (gsize) -1;
    if (need == (gsize) -1) {
      g_string_append (out, "\xef\xbf\xbd");
      i++;
      continue;
    }
    gsize k = 1;
    for (; k <= need && i + k < n; k++) {
      guint8 lo = 0x80, hi = 0xbf, t = b[i + k];
      if (k == 1 && c == 0xe0) lo = 0xa0;
      if (k == 1 && c == 0xed) hi = 0x9f;
      if (k == 1 && c == 0xf0) lo = 0x90;
      if (k == 1 && c == 0xf4) hi = 0x8f;
      if (t < lo || t > hi)
        break;
    }
    if (k == need + 1)
      g_string_append_len (out, (const char *) b + i, (gssize) k);
    else
      g_string_append (out, "\xef\xbf\xbd");
    i += k;
  }
}

/* urllib.parse.unquote_plus: '+' → ' ', %XX → byte, bytes decoded as UTF-8 (replace). */
static void
unquote_plus (char **s)
{
  GByteArray *bytes = g_byte_array_new ();
  for (const char *p = *s; *p; p++) {
    guint8 b = (guint8) *p;
    if (*p == '+') {
      b = ' ';
    } else if (*p == '%' && g_ascii_isxdigit (p[1]) && g_ascii_isxdigit (p[2])) {
      b = (guint8) (g_ascii_xdigit_value (p[1]) * 16 + g_ascii_xdigit_value (p[2]));
      p += 2;
    }
    g_byte_array_append (bytes, &b, 1);
  }
  GString *out = g_string_new (NULL);
  append_decoded (out, bytes->data, bytes->len);
  g_byte_array_unref (bytes);
  g_free (*s);
  *s = g_string_free (out, FALSE);
}

/* ------------------------------------------------------------------------------------------ */
/* HTML character references                                                                   */

/* Latin-1 names for U+00A0..U+00FF; all of them are HTML5 "legacy" names (valid without ';'). */
static const char *const latin1_names[96] = {
  "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
  "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
  "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
  "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
  "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
  "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
  "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
  "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
  "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute",
  "ucirc", "uuml", "yacute", "thorn", "yuml",
};

typedef struct {
  const char *name;
  gunichar c;
  gboolean legacy;
} Entity;

static const Entity entities[] = {
  { "amp", '&', TRUE }, { "AMP", '&', TRUE }, { "lt", '<', TRUE }, { "LT", '<', TRUE },
  { "gt", '>', TRUE }, { "GT", '>', TRUE }, { "quot", '"', TRUE }, { "QUOT", '"', TRUE },
  { "COPY", 0xa9, TRUE }, { "REG", 0xae, TRUE }, { "apos", '\'', FALSE },
  { "OElig", 0x152, FALSE }, { "oelig", 0x153, FALSE }, { "Scaron", 0x160, FALSE },
  { "scaron", 0x161, FALSE }, { "Yuml", 0x178, FALSE }, { "fnof", 0x192, FALSE },
  { "circ", 0x2c6, FALSE }, { "tilde", 0x2dc, FALSE }, { "ensp", 0x2002, FALSE },
  { "emsp", 0x2003, FALSE }, { "thinsp", 0x2009, FALSE }, { "zwnj", 0x200c, FALSE },
  { "zwj", 0x200d, FALSE }, { "lrm", 0x200e, FALSE }, { "rlm", 0x200f, FALSE },
  { "ndash", 0x2013, FALSE }, { "mdash", 0x2014, FALSE }, { "lsquo", 0x2018, FALSE },
  { "rsquo", 0x2019, FALSE }, { "sbquo", 0x201a, FALSE }, { "ldquo", 0x201c, FALSE },
  { "rdquo", 0x201d, FALSE }, { "bdquo", 0x201e, FALSE }, { "dagger", 0x2020, FALSE },
  { "Dagger", 0x2021, FALSE }, { "bull", 0x2022, FALSE }, { "hellip", 0x2026, FALSE },
  { "permil", 0x2030, FALSE }, { "prime", 0x2032, FALSE }, { "Prime", 0x2033, FALSE },
  { "lsaquo", 0x2039, FALSE }, { "rsaquo", 0x203a, FALSE }, { "oline", 0x203e, FALSE },
  { "frasl", 0x2044, FALSE }, { "euro", 0x20ac, FALSE }, { "trade", 0x2122, FALSE },
  { "larr", 0x2190, FALSE }, { "uarr", 0x2191, FALSE }, { "rarr", 0x2192, FALSE },
  { "darr", 0x2193, FALSE }, { "harr", 0x2194, FALSE }, { "minus", 0x2212, FALSE },
  { "infin", 0x221e, FALSE }, { "ne", 0x2260, FALSE }, { "le", 0x2264, FALSE },
  { "ge", 0x2265, FALSE }, { "asymp", 0x2248, FALSE }, { "sum", 0x2211, FALSE },
  { "prod", 0x220f, FALSE }, { "radic", 0x221a, FALSE }, { "part", 0x2202, FALSE },
  { "loz", 0x25ca, FALSE }, { "spades", 0x2660, FALSE }, { "clubs", 0x2663, FALSE },
  { "hearts", 0x2665, FALSE }, { "diams", 0x2666, FALSE }, { "star", 0x2606, FALSE },
  { "check", 0x2713, FALSE }, { "nbsp", 0xa0, TRUE },
};

/* The Greek letters: &alpha;..&omega; (U+03B1..) and &Alpha;..&Omega; (U+0391..); index 17
 * is the final sigma, lower case only. */
static const char *const greek_names[25] = {
  "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
  "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigmaf", "sigma", "tau", "upsilon",
  "phi", "chi", "psi", "omega",
};

static gunichar
greek_lookup (const char *name, gsize len)
{
  for (guint i = 0; i < G_N_ELEMENTS (greek_names); i++) {
    const char *g = greek_names[i];
    if (strlen (g) != len || strncmp (g + 1, name + 1, len - 1) != 0)
      continue;
    if (name[0] == g[0])
      return 0x3b1 + i;
    if (name[0] == g_ascii_toupper (g[0]) && i != 17)
      return 0x391 + i;
  }
  return 0;
}

/* The character named @name (len bytes, no '&' or ';'); 0 when unknown.  *legacy: the name is
 * also valid without ';'. */
static gunichar
entity_lookup (const char *name, gsize len, gboolean *legacy)
{
  *legacy = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (latin1_names); i++)
    if (strlen (latin1_names[i]) == len && memcmp (latin1_names[i], name, len) == 0) {
      *legacy = TRUE;
      return 0xa0 + i;
    }
  for (guint i = 0; i < G_N_ELEMENTS (entities); i++)
    if (strlen (entities[i].name) == len && memcmp (entities[i].name, name, len) == 0) {
      *legacy = entities[i].legacy;
      return entities[i].c;
    }
  return len > 0 ? greek_lookup (name, len) : 0;
}

/* The code point of a numeric reference as Python maps it: Windows-1252 for 0x80..0x9F, U+FFFD
 * for surrogates and values beyond U+10FFFF.  html.unescape (@soup FALSE) also maps 0 to U+FFFD
 * and drops C0/C1 controls and non-characters (returns 0); BeautifulSoup keeps them (0 is
 * dropped here all the same: ftfy removes it later). */
static gunichar
numeric_char (guint64 v, gboolean soup)
{
  static const guint16 cp1252[32] = {
    0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039,
    0x152, 0x8d, 0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
    0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
  };
  if (v >= 0x80 && v <= 0x9f)
    return cp1252[v - 0x80];
  if ((v == 0 && !soup) || (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff)
    return 0xfffd;
  if (!soup && ((v >= 0x01 && v <= 0x08) || v == 0x0b || (v >= 0x0e && v <= 0x1f) ||
                v == 0x7f || (v >= 0xfdd0 && v <= 0xfdef) || (v & 0xfffe) == 0xfffe))
    return 0;
  return (gunichar) v;
}

static void
append_char (GString *out, gunichar c)
{
  if (c == 0)
    return;  /* NUL cannot live in a C string; Python would keep it, ftfy later removes it */
  g_string_append_unichar (out, c);
}

/* Parses "#123" / "#x1F" at p (after '&'); returns its length and the value, 0 when none. */
static gsize
parse_numeric (const char *p, guint64 *value)
{
  if (p[0] != '#')
    return 0;
  gboolean hex = p[1] == 'x' || p[1] == 'X';
  const char *d = p + (hex ? 2 : 1), *e = d;
  guint64 v = 0;
  while (hex ? g_ascii_isxdigit (*e) : g_ascii_isdigit (*e)) {
    if (v < G_GUINT64_CONSTANT (0x100000000))
      v = v * (hex ? 16 : 10) + (guint64) (hex ? g_ascii_xdigit_value (*e) : *e - '0');
    e++;
  }
  if (e == d)
    return 0;
  *value = v;
  return (gsize) (e - p);
}

/* html.unescape(s) */
static void
html_unescape (char **s)
{
  GString *out = g_string_new (NULL);
  for (const char *p = *s; *p;) {
    if (*p != '&') {
      g_string_append_c (out, *p++);
      continue;
    }
    guint64 v;
    gsize n = parse_numeric (p + 1, &v);
    if (n > 0) {
      append_char (out, numeric_char (v, FALSE));
      p += 1 + n + (p[1 + n] == ';');
      continue;
    }
    /* A name: up to 32 chars of [^\t\n\f <&#;], then ';' optionally. */
    gsize len = strcspn (p + 1, "\t\n\f <&#;");
    len = MIN (len, 32);
    gboolean legacy;
    gunichar c = len > 0 && p[1 + len] == ';' ? entity_lookup (p + 1, len, &legacy) : 0;
    if (c != 0) {
      append_char (out, c);
      p += len + 2;
      continue;
    }
    /* Longest legacy name that is a prefix (as html.unescape does). */
    gsize k;
    for (k = len; k >= 2; k--)
      if ((c = entity_lookup (p + 1, k, &legacy)) != 0 && legacy)
        break;
    if (k >= 2) {
      append_char (out, c);
      p += 1 + k;
    } else {
      g_string_append_c (out, *p++);
    }
  }
  g_free (*s);
  *s = g_string_free (out, FALSE);
}

/* ------------------------------------------------------------------------------------------ */
/* BeautifulSoup(caption, "html.parser").text                                                  */

/* Length of the markup at p ('<' ...) that html.parser consumes without producing text, or 0
 * when the '<' is text.  *raw_end names the end tag of a <script>/<style> element. */
static gsize
markup_len (const char *p, const char **raw_end)
{
  *raw_end = NULL;
  const char *end;
  if (g_str_has_prefix (p, "<!--")) {
    end = strstr (p + 4, "-->");
    return end ? (gsize) (end + 3 - p) : 0;
  }
  gboolean open = g_ascii_isalpha (p[1]);
  gboolean close = p[1] == '/' && (g_ascii_isalpha (p[2]) || p[2] == '>');
  if (!open && !close && p[1] != '!' && p[1] != '?')
    return 0;
  /* Quoted attribute values may hold '>'. */
  char quote = 0;
  for (end = p + 1; *end && (quote || *end != '>'); end++)
    if (open && (*end == '"' || *end == '\''))
      quote = quote == *end ? 0 : quote ? quote : *end;
  if (*end != '>')
    return 0;
  static const char *const raw_tags[] = { "script", "style" };
  for (guint i = 0; open && i < G_N_ELEMENTS (raw_tags); i++) {
    gsize tl = strlen (raw_tags[i]);
    if (g_ascii_strncasecmp (p + 1, raw_tags[i], tl) == 0 && !g_ascii_isalnum (p[1 + tl]))
      *raw_end = raw_tags[i];
  }
  return (gsize) (end + 1 - p);
}

/* html.parser's entity handling as BeautifulSoup sees it: &name or &#N needs a following
 * non-alphanumeric character; a known name becomes its character, an unknown one stays; a ';'
 * terminator is consumed either way.  Returns the bytes consumed (0: '&' is plain text). */
static gsize
soup_entity (const char *p, GString *out)
{
  guint64 v;
  gsize n = parse_numeric (p + 1, &v);
  if (n > 0) {
    const char *t = p + 1 + n;
    if (*t == '\0' || g_ascii_isxdigit (*t))
      return 0;
    append_char (out, numeric_char (v, TRUE));
    return 1 + n + (*t == ';');
  }
  if (!g_ascii_isalpha (p[1]))
    return 0;
  gsize len = 1;
  while (g_ascii_isalnum (p[1 + len]) || p[1 + len] == '-' || p[1 + len] == '.')
    len++;
  const char *t = p + 1 + len;
  if (*t == '\0' || g_ascii_isalnum (*t))
    return 0;
  gboolean legacy;
  gunichar c = entity_lookup (p + 1, len, &legacy);
  if (c != 0)
    append_char (out, c);
  else
    g_string_append_len (out, p, (gssize) (1 + len));
  return 1 + len + (*t == ';');
}

static void
strip_html (char **s)
{
  GString *out = g_string_new (NULL);
  const char *p = *s;
  while (*p) {
    const char *raw_end;
    gsize n = *p == '<' ? markup_len (p, &raw_end) : 0;
    if (n > 0) {
      p += n;
      if (raw_end != NULL) {  /* skip the element's body and its end tag */
        gsize tl = strlen (raw_end);
        const char *e = p;
        while (*e && !(e[0] == '<' && e[1] == '/' && g_ascii_strncasecmp (e + 2, raw_end, tl) == 0))
          e++;
        p = e;
      }
      continue;
    }
    if (*p == '&' && (n = soup_entity (p, out)) > 0) {
      p += n;
      continue;
    }
    /* At the very end, "&x" (one letter or '#') loses its '&'. */
    if (*p == '&' && (g_ascii_isalpha (p[1]) || p[1] == '#') && p[2] == '\0') {
      p++;
      continue;
    }
    g_string_append_c (out, *p++);
  }
  g_free (*s);
  *s = g_string_free (out, FALSE);
}

/* ------------------------------------------------------------------------------------------ */
/* ftfy.fix_text, the parts that apply to decoded text                                         */

static const char *
ligature (gunichar c)
{
  switch (c) {
  case 0x132: return "IJ";
  case 0x133: return "ij";
  case 0x13f: return "L\xc2\xb7";
  case 0x140: return "l\xc2\xb7";
  case 0x149: return "\xca\xbcn";
  case 0x1c4: return "D\xc5\xbd";
  case 0x1c5: return "D\xc5\xbe";
  case 0x1c6: return "d\xc5\xbe";
  case 0x1c7: return "LJ";
  case 0x1c8: return "Lj";
  case 0x1c9: return "lj";
  case 0x1ca: return "NJ";
  case 0x1cb: return "Nj";
  case 0x1cc: return "nj";
  case 0x1f1: return "DZ";
  case 0x1f2: return "Dz";
  case 0x1f3: return "dz";
  case 0xfb00: return "ff";
  case 0xfb01: return "fi";
  case 0xfb02: return "fl";
  case 0xfb03: return "ffi";
  case 0xfb04: return "ffl";
  case 0xfb05: return "\xc5\xbft";
  case 0xfb06: return "st";
  default: return NULL;
  }
}

static gboolean
ftfy_control (gunichar c)
{
  return c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f ||
         (c >= 0x206a && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc);
}

/* One character through ftfy's fixers: line breaks, control characters, ligatures, width,
 * curly quotes. */
static void
ftfy_char (GString *out, const char *p, gunichar c)
{
  const char *lig = ligature (c);
  if (c == 0x2028 || c == 0x2029 || c == 0x85 || c == '\r') {
    g_string_append_c (out, '\n');
  } else if (ftfy_control (c)) {
    /* removed */
  } else if (lig != NULL) {
    g_string_append (out, lig);
  } else if (c == 0x3000 || (c >= 0xff01 && c <= 0xffef)) {
    g_autofree char *w = g_utf8_normalize (p, (gssize) (g_utf8_next_char (p) - p),
                                           G_NORMALIZE_NFKC);
    g_string_append (out, w ? w : " ");
  } else if (c == 0x2bc || (c >= 0x2018 && c <= 0x201b)) {
    g_string_append_c (out, '\'');
  } else if (c >= 0x201c && c <= 0x201f) {
    g_string_append_c (out, '"');
  } else {
    g_string_append_unichar (out, c);
  }
}

static void
ftfy_fix_text (char **s)
{
  GString *out = g_string_new (NULL);
  for (const char *p = *s; *p;) {
    gunichar c = g_utf8_get_char (p);
    if (c == 0x1b && p[1] == '[') {  /* terminal escape: ESC [ digits/; letter */
      const char *e = p + 2;
      while (g_ascii_isdigit (*e) || *e == ';')
        e++;
      if (g_ascii_isalpha (*e)) {
        p = e + 1;
        continue;
      }
    }
    if (c == '\r' && p[1] == '\n') {
      p++;
      continue;
    }
    ftfy_char (out, p, c);
    p = g_utf8_next_char (p);
  }
  char *nfc = g_utf8_normalize (out->str, (gssize) out->len, G_NORMALIZE_NFC);
  g_string_free (out, TRUE);
  if (nfc != NULL) {
    g_free (*s);
    *s = nfc;
  }
}

static void
basic_clean (char **s)
{
  ftfy_fix_text (s);
  html_unescape (s);
  html_unescape (s);
  py_strip (s);
}

/* ------------------------------------------------------------------------------------------ */
/* clean_caption                                                                               */

static guint
count_dash_underscore (const char *s)
{
  guint n = 0;
  for (; *s; s++)
    n += *s == '-' || *s == '_';
  return n;
}

static void
clean_first_half (char **s)
{
  unquote_plus (s);
  py_strip (s);
  py_lower (s);
  sub (s, RE_PERSON);
  sub (s, RE_URL1);
  sub (s, RE_URL2);
  strip_html (s);
  for (guint i = RE_HANDLE; i <= RE_SPACED_DOT; i++)
    sub (s, i);
  if (count_dash_underscore (*s) > 3)
    sub (s, RE_DASH_UNDERSCORE);
}

static void
clean_second_half (char **s)
{
  basic_clean (s);
  for (guint i = RE_ID1; i <= RE_SPACES; i++)
    sub (s, i);
  /* caption.strip() here is a no-op in the original (its result is discarded). */
  for (guint i = RE_QUOTED; i <= RE_DOT_WORD; i++)
    sub (s, i);
  py_strip (s);
}

char *
kin_caption_clean (const char *caption)
{
  compile_steps ();
  char *s = g_utf8_make_valid (caption ? caption : "", -1);
  clean_first_half (&s);
  clean_second_half (&s);
  return s;
}

char *
kin_caption_preprocess (const char *text, gboolean use_cleaner)
{
  if (!use_cleaner) {
    char *s = g_utf8_make_valid (text ? text : "", -1);
    py_lower (&s);
    py_strip (&s);
    return s;
  }
  g_autofree char *once = kin_caption_clean (text);
  return kin_caption_clean (once);
}
