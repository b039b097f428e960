/* Loaded modules and their build-ids (modules.h), from dl_iterate_phdr. */
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/remote/modules.h"

static void read_build_id(const struct dl_phdr_info *info, mproc__module *m)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const unsigned char *name = p + sizeof *nh;
            const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                m->id_len = nh->n_descsz < MPROC__MOD_ID_MAX ? nh->n_descsz : MPROC__MOD_ID_MAX;
                memcpy(m->id, desc, m->id_len);
                return;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
}

static int add_one(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    mproc__modtab *t = arg;
    mproc__module m;
    memset(&m, 0, sizeof m);
    m.base = info->dlpi_addr;
    m.lo = UINTPTR_MAX;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        uintptr_t a = info->dlpi_addr + ph->p_vaddr;
        if (a < m.lo) m.lo = a;
        if (a + ph->p_memsz > m.hi) m.hi = a + ph->p_memsz;
    }
    if (m.lo >= m.hi) return 0;
    for (uint32_t i = 0; i < t->n; i++)
        if (t->mod[i].base == m.base && t->mod[i].lo == m.lo) return 0; /* known */
    const char *name = info->dlpi_name;
    if (!name || !*name) {
        if (t->n > 0 && t->mod[0].main) return 0; /* the vDSO also comes without a name */
        ssize_t k = readlink("/proc/self/exe", m.path, sizeof m.path - 1);
        if (k < 0) k = 0;
        m.path[k] = '\0';
        m.main = true;
    } else {
        if (strstr(name, "linux-vdso") || strstr(name, "linux-gate")) return 0;
        snprintf(m.path, sizeof m.path, "%s", name);
    }
    read_build_id(info, &m);
    if (t->n == t->cap) {
        if (t->cap >= MPROC__MOD_MAX) return 0;
        uint32_t cap = t->cap ? t->cap * 2 : 32;
        mproc__module *nm = realloc(t->mod, cap * sizeof *nm);
        if (!nm) return -1;
        t->mod = nm;
        t->cap = cap;
    }
    t->mod[t->n++] = m;
    return 0;
}

int mproc__modtab_scan(mproc__modtab *t)
{
    uint32_t before = t->n;
    if (dl_iterate_phdr(add_one, t) < 0) return -ENOMEM;
    return (int)(t->n - before);
}

static bool find(mproc__modtab *t, uintptr_t a, uint32_t *mod)
{
    if (t->last < t->n && a >= t->mod[t->last].lo && a < t->mod[t->last].hi) {
        *mod = t->last;
        return true;
    }
    for (uint32_t i = 0; i < t->n; i++) {
        if (a >= t->mod[i].lo && a < t->mod[i].hi) {
            *mod = t->last = i;
            return true;
        }
    }
    return false;
}

bool mproc__modtab_ref(mproc__modtab *t, const void *addr, uint32_t *mod, uint64_t *off)
{
    uintptr_t a = (uintptr_t)addr;
    if (!a) return false;
    if (!find(t, a, mod) && (mproc__modtab_scan(t) <= 0 || !find(t, a, mod))) return false;
    *off = a - t->mod[*mod].base;
    return true;
}

static void hex(const uint8_t *id, uint32_t n, char *out)
{
    for (uint32_t i = 0; i < n && i < 20; i++)
        sprintf(out + 2 * i, "%02x", id[i]);
    if (!n) strcpy(out, "none");
}

const mproc__module *mproc__modtab_match(mproc__modtab *t, const mproc__module *m, char *msg,
                                         size_t cap)
{
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < t->n; i++) {
            const mproc__module *l = &t->mod[i];
            if (m->main ? !l->main : (l->main || strcmp(l->path, m->path) != 0)) continue;
            if (l->id_len != m->id_len || memcmp(l->id, m->id, l->id_len) != 0 ||
                (m->main && !m->id_len && strcmp(l->path, m->path) != 0)) {
                char a[48], b[48];
                hex(m->id, m->id_len, a);
                hex(l->id, l->id_len, b);
                snprintf(msg, cap, "%s %s has build-id %s on rank 0 but %s (%s) here",
                         m->main ? "the program" : "library", m->path, a, l->path, b);
                return NULL;
            }
            return l;
        }
        if (pass == 0 && mproc__modtab_scan(t) <= 0) break;
    }
    snprintf(msg, cap, "%s %s is not loaded here", m->main ? "the program" : "library", m->path);
    return NULL;
}

void mproc__modtab_free(mproc__modtab *t)
{
    free(t->mod);
    memset(t, 0, sizeof *t);
}
