/* kin-pth.c — PyTorch zip checkpoints (.pth / .bin / .ckpt written by torch.save ≥ 1.6).
 *
 * The file is a ZIP archive of STORED records under one top folder whose name varies
 * ("archive/", "<file stem>/"): "<a>/data.pkl" holds the pickled object and "<a>/data/<key>"
 * the raw little-endian bytes of each storage.  See spec/t5-vae-formats.md §4.2.
 *
 * Two parts:
 *   - a ZIP reader (EOCD, ZIP64 locator/record and extra fields, central directory, local
 *     headers) that checks every offset and size against the buffer and never inflates;
 *   - a small pickle VM for the opcodes torch.save emits (protocol 2, tolerant of 3–5).  Globals
 *     are opaque symbols, never executed; only collections.OrderedDict,
 *     torch._utils._rebuild_tensor(_v2), torch._utils._rebuild_parameter(_with_state) and the
 *     torch.*Storage classes (through BINPERSID) have meaning.  Any other call yields an opaque
 *     value, which is fine as long as it is not a tensor of the state dict.
 *
 * Which dict is the state dict: the unpickled root must be a dict.  While it has one of the keys
 * "state_dict", "model", "ema", "module" with a dict value, the first of those in that order is
 * descended into (Lightning .ckpt: "state_dict"; training checkpoints: "model"; a few: "ema").
 * Upstream Open-Sora v1.0 .pth files are flat.  Values of the chosen dict that are not tensors
 * (step counters, nested metadata) are skipped.
 *
 * Tensors must be contiguous (row-major); a strided one is rejected with its key.  Entries point
 * into @data at the storage record plus the storage offset.
 *
 * Hostile input: every read is bounds-checked; the VM limits its stack, MARK nesting, container
 * nesting, memo size, number of objects and elements; shapes go through kin_shape_numel_checked
 * and the tensor's element range is checked against the storage, and the storage against its
 * record.  Every failure is a GError; the VM keeps all its objects in one array, so nothing leaks
 * on any path. */
#include "kin-weights.h"
#include "kin-error.h"
#include <stdarg.h>
#include <string.h>

/* --- limits --- */
#define PTH_MAX_ZIP_ENTRIES (1u << 20)
#define PTH_MAX_STACK       (1u << 20)   /* values on the pickle stack */
#define PTH_MAX_DEPTH       64           /* nested MARKs, nested containers */
#define PTH_MAX_MEMO        (1u << 20)   /* memo slots (index limit) */
#define PTH_MAX_OBJECTS     (1u << 20)   /* heap objects (strings, containers, tensors…) */
#define PTH_MAX_ELEMENTS    (1u << 23)   /* container slots, all containers together */
#define PTH_MAX_KEY_LEN     65536        /* bytes in a state-dict key */
#define PTH_MAX_GLOBAL_LINE 1024         /* bytes in one line of a GLOBAL opcode */

static const char *
file_or_default (const char *file)
{
  return file != NULL ? file : "(memory)";
}

static inline guint16
rd16 (const guint8 *p)
{
  return (guint16) (p[0] | (p[1] << 8));
}

static inline guint32
rd32 (const guint8 *p)
{
  return (guint32) p[0] | ((guint32) p[1] << 8) | ((guint32) p[2] << 16) | ((guint32) p[3] << 24);
}

static inline guint64
rd64 (const guint8 *p)
{
  return (guint64) rd32 (p) | ((guint64) rd32 (p + 4) << 32);
}

/* A printable (valid UTF-8, bounded) copy of a name taken from the file, for messages. */
static char *
printable (const char *s, gsize n)
{
  if (n > 200)
    n = 200;
  char *v = g_utf8_make_valid (s, (gssize) n);
  for (char *p = v; *p; p++)
    if ((unsigned char) *p < 0x20)
      *p = '?';
  return v;
}

/* ============================================================================================
 * ZIP
 * ============================================================================================ */

#define ZIP_SIG_LOCAL   0x04034b50u
#define ZIP_SIG_CENTRAL 0x02014b50u
#define ZIP_SIG_EOCD    0x06054b50u
#define ZIP_SIG_EOCD64  0x06064b50u
#define ZIP_SIG_LOC64   0x07064b50u

typedef struct {
  const char *name;     /* into the buffer, not NUL-terminated */
  gsize name_len;
  guint16 method;
  guint64 comp_size;
  guint64 size;
  const guint8 *data;   /* start of the (stored or compressed) bytes, from the local header */
} ZipEntry;

typedef struct {
  const guint8 *buf;
  gsize len;
  const char *file;
  ZipEntry *entries;
  gsize n_entries;
  GHashTable *by_name;  /* owned NUL-terminated name → ZipEntry* */
} Zip;

static gboolean G_GNUC_PRINTF (3, 4)
zip_fail (Zip *z, GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
               "%s: not a valid PyTorch zip checkpoint: %s", file_or_default (z->file), msg);
  return FALSE;
}

static void
zip_clear (Zip *z)
{
  g_clear_pointer (&z->by_name, g_hash_table_unref);
  g_clear_pointer (&z->entries, g_free);
}

/* Looks for the ZIP64 extra field (id 1) in @extra/@xlen and, for each of the 32-bit values that
 * are 0xFFFFFFFF (in the order size, compressed size, local offset) reads the 64-bit value. */
static gboolean
zip64_extra (Zip *z, const char *what, const guint8 *extra, gsize xlen, guint64 *size,
             guint64 *comp, guint64 *off, GError **error)
{
  gsize q = 0;
  while (xlen - q >= 4) {
    guint16 id = rd16 (extra + q);
    guint16 sz = rd16 (extra + q + 2);
    if (sz > xlen - q - 4)
      return zip_fail (z, error, "extra field of %s runs past its header", what);
    if (id == 1) {
      const guint8 *f = extra + q + 4;
      gsize r = 0;
      guint64 *vals[3] = { size, comp, off };
      for (int i = 0; i < 3; i++) {
        if (vals[i] == NULL || *vals[i] != 0xFFFFFFFFu)
          continue;
        if (sz - r < 8)
          return zip_fail (z, error, "ZIP64 extra field of %s is too short", what);
        *vals[i] = rd64 (f + r);
        r += 8;
      }
      return TRUE;
    }
    q += 4 + (gsize) sz;
  }
  return TRUE;
}

static gboolean
zip_open (Zip *z, const guint8 *buf, gsize len, const char *file, GError **error)
{
  memset (z, 0, sizeof *z);
  z->buf = buf;
  z->len = len;
  z->file = file;

  if (buf == NULL || len < 22)
    return zip_fail (z, error, "too short (%" G_GSIZE_FORMAT " bytes)", len);

  /* End of central directory: the last signature whose comment fits in the file. */
  gsize lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
  gsize eocd = G_MAXSIZE;
  for (gsize p = len - 22;; p--) {
    if (rd32 (buf + p) == ZIP_SIG_EOCD && rd16 (buf + p + 20) <= len - p - 22) {
      eocd = p;
      break;
    }
    if (p == lo)
      break;
  }
  if (eocd == G_MAXSIZE)
    return zip_fail (z, error, "no end-of-central-directory record");

  const guint8 *e = buf + eocd;
  guint64 disk = rd16 (e + 4), cd_disk = rd16 (e + 6);
  guint64 n_disk = rd16 (e + 8), n_total = rd16 (e + 10);
  guint64 cd_size = rd32 (e + 12), cd_off = rd32 (e + 16);
  gsize limit = eocd;   /* the central directory ends before this */

  if (eocd >= 20 && rd32 (buf + eocd - 20) == ZIP_SIG_LOC64) {
    const guint8 *l = buf + eocd - 20;
    guint64 z64 = rd64 (l + 8);
    if (rd32 (l + 4) != 0 || rd32 (l + 16) > 1)
      return zip_fail (z, error, "multi-disk archives are not supported");
    if (z64 > eocd - 20 || eocd - 20 - z64 < 56)
      return zip_fail (z, error, "ZIP64 end-of-central-directory offset %" G_GUINT64_FORMAT
                       " is out of range", z64);
    const guint8 *r = buf + z64;
    if (rd32 (r) != ZIP_SIG_EOCD64)
      return zip_fail (z, error, "ZIP64 end-of-central-directory record not found at %"
                       G_GUINT64_FORMAT, z64);
    disk = rd32 (r + 16);
    cd_disk = rd32 (r + 20);
    n_disk = rd64 (r + 24);
    n_total = rd64 (r + 32);
    cd_size = rd64 (r + 40);
    cd_off = rd64 (r + 48);
    limit = (gsize) z64;
  } else if (n_total == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    return zip_fail (z, error, "ZIP64 values without a ZIP64 locator");
  }

  if (disk != 0 || cd_disk != 0 || n_disk != n_total)
    return zip_fail (z, error, "multi-disk archives are not supported");
  if (cd_off > limit || cd_size > limit - cd_off)
    return zip_fail (z, error, "central directory (offset %" G_GUINT64_FORMAT ", size %"
                     G_GUINT64_FORMAT ") lies outside the file", cd_off, cd_size);
  if (n_total > cd_size / 46 || n_total > PTH_MAX_ZIP_ENTRIES)
    return zip_fail (z, error, "central directory claims %" G_GUINT64_FORMAT
                     " entries in %" G_GUINT64_FORMAT " bytes", n_total, cd_size);

  z->entries = g_new0 (ZipEntry, n_total > 0 ? n_total : 1);
  z->by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  gsize p = (gsize) cd_off, end = (gsize) (cd_off + cd_size);
  for (guint64 i = 0; i < n_total; i++) {
    if (end - p < 46 || rd32 (buf + p) != ZIP_SIG_CENTRAL)
      return zip_fail (z, error, "central directory entry %" G_GUINT64_FORMAT
                       " is missing or truncated", i);
    const guint8 *c = buf + p;
    guint16 flags = rd16 (c + 8), method = rd16 (c + 10);
    guint64 comp = rd32 (c + 20), size = rd32 (c + 24);
    gsize nlen = rd16 (c + 28), xlen = rd16 (c + 30), clen = rd16 (c + 32);
    guint64 disk_start = rd16 (c + 34), loff = rd32 (c + 42);
    if (46 + nlen + xlen + clen > end - p)
      return zip_fail (z, error, "central directory entry %" G_GUINT64_FORMAT
                       " runs past the directory", i);
    const char *name = (const char *) c + 46;
    if (nlen == 0 || memchr (name, '\0', nlen) != NULL)
      return zip_fail (z, error, "central directory entry %" G_GUINT64_FORMAT
                       " has an invalid name", i);
    g_autofree char *pname = printable (name, nlen);
    if (!zip64_extra (z, pname, c + 46 + nlen, xlen, &size, &comp, &loff, error))
      return FALSE;
    if (disk_start != 0 && disk_start != 0xFFFF)
      return zip_fail (z, error, "entry %s lies on another disk", pname);
    if (flags & 1)
      return zip_fail (z, error, "entry %s is encrypted", pname);
    if (method == 0 && comp != size)
      return zip_fail (z, error, "stored entry %s has compressed size %" G_GUINT64_FORMAT
                       " but size %" G_GUINT64_FORMAT, pname, comp, size);

    /* Local header: before the central directory, same name and method. */
    if (loff > cd_off || cd_off - loff < 30 || rd32 (buf + loff) != ZIP_SIG_LOCAL)
      return zip_fail (z, error, "local header of %s (offset %" G_GUINT64_FORMAT
                       ") is missing or out of range", pname, loff);
    const guint8 *h = buf + loff;
    guint16 lflags = rd16 (h + 6), lmethod = rd16 (h + 8);
    guint64 lcomp = rd32 (h + 18), lsize = rd32 (h + 22);
    gsize lnlen = rd16 (h + 26), lxlen = rd16 (h + 28);
    guint64 data_off = loff + 30 + lnlen + lxlen;
    if (data_off > cd_off)
      return zip_fail (z, error, "local header of %s runs into the central directory", pname);
    if (lnlen != nlen || memcmp (h + 30, name, nlen) != 0)
      return zip_fail (z, error, "local header of %s names another file", pname);
    if (lmethod != method)
      return zip_fail (z, error, "local header of %s disagrees on the compression method", pname);
    if (comp > cd_off - data_off)
      return zip_fail (z, error, "data of %s (offset %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                       " bytes) runs past the end of the entries", pname, data_off, comp);
    if (!(lflags & 8)) {
      /* Sizes are in the local header too (no data descriptor): they must agree. */
      gboolean known = TRUE;
      if (lcomp == 0xFFFFFFFFu || lsize == 0xFFFFFFFFu) {
        guint64 s64 = 0xFFFFFFFFu, c64 = 0xFFFFFFFFu;
        if (!zip64_extra (z, pname, h + 30 + lnlen, lxlen, &s64, &c64, NULL, error))
          return FALSE;
        if (lsize == 0xFFFFFFFFu)
          lsize = s64;
        if (lcomp == 0xFFFFFFFFu)
          lcomp = c64;
        known = lsize != 0xFFFFFFFFu && lcomp != 0xFFFFFFFFu;
      }
      if (known && (lsize != size || lcomp != comp))
        return zip_fail (z, error, "local header of %s says %" G_GUINT64_FORMAT
                         " bytes but the central directory says %" G_GUINT64_FORMAT,
                         pname, lsize, size);
    }

    char *key = g_strndup (name, nlen);
    if (g_hash_table_contains (z->by_name, key)) {
      g_free (key);
      return zip_fail (z, error, "entry %s appears twice", pname);
    }
    ZipEntry *ze = &z->entries[z->n_entries++];
    ze->name = name;
    ze->name_len = nlen;
    ze->method = method;
    ze->comp_size = comp;
    ze->size = size;
    ze->data = buf + data_off;
    g_hash_table_insert (z->by_name, key, ze);
    p += 46 + nlen + xlen + clen;
  }
  return TRUE;
}

/* The bytes of a stored entry; NULL with @error when absent or compressed. */
static const ZipEntry *
zip_stored (Zip *z, const char *name, GError **error)
{
  const ZipEntry *ze = g_hash_table_lookup (z->by_name, name);
  g_autofree char *pname = printable (name, strlen (name));
  if (ze == NULL) {
    zip_fail (z, error, "record %s is missing", pname);
    return NULL;
  }
  if (ze->method != 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "%s: record %s is compressed (method %u); only stored records are supported "
                 "(torch.save writes them stored)", file_or_default (z->file), pname, ze->method);
    return NULL;
  }
  return ze;
}

/* ============================================================================================
 * Pickle
 * ============================================================================================ */

typedef enum {
  PV_UNSET = 0,   /* an empty memo slot */
  PV_NONE,
  PV_BOOL,
  PV_INT,
  PV_FLOAT,
  PV_OBJ,
} PValKind;

typedef struct PObj PObj;

typedef struct {
  PValKind kind;
  union {
    gint64 i;
    double f;
    PObj *o;
  } u;
} PVal;

typedef enum {
  PO_STR,       /* unicode string (bytes of the pickle, UTF-8 not checked until needed) */
  PO_BYTES,
  PO_BIGINT,    /* an int wider than 64 bits: opaque */
  PO_GLOBAL,
  PO_TUPLE,
  PO_LIST,      /* also sets */
  PO_DICT,      /* key, value, key, value, … */
  PO_STORAGE,
  PO_TENSOR,
  PO_OPAQUE,    /* the result of calling or instantiating something we do not model */
  PO_INVALID,   /* a tensor or storage we cannot use; an error only if the state dict holds it */
} PObjKind;

struct PObj {
  PObjKind kind;
  int depth;    /* containers: 1 + the deepest element seen when it was added */
  union {
    struct { const char *p; gsize n; } str;
    struct { const char *mod; gsize mod_n; const char *name; gsize name_n; } g;
    struct { PVal *v; gsize n, cap; } seq;
    struct { KinDType dtype; const guint8 *data; guint64 nbytes; guint64 numel; } st;
    struct { KinDType dtype; int ndim; gint64 shape[KIN_MAX_DIMS]; const guint8 *data;
             gsize nbytes; } t;
    struct { char *msg; } inv;
  } u;
};

typedef struct {
  const guint8 *p;
  gsize n;
  gsize pos;        /* read position */
  gsize op_pos;     /* position of the opcode being executed, for messages */
  const char *file;
  Zip *zip;
  const char *prefix;   /* "<a>/" */
  GArray *stack;    /* PVal */
  GArray *marks;    /* gsize: stack heights */
  GArray *memo;     /* PVal, PV_UNSET for empty slots */
  guint memo_count;
  GPtrArray *objs;  /* every PObj (owned) */
  gsize n_elements;
  GError **error;
} Vm;

static void
pobj_free (gpointer data)
{
  PObj *o = data;
  switch (o->kind) {
  case PO_TUPLE:
  case PO_LIST:
  case PO_DICT:
    g_free (o->u.seq.v);
    break;
  case PO_INVALID:
    g_free (o->u.inv.msg);
    break;
  default:
    break;
  }
  g_free (o);
}

static gboolean G_GNUC_PRINTF (2, 3)
vm_fail (Vm *vm, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (vm->error != NULL && *vm->error == NULL)
    g_set_error (vm->error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: data.pkl, byte %" G_GSIZE_FORMAT ": %s", file_or_default (vm->file),
                 vm->op_pos, msg);
  return FALSE;
}

static PObj *
vm_new (Vm *vm, PObjKind kind)
{
  if (vm->objs->len >= PTH_MAX_OBJECTS) {
    vm_fail (vm, "more than %u objects", PTH_MAX_OBJECTS);
    return NULL;
  }
  PObj *o = g_new0 (PObj, 1);
  o->kind = kind;
  g_ptr_array_add (vm->objs, o);
  return o;
}

static PVal
val_obj (PObj *o)
{
  PVal v = { .kind = PV_OBJ, .u.o = o };
  return v;
}

static PObj *
val_as (PVal v, PObjKind kind)
{
  return v.kind == PV_OBJ && v.u.o->kind == kind ? v.u.o : NULL;
}

static gboolean
val_is_str (PVal v, const char *s)
{
  PObj *o = val_as (v, PO_STR);
  return o != NULL && o->u.str.n == strlen (s) && memcmp (o->u.str.p, s, o->u.str.n) == 0;
}

static gboolean
val_int (PVal v, gint64 *out)
{
  if (v.kind == PV_INT) {
    *out = v.u.i;
    return TRUE;
  }
  if (v.kind == PV_BOOL) {
    *out = v.u.i != 0;
    return TRUE;
  }
  return FALSE;
}

static int
val_depth (PVal v)
{
  return v.kind == PV_OBJ ? v.u.o->depth : 0;
}

static gboolean
global_is (PObj *g, const char *mod, const char *name)
{
  return g != NULL && g->kind == PO_GLOBAL && g->u.g.mod_n == strlen (mod) &&
         memcmp (g->u.g.mod, mod, g->u.g.mod_n) == 0 && g->u.g.name_n == strlen (name) &&
         memcmp (g->u.g.name, name, g->u.g.name_n) == 0;
}

static char *
global_string (PObj *g)
{
  g_autofree char *m = printable (g->u.g.mod, g->u.g.mod_n);
  g_autofree char *n = printable (g->u.g.name, g->u.g.name_n);
  return g_strdup_printf ("%s.%s", m, n);
}

static PObj *
vm_invalid (Vm *vm, char *msg /* taken */)
{
  PObj *o = vm_new (vm, PO_INVALID);
  if (o == NULL) {
    g_free (msg);
    return NULL;
  }
  o->u.inv.msg = msg;
  return o;
}

/* --- stack --- */

static gsize
vm_fence (Vm *vm)
{
  return vm->marks->len > 0 ? g_array_index (vm->marks, gsize, vm->marks->len - 1) : 0;
}

static gboolean
vm_push (Vm *vm, PVal v)
{
  if (vm->stack->len >= PTH_MAX_STACK)
    return vm_fail (vm, "stack deeper than %u", PTH_MAX_STACK);
  g_array_append_val (vm->stack, v);
  return TRUE;
}

static gboolean
vm_push_obj (Vm *vm, PObj *o)
{
  return o != NULL && vm_push (vm, val_obj (o));
}

static gboolean
vm_pop (Vm *vm, PVal *out)
{
  if (vm->stack->len <= vm_fence (vm))
    return vm_fail (vm, "stack underflow");
  *out = g_array_index (vm->stack, PVal, vm->stack->len - 1);
  g_array_set_size (vm->stack, vm->stack->len - 1);
  return TRUE;
}

static gboolean
vm_top (Vm *vm, PVal **out)
{
  if (vm->stack->len <= vm_fence (vm))
    return vm_fail (vm, "stack underflow");
  *out = &g_array_index (vm->stack, PVal, vm->stack->len - 1);
  return TRUE;
}

/* Pops the topmost MARK; the marked items are stack[*start ..]. */
static gboolean
vm_pop_mark (Vm *vm, gsize *start)
{
  if (vm->marks->len == 0)
    return vm_fail (vm, "no MARK on the stack");
  *start = g_array_index (vm->marks, gsize, vm->marks->len - 1);
  g_array_set_size (vm->marks, vm->marks->len - 1);
  return TRUE;
}

/* --- containers --- */

static gboolean
seq_add (Vm *vm, PObj *c, PVal v)
{
  if (vm->n_elements >= PTH_MAX_ELEMENTS)
    return vm_fail (vm, "more than %u container elements", PTH_MAX_ELEMENTS);
  int d = val_depth (v) + 1;
  if (d > PTH_MAX_DEPTH)
    return vm_fail (vm, "containers nested deeper than %d", PTH_MAX_DEPTH);
  if (d > c->depth)
    c->depth = d;
  if (c->u.seq.n == c->u.seq.cap) {
    gsize cap = c->u.seq.cap ? c->u.seq.cap * 2 : 4;
    c->u.seq.v = g_renew (PVal, c->u.seq.v, cap);
    c->u.seq.cap = cap;
  }
  c->u.seq.v[c->u.seq.n++] = v;
  vm->n_elements++;
  return TRUE;
}

/* A new container of @kind holding stack[start ..]; those items are removed. */
static PObj *
seq_from_stack (Vm *vm, PObjKind kind, gsize start)
{
  PObj *c = vm_new (vm, kind);
  if (c == NULL)
    return NULL;
  for (gsize i = start; i < vm->stack->len; i++)
    if (!seq_add (vm, c, g_array_index (vm->stack, PVal, i)))
      return NULL;
  g_array_set_size (vm->stack, start);
  return c;
}

/* Adds stack[start ..] (key, value pairs) to the dict at stack[start - 1]; removes them. */
static gboolean
setitems (Vm *vm, gsize start)
{
  gsize count = vm->stack->len - start;
  if (start == 0)
    return vm_fail (vm, "SETITEMS without a dict");
  if (count % 2 != 0)
    return vm_fail (vm, "SETITEMS with an odd number of items");
  PVal target = g_array_index (vm->stack, PVal, start - 1);
  PObj *d = val_as (target, PO_DICT);
  if (d != NULL) {
    for (gsize i = start; i < vm->stack->len; i++)
      if (!seq_add (vm, d, g_array_index (vm->stack, PVal, i)))
        return FALSE;
  } else if (val_as (target, PO_OPAQUE) == NULL) {
    return vm_fail (vm, "SETITEM(S) on something that is not a dict");
  }
  g_array_set_size (vm->stack, start);
  return TRUE;
}

/* Adds stack[start ..] to the list at stack[start - 1]; removes them. */
static gboolean
appends (Vm *vm, gsize start)
{
  if (start == 0)
    return vm_fail (vm, "APPEND(S) without a list");
  PVal target = g_array_index (vm->stack, PVal, start - 1);
  PObj *l = val_as (target, PO_LIST);
  if (l != NULL) {
    for (gsize i = start; i < vm->stack->len; i++)
      if (!seq_add (vm, l, g_array_index (vm->stack, PVal, i)))
        return FALSE;
  } else if (val_as (target, PO_OPAQUE) == NULL) {
    return vm_fail (vm, "APPEND(S) on something that is not a list");
  }
  g_array_set_size (vm->stack, start);
  return TRUE;
}

/* --- reading --- */

static gboolean
vm_read (Vm *vm, gsize k, const guint8 **out)
{
  if (vm->n - vm->pos < k)
    return vm_fail (vm, "truncated (needs %" G_GSIZE_FORMAT " more bytes)", k);
  *out = vm->p + vm->pos;
  vm->pos += k;
  return TRUE;
}

static gboolean
vm_read_line (Vm *vm, const char **s, gsize *n)
{
  gsize avail = vm->n - vm->pos;
  if (avail > PTH_MAX_GLOBAL_LINE)
    avail = PTH_MAX_GLOBAL_LINE;
  const guint8 *nl = memchr (vm->p + vm->pos, '\n', avail);
  if (nl == NULL)
    return vm_fail (vm, "GLOBAL name without a newline");
  *s = (const char *) vm->p + vm->pos;
  *n = (gsize) (nl - (vm->p + vm->pos));
  vm->pos += *n + 1;
  return TRUE;
}

/* Pushes a string of @len bytes read from the pickle. */
static gboolean
vm_string (Vm *vm, PObjKind kind, guint64 len)
{
  const guint8 *s;
  if (len > vm->n - vm->pos)
    return vm_fail (vm, "string of %" G_GUINT64_FORMAT " bytes runs past the end", len);
  if (!vm_read (vm, (gsize) len, &s))
    return FALSE;
  PObj *o = vm_new (vm, kind);
  if (o == NULL)
    return FALSE;
  o->u.str.p = (const char *) s;
  o->u.str.n = (gsize) len;
  return vm_push_obj (vm, o);
}

/* LONG1 / LONG4: little-endian two's complement of @n bytes. */
static gboolean
vm_long (Vm *vm, guint64 n)
{
  const guint8 *b;
  if (n > vm->n - vm->pos)
    return vm_fail (vm, "integer of %" G_GUINT64_FORMAT " bytes runs past the end", n);
  if (!vm_read (vm, (gsize) n, &b))
    return FALSE;
  if (n > 8)
    return vm_push_obj (vm, vm_new (vm, PO_BIGINT));
  guint64 u = 0;
  for (guint64 i = 0; i < n; i++)
    u |= (guint64) b[i] << (8 * i);
  if (n > 0 && n < 8 && (b[n - 1] & 0x80))
    u |= ~(guint64) 0 << (8 * n);
  PVal v = { .kind = PV_INT, .u.i = (gint64) u };
  return vm_push (vm, v);
}

/* --- memo --- */

static gboolean
memo_put (Vm *vm, guint64 idx)
{
  PVal *top = NULL;
  if (!vm_top (vm, &top))
    return FALSE;
  if (idx >= PTH_MAX_MEMO)
    return vm_fail (vm, "memo index %" G_GUINT64_FORMAT " is too large", idx);
  if (idx >= vm->memo->len)
    g_array_set_size (vm->memo, (guint) idx + 1);
  PVal *slot = &g_array_index (vm->memo, PVal, idx);
  if (slot->kind == PV_UNSET)
    vm->memo_count++;
  *slot = *top;
  return TRUE;
}

static gboolean
memo_get (Vm *vm, guint64 idx)
{
  if (idx >= vm->memo->len || g_array_index (vm->memo, PVal, idx).kind == PV_UNSET)
    return vm_fail (vm, "memo index %" G_GUINT64_FORMAT " was never stored", idx);
  return vm_push (vm, g_array_index (vm->memo, PVal, idx));
}

/* --- torch semantics --- */

static const struct {
  const char *name;
  KinDType dtype;
} storage_types[] = {
  { "FloatStorage", KIN_DTYPE_F32 },
  { "HalfStorage", KIN_DTYPE_F16 },
  { "BFloat16Storage", KIN_DTYPE_BF16 },
  { "DoubleStorage", KIN_DTYPE_F64 },
  { "LongStorage", KIN_DTYPE_I64 },
  { "IntStorage", KIN_DTYPE_I32 },
  { "ShortStorage", KIN_DTYPE_I16 },
  { "CharStorage", KIN_DTYPE_I8 },
  { "ByteStorage", KIN_DTYPE_U8 },
  { "BoolStorage", KIN_DTYPE_BOOL },
};

/* BINPERSID: ('storage', <torch.XStorage>, key, location, numel) → a storage over the record
 * <a>/data/<key>. */
static gboolean
persistent_load (Vm *vm, PVal pid)
{
  PObj *t = val_as (pid, PO_TUPLE);
  if (t == NULL || t->u.seq.n < 5 || !val_is_str (t->u.seq.v[0], "storage"))
    return vm_fail (vm, "unsupported persistent id (expected a ('storage', …) tuple)");
  PObj *type = val_as (t->u.seq.v[1], PO_GLOBAL);
  PObj *key = val_as (t->u.seq.v[2], PO_STR);
  gint64 numel;
  if (type == NULL || key == NULL || !val_int (t->u.seq.v[4], &numel) || numel < 0)
    return vm_fail (vm, "malformed storage persistent id");
  if (key->u.str.n == 0 || key->u.str.n > 256 || memchr (key->u.str.p, '\0', key->u.str.n))
    return vm_fail (vm, "malformed storage key");

  int found = -1;
  for (guint i = 0; i < G_N_ELEMENTS (storage_types); i++)
    if (global_is (type, "torch", storage_types[i].name))
      found = (int) i;
  if (found < 0) {
    g_autofree char *tn = global_string (type);
    return vm_push_obj (vm, vm_invalid (vm, g_strdup_printf (
        "uses storage type %s, which is not supported", tn)));
  }
  KinDType dtype = storage_types[found].dtype;
  size_t es = kin_dtype_size (dtype);

  g_autofree char *kstr = g_strndup (key->u.str.p, key->u.str.n);
  g_autofree char *rec = g_strconcat (vm->prefix, "data/", kstr, NULL);
  const ZipEntry *ze = zip_stored (vm->zip, rec, vm->error);
  if (ze == NULL)
    return FALSE;
  if ((guint64) numel > G_MAXUINT64 / es || (guint64) numel * es > ze->size) {
    g_autofree char *pk = printable (kstr, strlen (kstr));
    return vm_fail (vm, "storage %s declares %" G_GINT64_FORMAT " elements of %s but its record "
                    "holds %" G_GUINT64_FORMAT " bytes", pk, numel, kin_dtype_name (dtype),
                    ze->size);
  }
  PObj *st = vm_new (vm, PO_STORAGE);
  if (st == NULL)
    return FALSE;
  st->u.st.dtype = dtype;
  st->u.st.data = ze->data;
  st->u.st.numel = (guint64) numel;
  st->u.st.nbytes = (guint64) numel * es;
  return vm_push_obj (vm, st);
}

static gboolean
int_tuple (PVal v, int *n, gint64 *out, int max)
{
  PObj *t = val_as (v, PO_TUPLE);
  if (t == NULL)
    return FALSE;
  *n = (int) MIN (t->u.seq.n, (gsize) G_MAXINT);
  for (gsize i = 0; i < t->u.seq.n && (int) i < max; i++)
    if (!val_int (t->u.seq.v[i], &out[i]) || out[i] < 0)
      return FALSE;
  for (gsize i = (gsize) max; i < t->u.seq.n; i++) {
    gint64 x;
    if (!val_int (t->u.seq.v[i], &x) || x < 0)
      return FALSE;
  }
  return TRUE;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata])
 * or _rebuild_tensor(storage, storage_offset, size, stride). */
static PObj *
rebuild_tensor (Vm *vm, PObj *args, gboolean v2)
{
  gsize n = args->u.seq.n;
  if (v2 ? (n < 6 || n > 7) : n != 4) {
    vm_fail (vm, "_rebuild_tensor%s called with %" G_GSIZE_FORMAT " arguments", v2 ? "_v2" : "",
             n);
    return NULL;
  }
  PVal *a = args->u.seq.v;
  if (val_as (a[0], PO_INVALID) != NULL)
    return a[0].u.o;
  PObj *st = val_as (a[0], PO_STORAGE);
  if (st == NULL) {
    vm_fail (vm, "_rebuild_tensor: argument 0 is not a storage");
    return NULL;
  }
  gint64 offset, shape[KIN_MAX_DIMS], stride[KIN_MAX_DIMS];
  int ndim, nstride;
  if (!val_int (a[1], &offset) || offset < 0) {
    vm_fail (vm, "_rebuild_tensor: bad storage offset");
    return NULL;
  }
  if (!int_tuple (a[2], &ndim, shape, KIN_MAX_DIMS) ||
      !int_tuple (a[3], &nstride, stride, KIN_MAX_DIMS) || ndim != nstride) {
    vm_fail (vm, "_rebuild_tensor: size and stride must be tuples of non-negative ints of the "
             "same length");
    return NULL;
  }
  if (ndim > KIN_MAX_DIMS)
    return vm_invalid (vm, g_strdup_printf ("has %d dimensions (at most %d are supported)",
                                            ndim, KIN_MAX_DIMS));
  int64_t numel;
  if (!kin_shape_numel_checked (ndim, shape, &numel)) {
    g_autofree char *s = kin_shape_to_string (ndim, shape);
    vm_fail (vm, "impossible tensor shape %s", s);
    return NULL;
  }
  /* Element range [offset, last] must lie inside the storage. */
  guint64 last = (guint64) offset;
  gboolean overflow = FALSE;
  for (int i = 0; i < ndim && numel > 0; i++) {
    guint64 step;
    overflow |= !g_uint64_checked_mul (&step, (guint64) (shape[i] - 1), (guint64) stride[i]);
    overflow |= !g_uint64_checked_add (&last, last, step);
  }
  if (overflow || (numel > 0 ? last >= st->u.st.numel : last > st->u.st.numel)) {
    g_autofree char *s = kin_shape_to_string (ndim, shape);
    vm_fail (vm, "tensor %s at storage offset %" G_GINT64_FORMAT " does not fit in its storage "
             "of %" G_GUINT64_FORMAT " elements", s, offset, st->u.st.numel);
    return NULL;
  }
  gint64 expect = 1;
  for (int i = ndim - 1; i >= 0 && numel > 0; i--) {
    if (shape[i] != 1 && stride[i] != expect) {
      g_autofree char *s = kin_shape_to_string (ndim, shape);
      g_autofree char *r = kin_shape_to_string (ndim, stride);
      return vm_invalid (vm, g_strdup_printf ("is not contiguous (shape %s, stride %s); only "
                                              "contiguous row-major tensors are supported", s, r));
    }
    expect *= shape[i];   /* ≤ numel: no overflow */
  }
  PObj *t = vm_new (vm, PO_TENSOR);
  if (t == NULL)
    return NULL;
  size_t es = kin_dtype_size (st->u.st.dtype);
  t->u.t.dtype = st->u.st.dtype;
  t->u.t.ndim = ndim;
  memcpy (t->u.t.shape, shape, sizeof (gint64) * (gsize) ndim);
  t->u.t.data = st->u.st.data + (gsize) offset * es;
  t->u.t.nbytes = (gsize) numel * es;
  return t;
}

/* REDUCE: callable(*args). */
static gboolean
reduce (Vm *vm, PVal callable, PVal argv)
{
  PObj *g = val_as (callable, PO_GLOBAL);
  PObj *args = val_as (argv, PO_TUPLE);
  if (g == NULL || args == NULL)
    return vm_push_obj (vm, vm_new (vm, PO_OPAQUE));

  if (global_is (g, "collections", "OrderedDict")) {
    if (args->u.seq.n == 0)
      return vm_push_obj (vm, vm_new (vm, PO_DICT));
    return vm_push_obj (vm, vm_new (vm, PO_OPAQUE));
  }
  if (global_is (g, "torch._utils", "_rebuild_tensor_v2") ||
      global_is (g, "torch._utils", "_rebuild_tensor"))
    return vm_push_obj (vm, rebuild_tensor (vm, args, g->u.g.name_n > 15));
  if (global_is (g, "torch._utils", "_rebuild_parameter") ||
      global_is (g, "torch._utils", "_rebuild_parameter_with_state")) {
    if (args->u.seq.n < 1 || (val_as (args->u.seq.v[0], PO_TENSOR) == NULL &&
                              val_as (args->u.seq.v[0], PO_INVALID) == NULL))
      return vm_fail (vm, "_rebuild_parameter without a tensor");
    return vm_push (vm, args->u.seq.v[0]);
  }
  if (g->u.g.mod_n == 12 && memcmp (g->u.g.mod, "torch._utils", 12) == 0 &&
      g->u.g.name_n >= 9 && memcmp (g->u.g.name, "_rebuild_", 9) == 0) {
    g_autofree char *what = global_string (g);
    return vm_push_obj (vm, vm_invalid (vm, g_strdup_printf (
        "is stored with %s (a tensor kind or dtype without a legacy storage class), which is "
        "not supported", what)));
  }
  return vm_push_obj (vm, vm_new (vm, PO_OPAQUE));
}

/* NEWOBJ / NEWOBJ_EX: cls.__new__(cls, …). */
static gboolean
newobj (Vm *vm, PVal cls)
{
  PObj *g = val_as (cls, PO_GLOBAL);
  if (global_is (g, "collections", "OrderedDict") || global_is (g, "builtins", "dict") ||
      global_is (g, "__builtin__", "dict"))
    return vm_push_obj (vm, vm_new (vm, PO_DICT));
  return vm_push_obj (vm, vm_new (vm, PO_OPAQUE));
}

/* --- the interpreter --- */

static gboolean
vm_run (Vm *vm, PVal *result)
{
  for (;;) {
    const guint8 *b = NULL;
    PVal v, w, x;
    gsize start;
    vm->op_pos = vm->pos;
    if (vm->pos >= vm->n)
      return vm_fail (vm, "ends without STOP");
    guint8 op = vm->p[vm->pos++];
    switch (op) {
    case 0x80: /* PROTO */
      if (!vm_read (vm, 1, &b))
        return FALSE;
      if (b[0] > 5)
        return vm_fail (vm, "pickle protocol %u is not supported", b[0]);
      break;
    case 0x95: /* FRAME */
      if (!vm_read (vm, 8, &b))
        return FALSE;
      break;
    case '.': /* STOP */
      if (!vm_pop (vm, result))
        return FALSE;
      return TRUE;

    /* constants */
    case 'N':
      v.kind = PV_NONE;
      v.u.i = 0;
      if (!vm_push (vm, v))
        return FALSE;
      break;
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
      v.kind = PV_BOOL;
      v.u.i = op == 0x88;
      if (!vm_push (vm, v))
        return FALSE;
      break;
    case 'J': /* BININT */
      if (!vm_read (vm, 4, &b))
        return FALSE;
      v.kind = PV_INT;
      v.u.i = (gint32) rd32 (b);
      if (!vm_push (vm, v))
        return FALSE;
      break;
    case 'K': /* BININT1 */
      if (!vm_read (vm, 1, &b))
        return FALSE;
      v.kind = PV_INT;
      v.u.i = b[0];
      if (!vm_push (vm, v))
        return FALSE;
      break;
    case 'M': /* BININT2 */
      if (!vm_read (vm, 2, &b))
        return FALSE;
      v.kind = PV_INT;
      v.u.i = rd16 (b);
      if (!vm_push (vm, v))
        return FALSE;
      break;
    case 0x8a: /* LONG1 */
      if (!vm_read (vm, 1, &b) || !vm_long (vm, b[0]))
        return FALSE;
      break;
    case 0x8b: /* LONG4 */
      if (!vm_read (vm, 4, &b))
        return FALSE;
      if ((gint32) rd32 (b) < 0)
        return vm_fail (vm, "negative LONG4 length");
      if (!vm_long (vm, rd32 (b)))
        return FALSE;
      break;
    case 'G': { /* BINFLOAT, big-endian */
      if (!vm_read (vm, 8, &b))
        return FALSE;
      guint64 u = 0;
      for (int i = 0; i < 8; i++)
        u = (u << 8) | b[i];
      v.kind = PV_FLOAT;
      memcpy (&v.u.f, &u, sizeof u);
      if (!vm_push (vm, v))
        return FALSE;
      break;
    }

    /* strings */
    case 'X': /* BINUNICODE */
    case 'B': /* BINBYTES */
      if (!vm_read (vm, 4, &b) || !vm_string (vm, op == 'X' ? PO_STR : PO_BYTES, rd32 (b)))
        return FALSE;
      break;
    case 'T': /* BINSTRING (signed length) */
      if (!vm_read (vm, 4, &b))
        return FALSE;
      if ((gint32) rd32 (b) < 0)
        return vm_fail (vm, "negative BINSTRING length");
      if (!vm_string (vm, PO_STR, rd32 (b)))
        return FALSE;
      break;
    case 0x8c: /* SHORT_BINUNICODE */
    case 'U':  /* SHORT_BINSTRING */
    case 'C':  /* SHORT_BINBYTES */
      if (!vm_read (vm, 1, &b) || !vm_string (vm, op == 'C' ? PO_BYTES : PO_STR, b[0]))
        return FALSE;
      break;
    case 0x8d: /* BINUNICODE8 */
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
      if (!vm_read (vm, 8, &b) || !vm_string (vm, op == 0x8d ? PO_STR : PO_BYTES, rd64 (b)))
        return FALSE;
      break;

    /* containers */
    case '}': /* EMPTY_DICT */
      if (!vm_push_obj (vm, vm_new (vm, PO_DICT)))
        return FALSE;
      break;
    case ']':  /* EMPTY_LIST */
    case 0x8f: /* EMPTY_SET */
      if (!vm_push_obj (vm, vm_new (vm, PO_LIST)))
        return FALSE;
      break;
    case ')': /* EMPTY_TUPLE */
      if (!vm_push_obj (vm, vm_new (vm, PO_TUPLE)))
        return FALSE;
      break;
    case '(': /* MARK */
      if (vm->marks->len >= PTH_MAX_DEPTH)
        return vm_fail (vm, "MARKs nested deeper than %d", PTH_MAX_DEPTH);
      start = vm->stack->len;
      g_array_append_val (vm->marks, start);
      break;
    case 't':  /* TUPLE */
    case 0x91: /* FROZENSET */
    case 'l':  /* LIST */
    case 'd':  /* DICT */
      if (!vm_pop_mark (vm, &start))
        return FALSE;
      if (op == 'd' && (vm->stack->len - start) % 2 != 0)
        return vm_fail (vm, "DICT with an odd number of items");
      if (!vm_push_obj (vm, seq_from_stack (vm, op == 'l' ? PO_LIST : op == 'd' ? PO_DICT :
                                                                       PO_TUPLE, start)))
        return FALSE;
      break;
    case 0x85: /* TUPLE1 */
    case 0x86: /* TUPLE2 */
    case 0x87: /* TUPLE3 */
      start = vm->stack->len;
      if (start < (gsize) (op - 0x84) || start - (gsize) (op - 0x84) < vm_fence (vm))
        return vm_fail (vm, "stack underflow");
      if (!vm_push_obj (vm, seq_from_stack (vm, PO_TUPLE, start - (gsize) (op - 0x84))))
        return FALSE;
      break;
    case 'a': /* APPEND */
      if (!vm_pop (vm, &v) || !vm_push (vm, v))
        return FALSE;
      if (!appends (vm, vm->stack->len - 1))
        return FALSE;
      break;
    case 'e':  /* APPENDS */
    case 0x90: /* ADDITEMS */
      if (!vm_pop_mark (vm, &start) || !appends (vm, start))
        return FALSE;
      break;
    case 's': /* SETITEM */
      if (vm->stack->len < 2 || vm->stack->len - 2 < vm_fence (vm))
        return vm_fail (vm, "stack underflow");
      if (!setitems (vm, vm->stack->len - 2))
        return FALSE;
      break;
    case 'u': /* SETITEMS */
      if (!vm_pop_mark (vm, &start) || !setitems (vm, start))
        return FALSE;
      break;

    /* stack manipulation */
    case '0': /* POP */
      if (vm->marks->len > 0 && vm->stack->len == vm_fence (vm)) {
        if (!vm_pop_mark (vm, &start))
          return FALSE;
      } else if (!vm_pop (vm, &v)) {
        return FALSE;
      }
      break;
    case '1': /* POP_MARK */
      if (!vm_pop_mark (vm, &start))
        return FALSE;
      g_array_set_size (vm->stack, start);
      break;
    case '2': { /* DUP */
      PVal *top = NULL;
      if (!vm_top (vm, &top))
        return FALSE;
      v = *top;
      if (!vm_push (vm, v))
        return FALSE;
      break;
    }

    /* memo */
    case 'q': /* BINPUT */
      if (!vm_read (vm, 1, &b) || !memo_put (vm, b[0]))
        return FALSE;
      break;
    case 'r': /* LONG_BINPUT */
      if (!vm_read (vm, 4, &b) || !memo_put (vm, rd32 (b)))
        return FALSE;
      break;
    case 0x94: /* MEMOIZE */
      if (!memo_put (vm, vm->memo_count))
        return FALSE;
      break;
    case 'h': /* BINGET */
      if (!vm_read (vm, 1, &b) || !memo_get (vm, b[0]))
        return FALSE;
      break;
    case 'j': /* LONG_BINGET */
      if (!vm_read (vm, 4, &b) || !memo_get (vm, rd32 (b)))
        return FALSE;
      break;

    /* objects */
    case 'c': { /* GLOBAL module\nname\n */
      PObj *g = vm_new (vm, PO_GLOBAL);
      if (g == NULL || !vm_read_line (vm, &g->u.g.mod, &g->u.g.mod_n) ||
          !vm_read_line (vm, &g->u.g.name, &g->u.g.name_n) || !vm_push_obj (vm, g))
        return FALSE;
      break;
    }
    case 0x93: { /* STACK_GLOBAL */
      if (!vm_pop (vm, &w) || !vm_pop (vm, &v))
        return FALSE;
      PObj *m = val_as (v, PO_STR), *nm = val_as (w, PO_STR);
      if (m == NULL || nm == NULL)
        return vm_fail (vm, "STACK_GLOBAL needs two strings");
      PObj *g = vm_new (vm, PO_GLOBAL);
      if (g == NULL)
        return FALSE;
      g->u.g.mod = m->u.str.p;
      g->u.g.mod_n = m->u.str.n;
      g->u.g.name = nm->u.str.p;
      g->u.g.name_n = nm->u.str.n;
      if (!vm_push_obj (vm, g))
        return FALSE;
      break;
    }
    case 'R': /* REDUCE */
      if (!vm_pop (vm, &w) || !vm_pop (vm, &v) || !reduce (vm, v, w))
        return FALSE;
      break;
    case 0x81: /* NEWOBJ */
      if (!vm_pop (vm, &w) || !vm_pop (vm, &v) || !newobj (vm, v))
        return FALSE;
      break;
    case 0x92: /* NEWOBJ_EX */
      if (!vm_pop (vm, &x) || !vm_pop (vm, &w) || !vm_pop (vm, &v) || !newobj (vm, v))
        return FALSE;
      break;
    case 'b': { /* BUILD: state is ignored (OrderedDict _metadata, object attributes) */
      PVal *top = NULL;
      if (!vm_pop (vm, &v) || !vm_top (vm, &top))
        return FALSE;
      break;
    }
    case 'Q': /* BINPERSID */
      if (!vm_pop (vm, &v) || !persistent_load (vm, v))
        return FALSE;
      break;

    default:
      return vm_fail (vm, "unsupported pickle opcode 0x%02x", op);
    }
  }
}

/* ============================================================================================
 * Putting it together
 * ============================================================================================ */

static PObj *
dict_get_dict (PObj *d, const char *key)
{
  for (gsize i = 0; i + 1 < d->u.seq.n; i += 2)
    if (val_is_str (d->u.seq.v[i], key) && val_as (d->u.seq.v[i + 1], PO_DICT) != NULL)
      return d->u.seq.v[i + 1].u.o;
  return NULL;
}

/* Adds the tensors of the state dict @root (see the top of the file for the choice). */
static gboolean
collect (KinWeights *ws, PObj *root, const char *file, GError **error)
{
  static const char *const nest[] = { "state_dict", "model", "ema", "module" };
  PObj *d = root;
  for (int level = 0; level < 8; level++) {
    PObj *sub = NULL;
    for (guint i = 0; i < G_N_ELEMENTS (nest) && sub == NULL; i++)
      sub = dict_get_dict (d, nest[i]);
    if (sub == NULL)
      break;
    d = sub;
  }

  /* Validate everything first, so that a bad file adds nothing. */
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();   /* borrowed from seen */
  g_autoptr (GPtrArray) tensors = g_ptr_array_new ();
  for (gsize i = 0; i + 1 < d->u.seq.n; i += 2) {
    PVal k = d->u.seq.v[i], v = d->u.seq.v[i + 1];
    PObj *ks = val_as (k, PO_STR);
    PObj *t = val_as (v, PO_TENSOR), *inv = val_as (v, PO_INVALID);
    if (t == NULL && inv == NULL)
      continue;   /* not a tensor: a counter, nested metadata… */
    if (ks == NULL) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "%s: a tensor in the state dict has a key that is not a string", file);
      return FALSE;
    }
    g_autofree char *pk = printable (ks->u.str.p, ks->u.str.n);
    if (ks->u.str.n > PTH_MAX_KEY_LEN || memchr (ks->u.str.p, '\0', ks->u.str.n) != NULL ||
        !g_utf8_validate_len (ks->u.str.p, ks->u.str.n, NULL)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "%s: invalid tensor name %s", file, pk);
      return FALSE;
    }
    if (inv != NULL) {
      g_set_error (error, KIN_ENGINE_ERROR,
                   KIN_ENGINE_ERROR_UNSUPPORTED, "%s: tensor %s %s", file, pk, inv->u.inv.msg);
      return FALSE;
    }
    char *name = g_strndup (ks->u.str.p, ks->u.str.n);
    if (!g_hash_table_add (seen, name)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "%s: tensor %s appears twice", file, pk);
      return FALSE;
    }
    g_ptr_array_add (names, name);
    g_ptr_array_add (tensors, t);
  }
  if (tensors->len == 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: the checkpoint holds no tensors", file);
    return FALSE;
  }
  for (guint i = 0; i < tensors->len; i++) {
    PObj *t = tensors->pdata[i];
    if (!kin_weights_add_entry (ws, names->pdata[i], t->u.t.dtype, t->u.t.ndim, t->u.t.shape,
                                t->u.t.data, t->u.t.nbytes, file, error))
      return FALSE;
  }
  return TRUE;
}

gboolean
kin_pth_parse (KinWeights *ws, const guint8 *data, size_t len, const char *file,
               GError **error)
{
  g_return_val_if_fail (ws != NULL, FALSE);
  file = file_or_default (file);

  Zip zip;
  if (!zip_open (&zip, data, len, file, error)) {
    zip_clear (&zip);
    return FALSE;
  }

  /* "<a>/data.pkl" with a single-component <a> (or a bare "data.pkl"). */
  const ZipEntry *pkl = NULL;
  g_autofree char *prefix = NULL;
  for (gsize i = 0; i < zip.n_entries && pkl == NULL; i++) {
    const ZipEntry *ze = &zip.entries[i];
    if (ze->name_len < 8 || memcmp (ze->name + ze->name_len - 8, "data.pkl", 8) != 0)
      continue;
    gsize plen = ze->name_len - 8;
    if (plen == 0 || (ze->name[plen - 1] == '/' && memchr (ze->name, '/', plen - 1) == NULL)) {
      pkl = ze;
      prefix = g_strndup (ze->name, plen);
    }
  }
  if (pkl == NULL) {
    zip_fail (&zip, error, "no data.pkl record (a zip archive, but not a torch.save file)");
    zip_clear (&zip);
    return FALSE;
  }
  g_autofree char *pkl_name = g_strconcat (prefix, "data.pkl", NULL);
  if (zip_stored (&zip, pkl_name, error) == NULL) {
    zip_clear (&zip);
    return FALSE;
  }
  g_autofree char *bo_name = g_strconcat (prefix, "byteorder", NULL);
  const ZipEntry *bo = g_hash_table_lookup (zip.by_name, bo_name);
  if (bo != NULL && bo->method == 0 && bo->size == 3 && memcmp (bo->data, "big", 3) == 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                 "%s: big-endian checkpoints are not supported", file);
    zip_clear (&zip);
    return FALSE;
  }

  Vm vm = {
    .p = pkl->data,
    .n = (gsize) pkl->size,
    .file = file,
    .zip = &zip,
    .prefix = prefix,
    .stack = g_array_new (FALSE, FALSE, sizeof (PVal)),
    .marks = g_array_new (FALSE, FALSE, sizeof (gsize)),
    .memo = g_array_new (FALSE, TRUE, sizeof (PVal)),
    .objs = g_ptr_array_new_with_free_func (pobj_free),
    .error = error,
  };
  PVal root;
  gboolean ok = vm_run (&vm, &root);
  if (ok) {
    PObj *d = val_as (root, PO_DICT);
    if (d == NULL) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "%s: data.pkl does not hold a dict (a state dict)", file);
      ok = FALSE;
    } else {
      ok = collect (ws, d, file, error);
    }
  }
  g_array_unref (vm.stack);
  g_array_unref (vm.marks);
  g_array_unref (vm.memo);
  g_ptr_array_unref (vm.objs);
  zip_clear (&zip);
  return ok;
}

gboolean
kin_pth_load (KinWeights *ws, const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) mf = g_mapped_file_new (path, FALSE, &local);
  if (mf == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO, "cannot open %s: %s", path,
                 local->message);
    return FALSE;
  }
  guint before = kin_weights_count (ws);
  gboolean ok = kin_pth_parse (ws, (const guint8 *) g_mapped_file_get_contents (mf),
                               g_mapped_file_get_length (mf), path, error);
  /* Entries may have been added before a failure (a duplicate across files): they point into
   * the mapping, so the set keeps it in that case too. */
  if (ok || kin_weights_count (ws) != before)
    kin_weights_keep_mapping (ws, mf);
  return ok;
}
