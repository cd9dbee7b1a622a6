/* kin-tensor.h — the tensor type: dtype, shape (row-major, contiguous), data, owning backend.
 *
 * A tensor either owns its memory (allocated through its backend) or is a view into another
 * tensor's memory (kin_tensor_view); views never free.  Data pointers of the CPU backend are host
 * pointers; those of a device backend are device pointers and must not be dereferenced on the
 * host (use kin_backend_download/upload). */
#pragma once

#include "kin-types.h"
#include <stddef.h>

G_BEGIN_DECLS

struct _KinTensor {
  KinDType dtype;
  int ndim;
  int64_t shape[KIN_MAX_DIMS];
  void *data;
  KinBackend *backend;
  gboolean owns_data;
};

/* Size of one element in bytes (0 for an invalid dtype). */
size_t       kin_dtype_size (KinDType dtype);
/* Upper-case safetensors spelling: "F32", "BF16", … ; NULL for an invalid value. */
const char  *kin_dtype_name (KinDType dtype);
/* Parses the safetensors spelling; returns FALSE for an unknown name. */
gboolean     kin_dtype_from_name (const char *name, KinDType *out);

/* New tensor owned by @backend, contents uninitialised (zeroed on the CPU backend).  NULL and
 * @error set (KIN_ENGINE_ERROR_OUT_OF_MEMORY or BAD_INPUT) when the size is impossible. */
KinTensor   *kin_tensor_new (KinBackend *backend, KinDType dtype, int ndim,
                             const int64_t *shape, GError **error);
/* Convenience for up to 4 dims; pass ndim and the sizes. Aborts-free: returns NULL on failure. */
KinTensor   *kin_tensor_new_f32 (KinBackend *backend, GError **error, int ndim, ...);
/* A view of @t's memory starting @elem_offset elements in, with a new shape; does not own data.
 * The caller guarantees the view fits inside @t. */
KinTensor   *kin_tensor_view (const KinTensor *t, size_t elem_offset, int ndim, const int64_t *shape);
void         kin_tensor_free (KinTensor *t);

int64_t      kin_tensor_numel (const KinTensor *t);
size_t       kin_tensor_nbytes (const KinTensor *t);
/* Product of shape[from..to) . */
int64_t      kin_tensor_dims (const KinTensor *t, int from, int to);
gboolean     kin_tensor_same_shape (const KinTensor *a, const KinTensor *b);
/* "[2, 4, 8]" — for messages; free with g_free. */
char        *kin_shape_to_string (int ndim, const int64_t *shape);

/* Checked product of dims; FALSE on overflow or a negative dim. */
gboolean     kin_shape_numel_checked (int ndim, const int64_t *shape, int64_t *out);

/* Host-side element conversion.  @src has @n elements of @src_dtype; @dst gets f32.
 * Supports F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL.  Returns FALSE for others. */
gboolean     kin_convert_to_f32 (float *dst, const void *src, KinDType src_dtype, size_t n);
/* f32 → F32/F16/BF16 (round to nearest even). */
gboolean     kin_convert_from_f32 (void *dst, KinDType dst_dtype, const float *src, size_t n);

float        kin_bf16_to_f32 (uint16_t h);
uint16_t     kin_f32_to_bf16 (float f);
float        kin_f16_to_f32 (uint16_t h);
uint16_t     kin_f32_to_f16 (float f);
/* Rounds @f to the nearest bf16 value and back (used to reproduce upstream's bf16 quirks). */
float        kin_round_bf16 (float f);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinTensor, kin_tensor_free)

G_END_DECLS
