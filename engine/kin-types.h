/* kin-types.h — forward declarations shared by every layer of the engine. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define KIN_MAX_DIMS 6

typedef enum {
  KIN_DTYPE_F32 = 0,
  KIN_DTYPE_F16,
  KIN_DTYPE_BF16,
  KIN_DTYPE_F64,
  KIN_DTYPE_I64,
  KIN_DTYPE_I32,
  KIN_DTYPE_I16,
  KIN_DTYPE_I8,
  KIN_DTYPE_U8,
  KIN_DTYPE_BOOL,
  KIN_DTYPE_COUNT
} KinDType;

typedef struct _KinTensor KinTensor;
typedef struct _KinBackend KinBackend;
typedef struct _KinWeights KinWeights;

G_END_DECLS
