/* kin-test-pack.h — writes a tiny random model pack (STDiT2 + T5 + VAE folders in the real
 * layouts) for pipeline, CLI and UI tests that must not depend on the demo pack. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Creates DIR/transformer, DIR/text_encoder (with the golden tokenizer's spiece.model) and
 * DIR/vae.  @caption_channels lets a test build a mismatched pack (0 = the matching 16). */
gboolean kin_test_pack_write (const char *dir, int caption_channels, GError **error);

G_END_DECLS
