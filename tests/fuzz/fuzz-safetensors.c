/* fuzz-safetensors.c — libFuzzer target for kin_safetensors_parse.
 *
 * The input is a whole safetensors file.  Besides "no crash, no leak, no out-of-bounds read"
 * (ASan/UBSan), it checks the parser's promises: FALSE always comes with a GError, TRUE never
 * does, and every entry lies inside the input with nbytes = numel × element size. */
#include "kin-weights.h"
#include "kin-error.h"
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_entries (KinWeights *ws, const uint8_t *data, size_t size)
{
  for (guint i = 0; i < kin_weights_count (ws); i++) {
    const KinWeightEntry *e = kin_weights_nth (ws, i);
    const uint8_t *p = e->data;
    int64_t numel;
    if (e->name == NULL || e->ndim < 0 || e->ndim > KIN_MAX_DIMS ||
        !kin_shape_numel_checked (e->ndim, e->shape, &numel) ||
        (uint64_t) numel * kin_dtype_size (e->dtype) != e->nbytes)
      abort ();
    if (e->nbytes > 0 && (p < data || p > data + size || e->nbytes > (size_t) (data + size - p)))
      abort ();
    /* Touch every byte so that a lie about the range is caught by ASan as well. */
    volatile uint8_t sum = 0;
    for (size_t k = 0; k < e->nbytes; k++)
      sum += p[k];
    (void) sum;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  KinWeights *ws = kin_weights_new ();
  GError *error = NULL;
  gboolean ok = kin_safetensors_parse (ws, data, size, "fuzz.safetensors", &error);
  if (ok != (error == NULL))
    abort ();
  if (ok)
    check_entries (ws, data, size);
  g_clear_error (&error);
  kin_weights_free (ws);
  return 0;
}
