/* kin-error.h — the KIN_ENGINE_ERROR GError domain. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define KIN_ENGINE_ERROR (kin_engine_error_quark ())

typedef enum {
  KIN_ENGINE_ERROR_FAILED,        /* anything without a better code */
  KIN_ENGINE_ERROR_BAD_WEIGHTS,   /* missing, mis-shaped or corrupt weights */
  KIN_ENGINE_ERROR_BAD_FILE,      /* a file that is not what it claims to be */
  KIN_ENGINE_ERROR_BAD_INPUT,     /* impossible sizes, bad arguments */
  KIN_ENGINE_ERROR_OUT_OF_MEMORY, /* host or device allocation failed */
  KIN_ENGINE_ERROR_NO_DEVICE,     /* the requested backend is not available */
  KIN_ENGINE_ERROR_CANCELLED,     /* the job was cancelled */
  KIN_ENGINE_ERROR_IO,            /* reading or writing a file failed */
  KIN_ENGINE_ERROR_UNSUPPORTED,   /* valid input this engine does not handle */
} KinEngineError;

GQuark kin_engine_error_quark (void);

G_END_DECLS
