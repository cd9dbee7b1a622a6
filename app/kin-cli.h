/* kin-cli.h — the generation commands of kinora-cli. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* generate / extend / loop: argv[0] is the command name. */
int  kin_cli_generate (int argc, char **argv);
int  kin_cli_export (int argc, char **argv);
void kin_cli_print_buckets (void);
/* One line per model of the configured (or demo) pipeline; FALSE when none loads. */
gboolean kin_cli_describe_models (const char *transformer, const char *text_encoder, const char *vae);

G_END_DECLS
