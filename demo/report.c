/* Results, for people (text) and for programs (--json). */
#include "demo.h"

void report_text(FILE *out, const mode_result *r, const char *log_path)
{
    fprintf(out, "%s mode:\n", r->mode);
    if (r->rc < 0) {
        fprintf(out, "  failed: %s\n", mproc_strerror(r->rc));
        return;
    }
    const dir_result *d = &r->dir;
    if (d->error < 0) {
        fprintf(out, "  dir info failed: %s\n", mproc_strerror(d->error));
    } else {
        fprintf(out, "  dir info: %llu files, %llu bytes in %.2f s\n", (unsigned long long)d->files,
                (unsigned long long)d->bytes, d->seconds);
        fprintf(out, "  sha256:   %s%s\n", d->sha256,
                d->skipped ? " (incomplete: of what could be read)" : "");
        /* The warnings went to the console too; the log file, when there is one, keeps them. */
        if (d->skipped)
            fprintf(out,
                    "  skipped:  %llu unreadable files or directories of %llu files found (%s%s)\n",
                    (unsigned long long)d->skipped, (unsigned long long)d->found,
                    log_path ? "see the log: " : "see the warnings above",
                    log_path ? log_path : "");
    }
    fprintf(out, "  e = %.15f (%llu iterations in %.2f s)\n", r->e.e,
            (unsigned long long)r->e.iterations, r->e.seconds);
    /* The e worker runs the whole time the directory is hashed: parallel work shows as a total
     * near the longer of the two, not their sum; in pool mode the pool's stats say it. */
    double work = d->seconds + r->e.seconds;
    bool parallel;
    if (r->have_stats) {
        parallel = r->utilisation >= DEMO_PARALLEL_UTILISATION;
        fprintf(out, "  pool: %d workers busy %.2f s of %d x %.2f s: utilisation %.0f %%\n",
                r->workers, r->busy_seconds, r->workers, r->wall_seconds, 100 * r->utilisation);
    } else {
        parallel = r->total_seconds < DEMO_PARALLEL_UTILISATION * work;
    }
    fprintf(out, "  total %.2f s for %.2f s of work: the two workers %s\n", r->total_seconds, work,
            parallel ? "ran in parallel" : "did not run in parallel");
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void report_json(FILE *out, const demo_opts *o, const char *start, const mode_result *rs, int n,
                 double total, const char *log_path)
{
    fputs("{\"dir\":", out);
    json_string(out, o->dir);
    fputs(",\"start_method\":", out);
    json_string(out, start);
    fprintf(out, ",\"cpus\":%d,\"physical_cores\":%d,\"results\":[", mproc_cpu_count(),
            mproc_physical_cores());
    for (int i = 0; i < n; i++) {
        const mode_result *r = &rs[i];
        const dir_result *d = &r->dir;
        int rc = r->rc < 0 ? r->rc : d->error;
        /* ok: the run worked; complete: every file was hashed whole, so the digest is the
         * directory's (else it covers what could be read). */
        fprintf(out, "%s{\"mode\":\"%s\",\"ok\":%s,\"complete\":%s", i ? "," : "", r->mode,
                rc < 0 ? "false" : "true", rc < 0 || d->skipped ? "false" : "true");
        if (rc < 0) {
            fputs(",\"error\":", out);
            json_string(out, mproc_strerror(rc));
        }
        fprintf(out,
                ",\"files_found\":%llu,\"files\":%llu,\"bytes\":%llu,\"skipped\":%llu,"
                "\"sha256\":\"%s\","
                "\"dir_seconds\":%.6f,\"e\":%.17g,\"e_iterations\":%llu,\"e_seconds\":%.6f,"
                "\"total_seconds\":%.6f",
                (unsigned long long)d->found, (unsigned long long)d->files,
                (unsigned long long)d->bytes, (unsigned long long)d->skipped, d->sha256, d->seconds,
                r->e.e, (unsigned long long)r->e.iterations, r->e.seconds, r->total_seconds);
        /* pool mode: the pool's stats over the time both tasks could run */
        if (r->have_stats)
            fprintf(out, ",\"utilisation\":%.4f,\"busy_seconds\":%.6f", r->utilisation,
                    r->busy_seconds);
        fputc('}', out);
    }
    fprintf(out, "],\"total_seconds\":%.6f,\"log_file\":", total);
    if (log_path)
        json_string(out, log_path);
    else
        fputs("null", out);
    fputs("}\n", out);
}
