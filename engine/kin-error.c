#include "kin-error.h"

G_DEFINE_QUARK (kin-engine-error-quark, kin_engine_error)
