/* kin-protobuf.h — a minimal, bounds-checked reader of the protobuf wire format.
 *
 * Enough for SentencePiece's `spiece.model` (proto2): it walks the fields of one message and hands
 * out varints, fixed32/fixed64 values and length-delimited byte ranges (strings, bytes, nested
 * messages).  Nothing is copied: a KinPbField points into the caller's buffer.  Every read is
 * checked against the end of the buffer, so a truncated or corrupt message gives a GError, never
 * an out-of-bounds read.  Groups (wire types 3 and 4, deprecated) are rejected. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  KIN_PB_VARINT = 0,
  KIN_PB_FIXED64 = 1,
  KIN_PB_LEN = 2,
  KIN_PB_FIXED32 = 5,
} KinPbWireType;

typedef struct {
  const guint8 *pos;
  const guint8 *end;
} KinPbReader;

typedef struct {
  guint32 number;       /* field number (≥ 1) */
  KinPbWireType wire;
  guint64 value;        /* VARINT, FIXED64, FIXED32 (zero-extended) */
  const guint8 *data;   /* LEN: start of the payload */
  gsize len;            /* LEN: payload size in bytes */
} KinPbField;

void      kin_pb_reader_init (KinPbReader *r, const void *data, gsize len);

/* Reads the next field.  Returns FALSE at the end of the message (with @error unset) or on a
 * malformed field (with @error set, code KIN_ENGINE_ERROR_BAD_FILE). */
gboolean  kin_pb_reader_next (KinPbReader *r, KinPbField *field, GError **error);

/* A reader over a LEN field's payload (a nested message). */
void      kin_pb_reader_init_sub (KinPbReader *sub, const KinPbField *field);

/* Interpretations of a field's value.  proto2 int32 fields keep the low 32 bits of the varint
 * (negative numbers are written as 10-byte varints). */
gint32    kin_pb_field_int32 (const KinPbField *field);
float     kin_pb_field_float (const KinPbField *field);
gboolean  kin_pb_field_bool (const KinPbField *field);

G_END_DECLS
