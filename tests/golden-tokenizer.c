/* golden-tokenizer.c — golden runner for the tokenizer case(s).  Not implemented yet: the case reports
 * that it cannot run (and its meson test is not registered until it can). */
#include "kin-golden.h"
#include "kin-error.h"

gboolean
kin_golden_run_tokenizer (KinGoldenCase *gc, GError **error)
{
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
               "the tokenizer golden runner is not implemented yet");
  return FALSE;
}
