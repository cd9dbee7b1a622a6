/* kin-test-pack.c — a tiny random model pack (see kin-test-pack.h). */
#include "kin-test-pack.h"
#include "kin-vae.h"
#include "kin-weights.h"
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define C 24      /* STDiT2 hidden */
#define HEADS 2
#define CAP 16    /* T5 d_model */
#define LTOK 8    /* model_max_length */

typedef struct {
  GPtrArray *names;
  GArray *ndims;
  GPtrArray *shapes;
  GPtrArray *datas;
  GRand *rng;
} Builder;

static void
add (Builder *b, const char *name, float scale, float offset, int ndim, ...)
{
  int64_t *shape = g_new0 (int64_t, ndim);
  va_list ap;
  va_start (ap, ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= (shape[i] = va_arg (ap, int));
  va_end (ap);
  float *d = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    d[i] = offset + scale * (float) g_rand_double_range (b->rng, -1, 1);
  g_ptr_array_add (b->names, g_strdup (name));
  g_array_append_val (b->ndims, ndim);
  g_ptr_array_add (b->shapes, shape);
  g_ptr_array_add (b->datas, d);
}

static gboolean
flush (Builder *b, const char *path, GError **error)
{
  guint n = b->names->len;
  g_autofree KinDType *dt = g_new (KinDType, n);
  for (guint i = 0; i < n; i++)
    dt[i] = KIN_DTYPE_F32;
  gboolean ok = kin_safetensors_write (path, n, (const char *const *) b->names->pdata, dt,
                                       (const int *) b->ndims->data, (const int64_t *const *) b->shapes->pdata,
                                       (const void *const *) b->datas->pdata, NULL, error);
  g_ptr_array_unref (b->names);
  g_array_unref (b->ndims);
  g_ptr_array_unref (b->shapes);
  g_ptr_array_unref (b->datas);
  g_rand_free (b->rng);
  return ok;
}

static Builder
builder (guint32 seed)
{
  Builder b = { g_ptr_array_new_with_free_func (g_free), g_array_new (FALSE, FALSE, sizeof (int)),
                g_ptr_array_new_with_free_func (g_free), g_ptr_array_new_with_free_func (g_free),
                g_rand_new_with_seed (seed) };
  return b;
}

static void
linear (Builder *b, const char *prefix, int out, int in)
{
  g_autofree char *w = g_strconcat (prefix, ".weight", NULL), *bb = g_strconcat (prefix, ".bias", NULL);
  add (b, w, 1.0f / sqrtf ((float) in), 0, 2, out, in);
  add (b, bb, 0.05f, 0, 1, out);
}

static gboolean
write_transformer (const char *dir, int cap, GError **error)
{
  Builder b = builder (11);
  int hd = C / HEADS;
  add (&b, "x_embedder.proj.weight", 0.3f, 0, 5, C, 4, 1, 2, 2);
  add (&b, "x_embedder.proj.bias", 0.05f, 0, 1, C);
  linear (&b, "t_embedder.mlp.0", C, 256);
  linear (&b, "t_embedder.mlp.2", C, C);
  linear (&b, "t_block.1", 6 * C, C);
  linear (&b, "t_block_temp.1", 3 * C, C);
  linear (&b, "y_embedder.y_proj.fc1", C, cap);
  linear (&b, "y_embedder.y_proj.fc2", C, C);
  add (&b, "y_embedder.y_embedding", 0.1f, 0, 2, LTOK, cap);
  add (&b, "rope.freqs", 0, 0, 1, hd / 2);
  float *freqs = b.datas->pdata[b.datas->len - 1];
  for (int i = 0; i < hd / 2; i++)
    freqs[i] = powf (10000.0f, -2.0f * i / hd);
  const char *attn[] = { "attn", "attn_temp" };
  add (&b, "blocks.0.scale_shift_table", 0.1f, 0, 2, 6, C);
  add (&b, "blocks.0.scale_shift_table_temporal", 0.1f, 0, 2, 3, C);
  for (int a = 0; a < 2; a++) {
    g_autofree char *qkv = g_strdup_printf ("blocks.0.%s.qkv", attn[a]);
    g_autofree char *qn = g_strdup_printf ("blocks.0.%s.q_norm.weight", attn[a]);
    g_autofree char *kn = g_strdup_printf ("blocks.0.%s.k_norm.weight", attn[a]);
    g_autofree char *proj = g_strdup_printf ("blocks.0.%s.proj", attn[a]);
    linear (&b, qkv, 3 * C, C);
    add (&b, qn, 0.1f, 1, 1, hd);
    add (&b, kn, 0.1f, 1, 1, hd);
    linear (&b, proj, C, C);
  }
  linear (&b, "blocks.0.cross_attn.q_linear", C, C);
  linear (&b, "blocks.0.cross_attn.kv_linear", 2 * C, C);
  linear (&b, "blocks.0.cross_attn.proj", C, C);
  linear (&b, "blocks.0.mlp.fc1", 4 * C, C);
  linear (&b, "blocks.0.mlp.fc2", C, 4 * C);
  add (&b, "final_layer.scale_shift_table", 0.1f, 0, 2, 2, C);
  linear (&b, "final_layer.linear", 32, C);
  const char *emb[] = { "csize_embedder", "ar_embedder", "fl_embedder", "fps_embedder" };
  for (int e = 0; e < 4; e++) {
    int d = e < 2 ? C / 3 : C;
    g_autofree char *m0 = g_strdup_printf ("%s.mlp.0", emb[e]), *m2 = g_strdup_printf ("%s.mlp.2", emb[e]);
    linear (&b, m0, d, 256);
    linear (&b, m2, d, d);
  }
  g_autofree char *sub = g_build_filename (dir, "transformer", NULL);
  g_mkdir_with_parents (sub, 0755);
  g_autofree char *cfg = g_build_filename (sub, "config.json", NULL);
  g_autofree char *json = g_strdup_printf (
    "{\"model_type\": \"stdit2\", \"depth\": 1, \"hidden_size\": %d, \"num_heads\": %d, \"patch_size\": [1, 2, 2],"
    " \"in_channels\": 4, \"caption_channels\": %d, \"model_max_length\": %d, \"mlp_ratio\": 4.0,"
    " \"qk_norm\": true, \"input_sq_size\": 512, \"pred_sigma\": true}\n", C, HEADS, cap, LTOK);
  g_autofree char *st = g_build_filename (sub, "model.safetensors", NULL);
  return g_file_set_contents (cfg, json, -1, error) && flush (&b, st, error);
}

static gboolean
write_t5 (const char *dir, GError **error)
{
  Builder b = builder (12);
  int V = 500, dkv = 4, H = 4, FF = 32;
  add (&b, "shared.weight", 0.5f, 0, 2, V, CAP);
  const char *qkvo[] = { "q", "k", "v", "o" };
  for (int i = 0; i < 4; i++) {
    g_autofree char *n = g_strdup_printf ("encoder.block.0.layer.0.SelfAttention.%s.weight", qkvo[i]);
    add (&b, n, 0.25f, 0, 2, i == 3 ? CAP : H * dkv, i == 3 ? H * dkv : CAP);
  }
  add (&b, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 0.5f, 0, 2, 8, H);
  add (&b, "encoder.block.0.layer.0.layer_norm.weight", 0.1f, 1, 1, CAP);
  add (&b, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", 0.25f, 0, 2, FF, CAP);
  add (&b, "encoder.block.0.layer.1.DenseReluDense.wi_1.weight", 0.25f, 0, 2, FF, CAP);
  add (&b, "encoder.block.0.layer.1.DenseReluDense.wo.weight", 0.18f, 0, 2, CAP, FF);
  add (&b, "encoder.block.0.layer.1.layer_norm.weight", 0.1f, 1, 1, CAP);
  add (&b, "encoder.final_layer_norm.weight", 0.1f, 1, 1, CAP);
  g_autofree char *sub = g_build_filename (dir, "text_encoder", NULL);
  g_mkdir_with_parents (sub, 0755);
  g_autofree char *cfg = g_build_filename (sub, "config.json", NULL);
  g_autofree char *json = g_strdup_printf (
    "{\"model_type\": \"t5\", \"d_model\": %d, \"d_kv\": %d, \"d_ff\": %d, \"num_heads\": %d, \"num_layers\": 1,"
    " \"relative_attention_num_buckets\": 8, \"relative_attention_max_distance\": 16, \"layer_norm_epsilon\": 1e-06,"
    " \"feed_forward_proj\": \"gated-gelu\", \"vocab_size\": %d}\n", CAP, dkv, FF, H, V);
  g_autofree char *st = g_build_filename (sub, "model.safetensors", NULL);
  g_autofree char *spm_src = g_build_filename (KIN_TEST_DATADIR, "golden", "tokenizer.model", NULL);
  g_autofree char *spm = g_build_filename (sub, "spiece.model", NULL);
  g_autofree char *model = NULL;
  gsize len;
  return g_file_set_contents (cfg, json, -1, error) && flush (&b, st, error) &&
         g_file_get_contents (spm_src, &model, &len, error) && g_file_set_contents (spm, model, len, error);
}

static gboolean
write_vae (const char *dir, GError **error)
{
  KinVaeConfig cfg;
  kin_vae_config_init_sd (&cfg);
  cfg.n_blocks = 4;
  for (int i = 0; i < 4; i++)
    cfg.block_out_channels[i] = 8;
  cfg.layers_per_block = 1;
  cfg.norm_num_groups = 4;
  g_autoptr (KinWeights) ws = kin_vae_random_weights (&cfg, KIN_VAE_DIALECT_DIFFUSERS, KIN_VAE_BOTH, 13);
  guint n = kin_weights_count (ws);
  g_autofree const char **names = g_new (const char *, n);
  g_autofree KinDType *dt = g_new (KinDType, n);
  g_autofree int *nd = g_new (int, n);
  g_autofree const int64_t **shapes = g_new (const int64_t *, n);
  g_autofree const void **datas = g_new (const void *, n);
  for (guint i = 0; i < n; i++) {
    const KinWeightEntry *e = kin_weights_nth (ws, i);
    names[i] = e->name, dt[i] = e->dtype, nd[i] = e->ndim, shapes[i] = e->shape, datas[i] = e->data;
  }
  g_autofree char *sub = g_build_filename (dir, "vae", NULL);
  g_mkdir_with_parents (sub, 0755);
  g_autofree char *cfgp = g_build_filename (sub, "config.json", NULL);
  const char *json =
    "{\"_class_name\": \"AutoencoderKL\", \"in_channels\": 3, \"out_channels\": 3, \"latent_channels\": 4,"
    " \"block_out_channels\": [8, 8, 8, 8], \"layers_per_block\": 1, \"norm_num_groups\": 4,"
    " \"scaling_factor\": 0.18215, \"sample_size\": 64,"
    " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],"
    " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}\n";
  g_autofree char *st = g_build_filename (sub, "diffusion_pytorch_model.safetensors", NULL);
  return g_file_set_contents (cfgp, json, -1, error) &&
         kin_safetensors_write (st, n, names, dt, nd, shapes, datas, NULL, error);
}

gboolean
kin_test_pack_write (const char *dir, int caption_channels, GError **error)
{
  return write_transformer (dir, caption_channels > 0 ? caption_channels : CAP, error) &&
         write_t5 (dir, error) && write_vae (dir, error);
}
