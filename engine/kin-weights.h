/* kin-weights.h — weight sets: name → (dtype, shape, bytes) over one or more checkpoint files.
 *
 * Files are memory-mapped and never read whole.  A set is filled from:
 *   - a safetensors file (kin-safetensors.c),
 *   - a sharded safetensors checkpoint through its *.safetensors.index.json,
 *   - a PyTorch zip checkpoint .pth/.bin (kin-pth.c), or a sharded one through
 *     pytorch_model.bin.index.json,
 *   - a folder: the first of model.safetensors, diffusion_pytorch_model.safetensors,
 *     *.safetensors.index.json, pytorch_model.bin(.index.json) found in it.
 * Models look tensors up by name and get one clear GError per problem, naming the key, the file,
 * and the expected and actual shape. */
#pragma once

#include "kin-types.h"
#include "kin-tensor.h"
#include "kin-backend.h"

G_BEGIN_DECLS

typedef struct {
  const char *name;
  KinDType dtype;
  int ndim;
  int64_t shape[KIN_MAX_DIMS];
  const void *data;     /* host pointer into the mapped file (or owned memory) */
  size_t nbytes;
  const char *file;     /* the file it came from, for messages */
} KinWeightEntry;

KinWeights *kin_weights_new (void);
/* Opens a file or folder as described above.  NULL and @error on failure. */
KinWeights *kin_weights_open (const char *path, GError **error);
/* Adds every tensor of one file (format chosen by content, not by name). */
gboolean    kin_weights_add_file (KinWeights *ws, const char *path, GError **error);
void        kin_weights_free (KinWeights *ws);

guint                 kin_weights_count (KinWeights *ws);
/* Entries in file order. */
const KinWeightEntry *kin_weights_nth (KinWeights *ws, guint i);
/* NULL when absent.  Marks the entry used. */
const KinWeightEntry *kin_weights_lookup (KinWeights *ws, const char *name);
gboolean              kin_weights_contains (KinWeights *ws, const char *name);
/* A description of where the set came from ("model.safetensors", "3 shards in …"). */
const char           *kin_weights_source (KinWeights *ws);

/* Checks that @name exists with exactly @ndim / @shape (a dim of -1 matches any size).
 * On failure: KIN_ENGINE_ERROR_BAD_WEIGHTS naming the key, the file, expected and actual shape. */
const KinWeightEntry *kin_weights_require (KinWeights *ws, const char *name, int ndim,
                                           const int64_t *shape, GError **error);
/* Requires the tensor, converts it to f32 and uploads it to @be. */
KinTensor  *kin_weights_get_f32 (KinWeights *ws, KinBackend *be, const char *name, int ndim,
                                 const int64_t *shape, GError **error);
/* Like _get_f32 but keeps F16/BF16 storage (F32 stays F32; other dtypes are converted to F32). */
KinTensor  *kin_weights_get_native (KinWeights *ws, KinBackend *be, const char *name, int ndim,
                                    const int64_t *shape, GError **error);
/* The weight matrix of a linear layer in the storage @be prefers: F16/BF16 kept; anything else
 * becomes BF16 when be->linear_weights_bf16 (device backends: half the memory), else F32 (the
 * CPU: exactly _get_native). */
KinTensor  *kin_weights_get_linear (KinWeights *ws, KinBackend *be, const char *name, int ndim,
                                    const int64_t *shape, GError **error);
/* Host f32 copy of an entry (g_free); NULL on an unsupported dtype. */
float      *kin_weight_entry_to_f32 (const KinWeightEntry *e);

/* Names that were never looked up, in file order (NULL-terminated, free with g_strfreev). */
char      **kin_weights_unused (KinWeights *ws);
/* Logs one g_warning listing the unused keys (if any), with @what as the model name. */
void        kin_weights_warn_unused (KinWeights *ws, const char *what);

/* Low-level: used by the readers.  @data must stay valid as long as @keep_alive (unref'd with the
 * set).  Fails (BAD_FILE) on a duplicate name. */
gboolean    kin_weights_add_entry (KinWeights *ws, const char *name, KinDType dtype, int ndim,
                                   const int64_t *shape, const void *data, size_t nbytes,
                                   const char *file, GError **error);
/* Records @path as where the set came from, unless a source is already known. */
void        kin_weights_note_source (KinWeights *ws, const char *path);
/* Keeps @mapping (a GMappedFile) or @bytes (GBytes) alive for the lifetime of the set. */
void        kin_weights_keep_mapping (KinWeights *ws, GMappedFile *mapping);
void        kin_weights_keep_bytes (KinWeights *ws, GBytes *bytes);

/* --- readers (each adds to an existing set) --- */
/* safetensors: strict header validation; F64/F32/F16/BF16/I64/I32/I16/I8/U8/BOOL. */
gboolean    kin_safetensors_load (KinWeights *ws, const char *path, GError **error);
/* Parses a safetensors header held in memory (for the fuzzer and the loader).  @data/@len is the
 * whole file.  Adds entries pointing into @data. */
gboolean    kin_safetensors_parse (KinWeights *ws, const guint8 *data, size_t len,
                                   const char *file, GError **error);
/* PyTorch zip checkpoints (.pth, .bin): see kin-pth.c. */
gboolean    kin_pth_load (KinWeights *ws, const char *path, GError **error);
gboolean    kin_pth_parse (KinWeights *ws, const guint8 *data, size_t len, const char *file,
                           GError **error);
/* Sharded checkpoints through an index json ("weight_map"). */
gboolean    kin_weights_load_index (KinWeights *ws, const char *index_path, GError **error);

/* Writes a safetensors file.  @metadata may be NULL (string → string).  Writes to a temporary
 * file and renames it into place. */
gboolean    kin_safetensors_write (const char *path, guint n, const char *const *names,
                                   const KinDType *dtypes, const int *ndims,
                                   const int64_t *const *shapes, const void *const *datas,
                                   GHashTable *metadata, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinWeights, kin_weights_free)

G_END_DECLS
