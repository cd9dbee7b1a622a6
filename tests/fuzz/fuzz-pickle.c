/* fuzz-pickle.c — libFuzzer target for kin_pth_parse (the ZIP reader and the pickle VM).
 *
 * An input that starts with "PK" is parsed as a whole .pth archive.  Any other input is taken
 * as the bytes of data.pkl and wrapped in a stored archive "archive/" with storages "0"…"3"
 * (64 bytes each), so that the fuzzer can mutate pickles freely without having to keep the ZIP
 * sizes consistent.  Checks: FALSE always comes with a GError and adds nothing, TRUE never sets
 * one, and every entry lies inside the input buffer. */
#include "kin-weights.h"
#include "kin-error.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
put16 (GByteArray *a, guint v)
{
  guint8 b[2] = { v & 0xff, (v >> 8) & 0xff };
  g_byte_array_append (a, b, 2);
}

static void
put32 (GByteArray *a, guint32 v)
{
  guint8 b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
  g_byte_array_append (a, b, 4);
}

/* A minimal stored ZIP of @n entries. */
static GByteArray *
wrap (const char *const *names, const uint8_t *const *datas, const size_t *lens, guint n)
{
  GByteArray *a = g_byte_array_new ();
  guint32 offs[8];
  for (guint i = 0; i < n; i++) {
    offs[i] = a->len;
    put32 (a, 0x04034b50);
    put16 (a, 20);
    put16 (a, 0);
    put16 (a, 0);
    put32 (a, 0);
    put32 (a, 0);
    put32 (a, (guint32) lens[i]);
    put32 (a, (guint32) lens[i]);
    put16 (a, (guint) strlen (names[i]));
    put16 (a, 0);
    g_byte_array_append (a, (const guint8 *) names[i], (guint) strlen (names[i]));
    g_byte_array_append (a, datas[i], (guint) lens[i]);
  }
  guint32 cd = a->len;
  for (guint i = 0; i < n; i++) {
    put32 (a, 0x02014b50);
    put16 (a, 20);
    put16 (a, 20);
    put16 (a, 0);
    put16 (a, 0);
    put32 (a, 0);
    put32 (a, 0);
    put32 (a, (guint32) lens[i]);
    put32 (a, (guint32) lens[i]);
    put16 (a, (guint) strlen (names[i]));
    put16 (a, 0);
    put16 (a, 0);
    put16 (a, 0);
    put16 (a, 0);
    put32 (a, 0);
    put32 (a, offs[i]);
    g_byte_array_append (a, (const guint8 *) names[i], (guint) strlen (names[i]));
  }
  guint32 cd_size = a->len - cd;
  put32 (a, 0x06054b50);
  put16 (a, 0);
  put16 (a, 0);
  put16 (a, n);
  put16 (a, n);
  put32 (a, cd_size);
  put32 (a, cd);
  put16 (a, 0);
  return a;
}

static void
check (KinWeights *ws, const uint8_t *buf, size_t len)
{
  for (guint i = 0; i < kin_weights_count (ws); i++) {
    const KinWeightEntry *e = kin_weights_nth (ws, i);
    const uint8_t *p = e->data;
    int64_t numel;
    if (e->name == NULL || !kin_shape_numel_checked (e->ndim, e->shape, &numel) ||
        (uint64_t) numel * kin_dtype_size (e->dtype) != e->nbytes)
      abort ();
    if (p < buf || p > buf + len || e->nbytes > (size_t) (buf + len - p))
      abort ();
    volatile uint8_t sum = 0;
    for (size_t k = 0; k < e->nbytes; k++)
      sum += p[k];
    (void) sum;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GByteArray *owned = NULL;
  const uint8_t *buf = data;
  size_t len = size;
  if (size < 2 || data[0] != 'P' || data[1] != 'K') {
    static uint8_t storage[64];
    for (guint i = 0; i < sizeof storage; i++)
      storage[i] = (uint8_t) (i * 37 + 1);
    static const char *const names[] = { "archive/data.pkl", "archive/data/0", "archive/data/1",
                                         "archive/data/2", "archive/data/3" };
    const uint8_t *datas[] = { data, storage, storage, storage, storage };
    size_t lens[] = { size, 64, 64, 64, 64 };
    if (size > 0xFFFF0000u)
      return 0;
    owned = wrap (names, datas, lens, 5);
    buf = owned->data;
    len = owned->len;
  }
  KinWeights *ws = kin_weights_new ();
  GError *error = NULL;
  gboolean ok = kin_pth_parse (ws, buf, len, "fuzz.pth", &error);
  if (ok != (error == NULL) || (!ok && kin_weights_count (ws) != 0))
    abort ();
  if (ok)
    check (ws, buf, len);
  g_clear_error (&error);
  kin_weights_free (ws);
  if (owned)
    g_byte_array_unref (owned);
  return 0;
}
