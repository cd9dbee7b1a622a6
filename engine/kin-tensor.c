/* kin-tensor.c — tensor bookkeeping and host-side dtype conversion. */
#include "kin-tensor.h"
#include "kin-backend.h"
#include "kin-error.h"
#include <stdarg.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_info[KIN_DTYPE_COUNT] = {
  [KIN_DTYPE_F32] = { "F32", 4 },  [KIN_DTYPE_F16] = { "F16", 2 },
  [KIN_DTYPE_BF16] = { "BF16", 2 }, [KIN_DTYPE_F64] = { "F64", 8 },
  [KIN_DTYPE_I64] = { "I64", 8 },  [KIN_DTYPE_I32] = { "I32", 4 },
  [KIN_DTYPE_I16] = { "I16", 2 },  [KIN_DTYPE_I8] = { "I8", 1 },
  [KIN_DTYPE_U8] = { "U8", 1 },    [KIN_DTYPE_BOOL] = { "BOOL", 1 },
};

size_t
kin_dtype_size (KinDType dtype)
{
  return (unsigned) dtype < KIN_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

const char *
kin_dtype_name (KinDType dtype)
{
  return (unsigned) dtype < KIN_DTYPE_COUNT ? dtype_info[dtype].name : NULL;
}

gboolean
kin_dtype_from_name (const char *name, KinDType *out)
{
  for (int i = 0; i < KIN_DTYPE_COUNT; i++)
    if (g_strcmp0 (name, dtype_info[i].name) == 0) {
      *out = (KinDType) i;
      return TRUE;
    }
  return FALSE;
}

gboolean
kin_shape_numel_checked (int ndim, const int64_t *shape, int64_t *out)
{
  int64_t n = 1;
  if (ndim < 0 || ndim > KIN_MAX_DIMS)
    return FALSE;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return FALSE;
    if (shape[i] != 0 && n > G_MAXINT64 / shape[i])
      return FALSE;
    n *= shape[i];
  }
  *out = n;
  return TRUE;
}

char *
kin_shape_to_string (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

KinTensor *
kin_tensor_new (KinBackend *backend, KinDType dtype, int ndim, const int64_t *shape,
                GError **error)
{
  int64_t numel;
  if (kin_dtype_size (dtype) == 0 || !kin_shape_numel_checked (ndim, shape, &numel) ||
      numel > G_MAXINT64 / 8) {
    g_autofree char *s = ndim >= 0 && ndim <= KIN_MAX_DIMS ? kin_shape_to_string (ndim, shape)
                                                           : g_strdup ("?");
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "impossible tensor shape %s", s);
    return NULL;
  }
  size_t bytes = (size_t) numel * kin_dtype_size (dtype);
  void *data = backend->alloc (backend, bytes ? bytes : 1);
  if (data == NULL) {
    g_autofree char *s = kin_shape_to_string (ndim, shape);
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY,
                 "out of %s memory allocating a %s tensor of %.1f MiB; %s", backend->name, s,
                 bytes / (1024.0 * 1024.0), KIN_BACKEND_OOM_HINT);
    return NULL;
  }
  KinTensor *t = g_new0 (KinTensor, 1);
  t->dtype = dtype;
  t->ndim = ndim;
  memcpy (t->shape, shape, sizeof (int64_t) * ndim);
  t->data = data;
  t->backend = backend;
  t->owns_data = TRUE;
  return t;
}

KinTensor *
kin_tensor_new_f32 (KinBackend *backend, GError **error, int ndim, ...)
{
  int64_t shape[KIN_MAX_DIMS] = { 0 };
  va_list ap;
  g_return_val_if_fail (ndim >= 0 && ndim <= KIN_MAX_DIMS, NULL);
  va_start (ap, ndim);
  for (int i = 0; i < ndim; i++)
    shape[i] = va_arg (ap, int64_t);
  va_end (ap);
  return kin_tensor_new (backend, KIN_DTYPE_F32, ndim, shape, error);
}

KinTensor *
kin_tensor_view (const KinTensor *t, size_t elem_offset, int ndim, const int64_t *shape)
{
  KinTensor *v = g_new0 (KinTensor, 1);
  g_return_val_if_fail (ndim >= 0 && ndim <= KIN_MAX_DIMS, NULL);
  v->dtype = t->dtype;
  v->ndim = ndim;
  memcpy (v->shape, shape, sizeof (int64_t) * ndim);
  v->data = (char *) t->data + elem_offset * kin_dtype_size (t->dtype);
  v->backend = t->backend;
  v->owns_data = FALSE;
  return v;
}

void
kin_tensor_free (KinTensor *t)
{
  if (t == NULL)
    return;
  if (t->owns_data && t->data)
    t->backend->free (t->backend, t->data);
  g_free (t);
}

int64_t
kin_tensor_numel (const KinTensor *t)
{
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

size_t
kin_tensor_nbytes (const KinTensor *t)
{
  return (size_t) kin_tensor_numel (t) * kin_dtype_size (t->dtype);
}

int64_t
kin_tensor_dims (const KinTensor *t, int from, int to)
{
  int64_t n = 1;
  for (int i = from; i < to && i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

gboolean
kin_tensor_same_shape (const KinTensor *a, const KinTensor *b)
{
  if (a->ndim != b->ndim)
    return FALSE;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return FALSE;
  return TRUE;
}

/* --- half precision --- */

float
kin_bf16_to_f32 (uint16_t h)
{
  uint32_t u = (uint32_t) h << 16;
  float f;
  memcpy (&f, &u, 4);
  return f;
}

uint16_t
kin_f32_to_bf16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a NaN */
    return (uint16_t) ((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t) (u >> 16);
}

float
kin_round_bf16 (float f)
{
  return kin_bf16_to_f32 (kin_f32_to_bf16 (f));
}

float
kin_f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      u = sign | ((uint32_t) (127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy (&f, &u, 4);
  return f;
}

uint16_t
kin_f32_to_f16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u)
    return (uint16_t) (sign | 0x7e00u);
  if (absu >= 0x477ff000u) /* rounds to ≥ 65520 → inf */
    return (uint16_t) (sign | 0x7c00u);
  if (absu < 0x38800000u) { /* subnormal or zero in f16 */
    if (absu < 0x33000000u)
      return (uint16_t) sign;
    uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int) (absu >> 23); /* 14 + (113 - e) */
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u)))
      half++;
    return (uint16_t) (sign | half);
  }
  uint32_t v = absu - 0x38000000u; /* rebias exponent 127 → 15 */
  uint32_t half = v >> 13;
  uint32_t rem = v & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
    half++;
  return (uint16_t) (sign | half);
}

gboolean
kin_convert_to_f32 (float *dst, const void *src, KinDType src_dtype, size_t n)
{
  switch (src_dtype) {
  case KIN_DTYPE_F32: memmove (dst, src, n * 4); return TRUE;
  case KIN_DTYPE_F16: { const uint16_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = kin_f16_to_f32 (s[i]); return TRUE; }
  case KIN_DTYPE_BF16: { const uint16_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = kin_bf16_to_f32 (s[i]); return TRUE; }
  case KIN_DTYPE_F64: { const double *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float) s[i]; return TRUE; }
  case KIN_DTYPE_I64: { const int64_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float) s[i]; return TRUE; }
  case KIN_DTYPE_I32: { const int32_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float) s[i]; return TRUE; }
  case KIN_DTYPE_I16: { const int16_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float) s[i]; return TRUE; }
  case KIN_DTYPE_I8: { const int8_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float) s[i]; return TRUE; }
  case KIN_DTYPE_U8:
  case KIN_DTYPE_BOOL: { const uint8_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float) s[i]; return TRUE; }
  default: return FALSE;
  }
}

gboolean
kin_convert_from_f32 (void *dst, KinDType dst_dtype, const float *src, size_t n)
{
  switch (dst_dtype) {
  case KIN_DTYPE_F32: memmove (dst, src, n * 4); return TRUE;
  case KIN_DTYPE_F16: { uint16_t *d = dst; for (size_t i = 0; i < n; i++) d[i] = kin_f32_to_f16 (src[i]); return TRUE; }
  case KIN_DTYPE_BF16: { uint16_t *d = dst; for (size_t i = 0; i < n; i++) d[i] = kin_f32_to_bf16 (src[i]); return TRUE; }
  default: return FALSE;
  }
}
