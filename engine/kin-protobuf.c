/* kin-protobuf.c — see kin-protobuf.h. */
#include "kin-protobuf.h"
#include "kin-error.h"
#include <string.h>

void
kin_pb_reader_init (KinPbReader *r, const void *data, gsize len)
{
  r->pos = data;
  r->end = r->pos + (data != NULL ? len : 0);
}

void
kin_pb_reader_init_sub (KinPbReader *sub, const KinPbField *field)
{
  kin_pb_reader_init (sub, field->data, field->wire == KIN_PB_LEN ? field->len : 0);
}

/* A varint has at most 10 bytes; the tenth may only carry the top bit of a 64-bit value, but
 * protobuf parsers accept any tenth byte without its continuation bit, and so do we. */
static gboolean
read_varint (KinPbReader *r, guint64 *out, GError **error)
{
  guint64 v = 0;
  for (guint shift = 0; shift < 70; shift += 7) {
    if (r->pos >= r->end) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "protobuf: truncated varint");
      return FALSE;
    }
    guint8 b = *r->pos++;
    if (shift < 64)
      v |= (guint64) (b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *out = v;
      return TRUE;
    }
  }
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
               "protobuf: varint longer than 10 bytes");
  return FALSE;
}

static gboolean
read_fixed (KinPbReader *r, guint nbytes, guint64 *out, GError **error)
{
  if ((gsize) (r->end - r->pos) < nbytes) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "protobuf: truncated fixed%u field", nbytes * 8);
    return FALSE;
  }
  guint64 v = 0;
  for (guint i = 0; i < nbytes; i++)  /* little-endian on the wire */
    v |= (guint64) r->pos[i] << (8 * i);
  r->pos += nbytes;
  *out = v;
  return TRUE;
}

static gboolean
read_len (KinPbReader *r, KinPbField *f, GError **error)
{
  guint64 len;
  if (!read_varint (r, &len, error))
    return FALSE;
  if (len > (guint64) (r->end - r->pos)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "protobuf: field %u claims %" G_GUINT64_FORMAT " bytes, %zu left",
                 f->number, len, (gsize) (r->end - r->pos));
    return FALSE;
  }
  f->data = r->pos;
  f->len = (gsize) len;
  r->pos += len;
  return TRUE;
}

gboolean
kin_pb_reader_next (KinPbReader *r, KinPbField *f, GError **error)
{
  memset (f, 0, sizeof *f);
  if (r->pos >= r->end)
    return FALSE;
  guint64 key;
  if (!read_varint (r, &key, error))
    return FALSE;
  guint64 number = key >> 3;
  if (number == 0 || number > 0x1fffffff) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "protobuf: invalid field number %" G_GUINT64_FORMAT, number);
    return FALSE;
  }
  f->number = (guint32) number;
  f->wire = (KinPbWireType) (key & 7);
  switch ((guint) f->wire) {
  case KIN_PB_VARINT:
    return read_varint (r, &f->value, error);
  case KIN_PB_FIXED64:
    return read_fixed (r, 8, &f->value, error);
  case KIN_PB_FIXED32:
    return read_fixed (r, 4, &f->value, error);
  case KIN_PB_LEN:
    return read_len (r, f, error);
  default:
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "protobuf: unsupported wire type %u (field %u)", (guint) f->wire, f->number);
    return FALSE;
  }
}

gint32
kin_pb_field_int32 (const KinPbField *f)
{
  return (gint32) (guint32) (f->value & 0xffffffffu);
}

float
kin_pb_field_float (const KinPbField *f)
{
  guint32 bits = (guint32) f->value;
  float v;
  memcpy (&v, &bits, sizeof v);
  return v;
}

gboolean
kin_pb_field_bool (const KinPbField *f)
{
  return f->value != 0;
}
