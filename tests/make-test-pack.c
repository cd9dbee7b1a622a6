/* make-test-pack DIR — writes the tiny random model pack of kin-test-pack.c (for shell tests). */
#include "kin-test-pack.h"
#include <stdio.h>

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  if (argc != 2) {
    fprintf (stderr, "usage: make-test-pack DIR\n");
    return 2;
  }
  if (!kin_test_pack_write (argv[1], 0, &error)) {
    fprintf (stderr, "make-test-pack: %s\n", error->message);
    return 1;
  }
  return 0;
}
