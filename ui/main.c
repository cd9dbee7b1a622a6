/* main.c — the `kinora` desktop application. */
#include "kin-backend.h"
#include "kin-config.h"
#include "kin-application.h"
#include "kin-window.h"
#include <glib/gi18n.h>
#include <locale.h>

int
main (int argc, char **argv)
{
  kin_backend_cpu_prepare_process (argv);
  setlocale (LC_ALL, "");
  /* KINORA_LOCALEDIR: translations of an uninstalled build (<build>/po). */
  const char *localedir = g_getenv ("KINORA_LOCALEDIR");
  bindtextdomain (GETTEXT_PACKAGE, localedir != NULL ? localedir : KIN_LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
  g_set_application_name (_("Kinora"));
  g_autoptr (KinApplication) app = kin_application_new ();
  int status = g_application_run (G_APPLICATION (app), argc, argv);
  return status != 0 ? status : kin_self_test_exit_status ();
}
