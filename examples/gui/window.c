/* The widgets. Every handler runs in the main loop and returns at once: the work is elsewhere.
 * The title carries the state ("mproc-longtask: running", "done", "crashed", "failed",
 * "cancelled"), so a test driving the window with xdotool can wait for it. */
#include <signal.h>
#include <string.h>

#include "longtask.h"

static void group_digits(char *buf, size_t cap, unsigned long long v)
{
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%llu", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
}

void lt_window_show_progress(lt_app *a, unsigned long long iterations, double fraction)
{
    char digits[40], text[64];
    if (fraction > 1.0) fraction = 1.0;
    gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(a->bar), fraction);
    group_digits(digits, sizeof digits, iterations);
    snprintf(text, sizeof text, "Iterations: %s", digits);
    gtk_label_set_text(GTK_LABEL(a->iterations), text);
}

static const char *state_name(const lt_app *a, const lt_run *last)
{
    if (a->running) return "running";
    if (!last) return "idle";
    if (!last->error[0]) return "done";
    if (last->signal) return "crashed";
    return last->code == MPROC_ECANCELLED ? "cancelled" : "failed";
}

void lt_window_show_state(lt_app *a)
{
    const lt_run *last = a->runs->len ? &g_array_index(a->runs, lt_run, a->runs->len - 1) : NULL;
    char title[64];
    snprintf(title, sizeof title, "mproc-longtask: %s", state_name(a, last));
    gtk_window_set_title(GTK_WINDOW(a->window), title);
    gtk_widget_set_sensitive(a->run, !a->running);
    gtk_widget_set_sensitive(a->cancel, a->running);
    char *markup;
    if (a->running) {
        markup = g_strdup("<i>Computing e in a worker process… the window stays live.</i>");
    } else if (!last) {
        markup = g_strdup("");
    } else if (!last->error[0]) {
        char digits[40];
        group_digits(digits, sizeof digits, last->r.iterations);
        markup = g_markup_printf_escaped("<b>e = %.15f</b>\n%s iterations in %.2f s", last->r.e,
                                         digits, last->r.seconds);
    } else {
        markup = g_markup_printf_escaped(
            "<span foreground='#c01c28'><b>The task %s</b></span>\n%s\n<small>The app goes on: "
            "Run again starts it in a new worker.</small>",
            last->signal ? "crashed" : "did not finish", last->error);
    }
    gtk_label_set_markup(GTK_LABEL(a->result), markup);
    g_free(markup);
}

static void on_click(GtkButton *b, gpointer data)
{
    lt_app *a = data;
    a->clicks++;
    if (a->running) a->clicks_while_running++;
    char text[48];
    snprintf(text, sizeof text, "Clicked %d time%s", a->clicks, a->clicks == 1 ? "" : "s");
    gtk_label_set_text(GTK_LABEL(a->clicks_label), text);
}

static void on_run(GtkButton *b, gpointer data)
{
    lt_run_start(data);
}

static void on_cancel(GtkButton *b, gpointer data)
{
    lt_run_cancel(data);
}

static void on_quit(GtkButton *b, gpointer data)
{
    lt_quit(data);
}

static gboolean on_close(GtkWindow *w, gpointer data)
{
    lt_quit(data);
    return TRUE; /* main() destroys the window once the loop has stopped */
}

static gboolean on_ctrl_q(GtkWidget *w, GVariant *args, gpointer data)
{
    lt_quit(data);
    return TRUE;
}

/* The first run starts once the window is on screen: at idle priority, after its first frame,
 * so that GTK's start-up (fonts, styles) is not counted as a stall of the running task. */
static gboolean start_first_run(gpointer data)
{
    lt_run_start(data);
    return G_SOURCE_REMOVE;
}

static void on_map(GtkWidget *w, gpointer data)
{
    lt_app *a = data;
    if (a->runs->len == 0 && !a->running) g_idle_add(start_first_run, a);
}

static GtkWidget *left_label(const char *text)
{
    GtkWidget *l = gtk_label_new(text);
    gtk_label_set_xalign(GTK_LABEL(l), 0.0f);
    return l;
}

static GtkWidget *button(const char *mnemonic, GCallback cb, lt_app *a)
{
    GtkWidget *b = gtk_button_new_with_mnemonic(mnemonic);
    g_signal_connect(b, "clicked", cb, a);
    return b;
}

void lt_window_build(lt_app *a)
{
    a->window = gtk_window_new();
    gtk_window_set_default_size(GTK_WINDOW(a->window), 480, -1);
    g_signal_connect(a->window, "close-request", G_CALLBACK(on_close), a);
    g_signal_connect(a->window, "map", G_CALLBACK(on_map), a);
    /* A header bar everywhere, also with no window manager: the title shows the state. */
    gtk_window_set_titlebar(GTK_WINDOW(a->window), gtk_header_bar_new());

    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 10);
    gtk_widget_set_margin_start(box, 16);
    gtk_widget_set_margin_end(box, 16);
    gtk_widget_set_margin_top(box, 16);
    gtk_widget_set_margin_bottom(box, 16);
    gtk_window_set_child(GTK_WINDOW(a->window), box);

    char text[96];
    snprintf(text, sizeof text, "Computing e = Σ 1/k! for %.1f s in an mproc pool worker",
             a->duration);
    gtk_box_append(GTK_BOX(box), left_label(text));
    a->bar = gtk_progress_bar_new();
    gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(a->bar), TRUE);
    gtk_box_append(GTK_BOX(box), a->bar);
    a->iterations = left_label("Iterations: 0");
    gtk_box_append(GTK_BOX(box), a->iterations);
    a->result = left_label("");
    gtk_label_set_wrap(GTK_LABEL(a->result), TRUE);
    gtk_label_set_selectable(GTK_LABEL(a->result), FALSE);
    gtk_widget_set_size_request(a->result, -1, 60);
    gtk_box_append(GTK_BOX(box), a->result);

    GtkWidget *clicks = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 12);
    a->click = button("Click _me", G_CALLBACK(on_click), a);
    gtk_box_append(GTK_BOX(clicks), a->click);
    a->clicks_label = left_label("Clicked 0 times");
    gtk_box_append(GTK_BOX(clicks), a->clicks_label);
    gtk_box_append(GTK_BOX(box), clicks);

    GtkWidget *crash = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 12);
    a->crash_switch = gtk_switch_new();
    gtk_switch_set_active(GTK_SWITCH(a->crash_switch), a->crash);
    gtk_widget_set_valign(a->crash_switch, GTK_ALIGN_CENTER);
    gtk_box_append(GTK_BOX(crash), a->crash_switch);
    GtkWidget *crash_label = gtk_label_new_with_mnemonic("Make the task cr_ash (raise SIGSEGV)");
    gtk_label_set_mnemonic_widget(GTK_LABEL(crash_label), a->crash_switch);
    gtk_box_append(GTK_BOX(crash), crash_label);
    gtk_box_append(GTK_BOX(box), crash);

    GtkWidget *buttons = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 8);
    gtk_widget_set_halign(buttons, GTK_ALIGN_END);
    a->run = button("_Run again", G_CALLBACK(on_run), a);
    a->cancel = button("_Cancel", G_CALLBACK(on_cancel), a);
    gtk_box_append(GTK_BOX(buttons), a->run);
    gtk_box_append(GTK_BOX(buttons), a->cancel);
    gtk_box_append(GTK_BOX(buttons), button("_Quit", G_CALLBACK(on_quit), a));
    gtk_box_append(GTK_BOX(box), buttons);

    GtkEventController *keys = gtk_shortcut_controller_new();
    gtk_shortcut_controller_set_scope(GTK_SHORTCUT_CONTROLLER(keys), GTK_SHORTCUT_SCOPE_GLOBAL);
    gtk_shortcut_controller_add_shortcut(
        GTK_SHORTCUT_CONTROLLER(keys),
        gtk_shortcut_new(gtk_shortcut_trigger_parse_string("<Control>q"),
                         gtk_callback_action_new(on_ctrl_q, a, NULL)));
    gtk_widget_add_controller(a->window, keys);

    gtk_window_set_focus(GTK_WINDOW(a->window), a->click); /* space clicks it */
    lt_window_show_state(a);
}
