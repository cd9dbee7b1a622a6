/* test-caption.c — Open-Sora's caption cleaner (kin-caption) against the Python original.
 *
 * The expected strings were produced by running clean_caption / text_preprocessing from
 * Open-Sora v1.1.0's opensora/models/text_encoder/t5.py (its own source, unchanged) under
 * Python 3.11 with BeautifulSoup 4.11.2 (Debian python3-bs4).  ftfy could not be installed where
 * they were made; ftfy.fix_text was replaced by the subset kin-caption implements (ligatures,
 * width, curly quotes, line breaks, control characters, terminal escapes, NFC), which is what
 * ftfy does to these strings (none is mojibake). */
#include "kin-caption.h"
#include "kin-tokenizer.h"

typedef struct {
  const char *input;
  const char *once;     /* clean_caption(input) */
  const char *twice;    /* text_preprocessing(input) */
} CaptionCase;

static const CaptionCase cases[] = {
  { "A Golden Retriever runs across a sunlit meadow, chasing a red frisbee.",
    "a golden retriever runs across a sunlit meadow, chasing a red frisbee.",
    "a golden retriever runs across a sunlit meadow, chasing a red frisbee." },
  { "  Two   astronauts\tfloat inside the ISS.  ",
    "two astronauts float inside the iss.",
    "two astronauts float inside the iss." },
  { "Check https://example.com/video?id=42 and www.youtube.com/watch or visit example.org/page now",
    "check ?id=42 and or visit now",
    "check ?id=42 and or visit now" },
  { "<p>A <b>bold</b> cat &amp; a dog &lt;3 &quot;friends&quot;</p> sleeping",
    "a bold cat a dog <3 \"friends\" sleeping",
    "a bold cat a dog <3 \"friends\" sleeping" },
  { "Photo by @john_doe123 at the beach, #sunset #12 #123456 1234567 pixels",
    "photo by at the beach, sunset pixels",
    "photo by at the beach, sunset pixels" },
  { "\xe4\xb8\x80\xe5\x8f\xaa\xe7\x86\x8a\xe7\x8c\xab eating bamboo \xe7\xab\xb9\xe5\xad\x90 in the rain",
    "eating bamboo in the rain",
    "eating bamboo in the rain" },
  { "An em\xe2\x80\x94" "dash, en\xe2\x80\x93" "dash, \xe2\x80\x9csmart quotes\xe2\x80\x9d, \xe2\x80\x98single\xe2\x80\x99, \xc2\xabguillemets\xc2\xbb and `backticks\xc2\xb4",
    "an em-dash, en-dash, \"smart quotes\", 'single', \"guillemets\" and \"backticks\"",
    "an em-dash, en-dash, \"smart quotes\", 'single', \"guillemets\" and \"backticks\"" },
  { "server 192.168.0.1 logs at 12:45 ",
    "server logs at 12:45",
    "server logs at 12:45" },
  { "image.jpg and photo_final.png and clip.mp4 shown",
    "and and shown",
    "and and shown" },
  { "Wow!!! So... cool?? ***SALE*** [new] {fresh} (hot) | a/b \\ c ~ d",
    "wow!!! so cool?? sale new fresh hot a b c d",
    "wow!!! so cool?? sale new fresh hot a b c d" },
  { "this-is-my-cute-cat_with_many-dashes",
    "this is my cute cat with many dashes",
    "this is my cute cat with many dashes" },
  { "a well-known dog",
    "a well-known dog",
    "a well-known dog" },
  { "Free Shipping worldwide free shipping! Free download now, click for details",
    "! now,",
    "! now" },
  { "jc6640 jc6640vc 6640vc231 j2d1a2a page 12 png images 1920x1080 4.5x3 2\xc3\x97" "3",
    "4.",
    "4." },
  { "hello : world , ok.this is,a test/with slashes",
    "hello: world , ok. this is, a test with slashes",
    "hello: world , ok. this is, a test with slashes" },
  { "\"A quoted caption\"",
    "a quoted caption",
    "a quoted caption" },
  { "'leading quote and trailing plus+",
    "leading quote and trailing plus",
    "leading quote and trailing plus" },
  { ".hidden",
    "",
    "" },
  { "A cat%20on%20a+mat %E2%9C%93 done %zz",
    "a cat on a mat \xe2\x9c\x93 done %zz",
    "a cat on a mat \xe2\x9c\x93 done %zz" },
  { "&amp;quot;nested&amp;quot; &amp;amp; entities &copy; 2024 &hellip;",
    "nested ; entities 2024 \xe2\x80\xa6",
    "nested ; entities 2024 \xe2\x80\xa6" },
  { "ligature \xef\xac\x81sh \xef\xac\x82ow \xef\xbc\xa6\xef\xbc\xb5\xef\xbc\xac\xef\xbc\xac\xef\xbc\xb7\xef\xbc\xa9\xef\xbc\xa4\xef\xbc\xb4\xef\xbc\xa8 text\xe3\x80\x80ideographic space",
    "ligature fish flow fullwidth text ideographic space",
    "ligature fish flow fullwidth text ideographic space" },
  { "A <person> walks a dog\\nnext line",
    "a person walks a dog next line",
    "a person walks a dog next line" },
  { "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e in Z\xc3\xbcrich \xe2\x80\x94 \xe2\x80\x9ctr\xc3\xa8s\xe2\x80\x9d bon",
    "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e in z\xc3\xbcrich - \"tr\xc3\xa8s\" bon",
    "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e in z\xc3\xbcrich - \"tr\xc3\xa8s\" bon" },
  { "",
    "",
    "" },
  { "   ",
    "",
    "" },
  { "A time-lapse of clouds rolling over a vast desert, their shadows racing across the dunes at 4K 60fps.",
    "a time-lapse of clouds rolling over a vast desert, their shadows racing across the dunes at 4k 60fps.",
    "a time-lapse of clouds rolling over a vast desert, their shadows racing across the dunes at 4k 60fps." },
};

static void
test_reference (void)
{
  guint matched = 0;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *once = kin_caption_clean (cases[i].input);
    g_autofree char *twice = kin_caption_preprocess (cases[i].input, TRUE);
    if (g_strcmp0 (once, cases[i].once) != 0 || g_strcmp0 (twice, cases[i].twice) != 0)
      g_test_message ("case %u: \"%s\"\n  once  \"%s\" (want \"%s\")\n  twice \"%s\" (want \"%s\")",
                      i, cases[i].input, once, cases[i].once, twice, cases[i].twice);
    else
      matched++;
  }
  g_test_message ("%u of %u captions match the Python original", matched,
                  (guint) G_N_ELEMENTS (cases));
  g_assert_cmpuint (matched, ==, G_N_ELEMENTS (cases));
}

static void
test_html_and_entities (void)
{
  /* BeautifulSoup(html.parser).text, then clean_caption's own steps. */
  static const char *const pairs[][2] = {
    { "a <script>var x = 1;</script>b", "a b" },
    { "a<!-- comment -->b <?php echo 1 ?>c", "ab c" },
    { "x < 3 and y<z", "x < 3 and y<z" },
    { "cut <a href=\"x", "cut <a href=\"x" },
    { "at&t", "att" },
    { "&alpha;&Omega; &euro;5 &#233;t&#xe9;", "\xce\xb1\xcf\x89 \xe2\x82\xac" "5 \xc3\xa9t\xc3\xa9" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (pairs); i++) {
    g_autofree char *got = kin_caption_clean (pairs[i][0]);
    g_assert_cmpstr (got, ==, pairs[i][1]);
  }
}

static void
test_without_cleaner (void)
{
  g_autofree char *s = kin_caption_preprocess ("  A Cat ON a Mat\t", FALSE);
  g_assert_cmpstr (s, ==, "a cat on a mat");
  g_autofree char *bad = kin_caption_clean ("caf\xc3 \xff ok");
  g_assert_true (g_utf8_validate (bad, -1, NULL));
  g_autofree char *null = kin_caption_clean (NULL);
  g_assert_cmpstr (null, ==, "");
}

/* The cleaned prompt tokenises as Open-Sora feeds T5 (when the real vocabulary is present). */
static void
test_clean_then_tokenize (void)
{
  const char *dir = g_getenv ("KIN_SHARED_DIR");
  g_autofree char *model = g_build_filename (dir ? dir : KIN_TEST_DATADIR "/../../../shared",
                                             "golden", "t5-vocab", "spiece.model", NULL);
  if (!g_file_test (model, G_FILE_TEST_IS_REGULAR)) {
    g_test_skip ("the T5 vocabulary is absent");
    return;
  }
  g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_file (model, NULL);
  g_assert_nonnull (tok);
  g_autofree char *clean = kin_caption_preprocess ("A Cat", TRUE);
  gsize n = 0;
  g_autofree int64_t *ids = kin_tokenizer_encode (tok, clean, &n);
  /* t5-vocab case 16: "a cat" → 3 9 1712. */
  g_assert_cmpuint (n, ==, 3);
  g_assert_cmpint (ids[0], ==, 3);
  g_assert_cmpint (ids[1], ==, 9);
  g_assert_cmpint (ids[2], ==, 1712);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/caption/reference", test_reference);
  g_test_add_func ("/caption/html-and-entities", test_html_and_entities);
  g_test_add_func ("/caption/without-cleaner", test_without_cleaner);
  g_test_add_func ("/caption/clean-then-tokenize", test_clean_then_tokenize);
  return g_test_run ();
}
