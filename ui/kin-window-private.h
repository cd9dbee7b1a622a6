/* kin-window-private.h — KinWindow's state, shared by its source files:
 * kin-window.c (controls, queue, projects), kin-window-clips.c (player and clip actions),
 * kin-self-test.c. */
#pragma once

#include "kin-window.h"
#include "kin-job.h"
#include "kin-buckets.h"

G_BEGIN_DECLS

struct _KinWindow {
  AdwApplicationWindow parent_instance;

  /* template children */
  AdwToastOverlay *toast_overlay;
  AdwSplitButton *open_button;
  AdwWindowTitle *window_title;
  GtkPaned *paned;
  GtkWidget *prompt_card;
  GtkTextView *prompt_view;
  GtkWidget *prompt_placeholder;
  GtkStack *image_stack;
  GtkPicture *image_picture;
  GtkLabel *image_label;
  GtkMenuButton *history_button;
  GtkPopover *history_popover;
  GtkListBox *history_list;
  AdwComboRow *resolution_row;
  AdwComboRow *aspect_row;
  AdwComboRow *duration_row;
  AdwExpanderRow *advanced_row;
  GtkSpinButton *seed_spin;
  GtkAdjustment *seed_adjustment;
  GtkToggleButton *seed_lock_button;
  GtkSpinButton *steps_spin;
  GtkAdjustment *steps_adjustment;
  GtkSpinButton *guidance_spin;
  GtkAdjustment *guidance_adjustment;
  AdwComboRow *sampler_row;
  GtkButton *generate_button;
  GtkLabel *estimate_label;
  AdwPreferencesGroup *queue_group;
  GtkListBox *queue_list;
  GtkStack *viewer_stack;
  AdwStatusPage *empty_page;
  GtkPicture *live_picture;
  GtkLabel *live_label;
  GtkVideo *video;
  GtkActionBar *clip_bar;
  GtkLabel *clip_title;
  GtkLabel *clip_details;
  GtkStack *timeline_stack;
  GtkListView *timeline;

  /* state */
  GSettings *settings;
  KinEngine *engine;
  KinProject *project;
  GtkSingleSelection *selection;
  GListStore *jobs;
  KinJob *running;
  gboolean queue_paused;       /* the self-test looks at a waiting job before it runs */
  GCancellable *cancellable;   /* cancelled when the window goes */

  /* controls: the offered choices, parallel to the combo rows' string lists */
  GArray *aspect_ratios;       /* double h/w */
  GArray *frame_counts;        /* int */
  gboolean demo_model;         /* the built-in demo model is the active transformer: the
                                * resolution list starts with its one trained size */
  gboolean filling_controls;   /* the choices are being rebuilt: no settings are written */

  /* the image prompt, RGB8 */
  guint8 *image_rgb;
  int image_w, image_h;

  /* the clip being played */
  KinProjectClip *playing;
  guint load_serial;

  /* self-test */
  char *self_test_dir;
  int self_test_failures;
  guint self_test_source;
};

/* kin-window.c */
void       kin_window_toast (KinWindow *self, const char *text);
void       kin_window_queue_job (KinWindow *self, KinJob *job);
/* The request described by the controls (prompt owned; no conditioning). */
void       kin_window_fill_request (KinWindow *self, KinRequest *req);
char      *kin_window_dup_prompt (KinWindow *self);
void       kin_window_set_project (KinWindow *self, KinProject *project);
void       kin_window_set_queue_paused (KinWindow *self, gboolean paused);

/* kin-window-clips.c */
void       kin_window_clips_init (KinWindow *self);
void       kin_window_clips_dispose (KinWindow *self);
void       kin_window_update_clip_actions (KinWindow *self);
void       kin_window_show_clip (KinWindow *self, KinProjectClip *clip);
void       kin_window_set_image_prompt (KinWindow *self, const guint8 *rgb, int w, int h);
void       kin_window_set_image_prompt_texture (KinWindow *self, GdkTexture *texture);
KinProjectClip *kin_window_get_selected_clip (KinWindow *self);
void       kin_window_add_clip_actions (KinWindow *self, GActionMap *map);
void       kin_window_add_project_actions (KinWindow *self, GActionMap *map);

/* kin-self-test.c */
gboolean   kin_window_save_screenshot (GtkWidget *widget, const char *path, GError **error);

G_END_DECLS
