/* kin-stdit-private.h — the STDiT model struct, shared by kin-stdit-load.c (config, weights) and
 * kin-stdit.c (forward).  Fields are named after the checkpoint keys. */
#pragma once

#include "kin-stdit.h"

G_BEGIN_DECLS

typedef struct {
  KinTensor *weight;        /* [out, in] (F32, F16 or BF16) */
  KinTensor *bias;          /* [out] F32 */
  int in, out;
} KinStditLinear;

typedef struct {
  KinStditLinear qkv;       /* C → 3C, output index which·C + head·hd + d */
  KinStditLinear proj;      /* C → C */
  KinTensor *q_norm;        /* [hd] (v1.1 qk_norm) */
  KinTensor *k_norm;
} KinStditSelfAttn;

typedef struct {
  KinTensor *scale_shift_table;           /* [6, C] */
  KinTensor *scale_shift_table_temporal;  /* [3, C] (v1.1) */
  KinStditSelfAttn attn;
  KinStditSelfAttn attn_temp;
  KinStditLinear cross_q_linear;          /* C → C */
  KinStditLinear cross_kv_linear;         /* C → 2C: [k | v] */
  KinStditLinear cross_proj;              /* C → C */
  KinStditLinear mlp_fc1;                 /* C → mlp_hidden */
  KinStditLinear mlp_fc2;                 /* mlp_hidden → C */
} KinStditBlock;

/* Two-layer MLP Linear → SiLU → Linear (t_embedder, SizeEmbedders). */
typedef struct {
  KinStditLinear l0;
  KinStditLinear l2;
} KinStditMlp;

typedef struct _KinStditWork KinStditWork;

/* CUDA-graph state of the forward pass (kin-stdit.c, kin_stdit_set_graphs) */
typedef struct {
  gboolean on;
  gboolean failed;          /* a capture broke: eager until graphs are turned on again */
  GByteArray *key;          /* what the last call's device work depended on (NULL: none yet) */
  gpointer graph;           /* the backend's graph for @key, or NULL */
  guint captures, replays;
} KinStditGraphs;

struct _KinStdit {
  KinStditConfig cfg;
  KinBackend *be;
  int head_dim;

  KinTensor *x_embedder_weight;     /* [C, Cin, ph, pw] F32 (the Conv3d kernel with kt = 1) */
  KinTensor *x_embedder_bias;       /* [C] */
  KinStditMlp t_embedder;           /* 256 → C → C */
  KinStditLinear t_block;           /* C → 6C (after SiLU) */
  KinStditLinear t_block_temp;      /* C → 3C (v1.1) */
  KinStditLinear y_fc1;             /* C_cap → C */
  KinStditLinear y_fc2;             /* C → C */
  KinTensor *y_embedding;           /* [model_max_length, C_cap] null caption */
  float *rope_freqs;                /* host [hd/2] (v1.1) */
  KinStditMlp csize_embedder;       /* 256 → C/3 (v1.1) */
  KinStditMlp ar_embedder;
  KinStditMlp fl_embedder;          /* 256 → C */
  KinStditMlp fps_embedder;
  KinStditBlock *blocks;            /* [depth] */
  KinTensor *final_scale_shift_table; /* [2, C] */
  KinStditLinear final_linear;      /* C → ph·pw·Cout */

  KinStditWork *work;               /* activation buffers, reused while the sizes stay */
  KinStditGraphs graphs;
};

/* kin-stdit.c */
void kin_stdit_work_free (KinStditWork *w);
/* Frees the graph and its key (kin_stdit_free, kin_stdit_set_graphs). */
void kin_stdit_graphs_clear (KinStdit *m);

G_END_DECLS
