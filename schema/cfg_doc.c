/*
 * docs/config.md, generated from the table (`pathway-config doc`, `make docs`): one row per key with
 * its type, default, bounds, when it applies and its doc line.
 */
#include "cfg_internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_md_t {
    char *buf;
    size_t len, cap;
} md_t;

static void md_add(md_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void md_add(md_t *m, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(m->buf + m->len, m->cap - m->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < m->cap - m->len) {
            m->len += (size_t)n;
            return;
        }
        size_t cap = m->cap * 2 + (size_t)n + 1024;
        char *b = realloc(m->buf, cap);
        if (b == NULL)
            return;
        m->buf = b;
        m->cap = cap;
    }
}

static const char *type_name(const cfg_field_t *f)
{
    switch (f->type) {
    case CFG_T_BOOL:
        return "boolean";
    case CFG_T_UINT32:
        return "integer";
    case CFG_T_DURATION:
        return "duration";
    case CFG_T_SIZE:
        return "size";
    case CFG_T_STRING:
        return "string";
    case CFG_T_ENUM:
        return "enum";
    case CFG_T_STRUCT:
        return "section";
    case CFG_T_LIST:
        return "list";
    case CFG_T_STRLIST:
        return "list of strings";
    case CFG_T_STRMAP:
        return "mapping";
    case CFG_T_INT32:
        return "integer";
    case CFG_T_ENUMSET:
        return "list of names";
    case CFG_T_MILLI:
        return "decimal";
    case CFG_T_STRUCTMAP:
        return "mapping of sections";
    }
    return "?";
}

static void md_bounds(md_t *m, const cfg_field_t *f)
{
    char a[32], b[32];
    switch (f->type) {
    case CFG_T_UINT32:
        md_add(m, "%llu – %llu", (unsigned long long)f->min, (unsigned long long)f->max);
        break;
    case CFG_T_DURATION:
        cfg_format_duration(f->min, a, sizeof(a));
        cfg_format_duration(f->max, b, sizeof(b));
        md_add(m, "%s – %s", a, b);
        break;
    case CFG_T_SIZE:
        cfg_format_size(f->min, a, sizeof(a));
        cfg_format_size(f->max, b, sizeof(b));
        md_add(m, "%s – %s", a, b);
        break;
    case CFG_T_MILLI:
        cfg_format_milli(f->min, a, sizeof(a));
        cfg_format_milli(f->max, b, sizeof(b));
        md_add(m, "%s – %s", a, b);
        break;
    case CFG_T_LIST:
    case CFG_T_STRLIST:
    case CFG_T_STRMAP:
    case CFG_T_STRUCTMAP:
        md_add(m, "%llu – %llu entries", (unsigned long long)f->min, (unsigned long long)f->max);
        break;
    case CFG_T_ENUM:
    case CFG_T_ENUMSET:
        for (const char *const *n = f->names; *n != NULL; n++)
            md_add(m, "%s%s", n == f->names ? "" : f->type == CFG_T_ENUM ? " \\| " : ", ", *n);
        break;
    case CFG_T_INT32:
        md_add(m, "%d – %d", INT32_MIN, INT32_MAX);
        break;
    default:
        md_add(m, "—");
        break;
    }
}

/* parent_flags: CFG_F_RESTART / CFG_F_LOCAL of the enclosing sections, which their keys share */
static void md_struct(md_t *m, const cfg_struct_t *st, const char *prefix, int inherited, unsigned parent_flags)
{
    for (size_t i = 0; i < st->num_fields; i++) {
        const cfg_field_t *f = &st->fields[i];
        if (f->flags & CFG_F_KEY)
            continue; /* named in the entries' paths: methods.<method>.ttl */
        char path[256];
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", f->name);
        if (f->type == CFG_T_LIST)
            strncat(path, "[]", sizeof(path) - strlen(path) - 1);
        unsigned flags_here = f->flags | parent_flags;
        const char *flags = flags_here & CFG_F_RESTART ? "restart" : "runtime";
        const char *part = flags_here & CFG_F_LOCAL ? (f->flags & CFG_F_PATH ? "node-local, path" : "node-local")
                           : f->flags & CFG_F_PATH  ? "path"
                                                    : "";
        md_add(m, "| `%s` | %s | ", path, type_name(f));
        if ((inherited || (f->flags & CFG_F_INHERIT)) && f->type != CFG_T_STRUCT)
            md_add(m, "from `defaults`");
        else if (f->def != NULL && f->def[0] == '"') /* strings and units: without JSON quotes */
            md_add(m, "`%.*s`", (int)strlen(f->def) - 2, f->def + 1);
        else if (f->def != NULL)
            md_add(m, "`%s`", f->def);
        else if (f->flags & CFG_F_REQUIRED)
            md_add(m, "required");
        else if (f->flags & CFG_F_OPTIONAL)
            md_add(m, "absent");
        else
            md_add(m, "—");
        md_add(m, " | ");
        md_bounds(m, f);
        md_add(m, " | %s%s%s | %s |\n", flags, *part ? ", " : "", part, f->doc);
        /* a list's or a map's entries are whole values, never inherited key by key */
        if (f->type == CFG_T_STRUCT || f->type == CFG_T_LIST)
            md_struct(m, f->sub, path, f->type == CFG_T_STRUCT && (inherited || (f->flags & CFG_F_INHERIT)),
                      flags_here & (CFG_F_RESTART | CFG_F_LOCAL));
        if (f->type == CFG_T_STRUCTMAP) {
            const cfg_field_t *key = cfg_struct_key(f->sub);
            char entry[300];
            snprintf(entry, sizeof(entry), "%s.<%s>", path, key->name);
            md_add(m, "| `%s` | section | — | %s | %s | %s |\n", entry,
                   f->sub->shorthand_doc != NULL ? f->sub->shorthand_doc : "a mapping", flags, key->doc);
            md_struct(m, f->sub, entry, 0, flags_here & (CFG_F_RESTART | CFG_F_LOCAL));
        }
    }
}

char *cfg_reference_markdown(void)
{
    md_t m = {NULL, 0, 0};
    md_add(&m, "# Config reference\n\n"
               "Generated from the schema table (`schema/cfg_table.c`) by `make docs`; do not edit by hand.\n\n"
               "Durations are written `250ms`, `5s`, `2m`, `1h` (or combined, `1m30s`); sizes `512B`, `64KiB`, `1MiB`, "
               "`1GiB` (a plain integer is bytes). Unknown keys are errors. *runtime* settings apply without a restart; "
               "*restart* ones need one, and the dataplane says so when a reload changes them. *node-local* settings "
               "describe one dataplane process and come only from its own file; a control plane's (fleet) document "
               "that carries them is rejected.\n\n"
               "Relative file paths (*path* below) in a dataplane's own file are taken relative to that file's "
               "directory; in a document pushed by a control plane, relative to the dataplane's working directory.\n\n"
               "Services inherit `defaults.pool`, `defaults.timeouts`, `defaults.limiter`, `defaults.cors`, `defaults.retry`, "
               "`defaults.hedge`, `defaults.health_check`, `defaults.outlier` and `defaults.cache` key by key (the sections "
               "inside them too: a service that sets `retry.budget.percent` keeps the default `retry.budget.min_concurrent`, "
               "one that sets `cache.ttl.final` keeps the default `cache.ttl.unfinal`), and `defaults.rpc_errors` and "
               "`defaults.cache.methods` whole unless the service gives its own; a service sets only what differs.\n\n"
               "A *decimal* is a number such as `1.5` or `0.2` (or an integer), kept to the thousandth.\n\n"
               "| key | type | default | bounds | applies | meaning |\n|---|---|---|---|---|---|\n");
    md_struct(&m, &cfg_root_struct, "", 0, 0);
    return m.buf;
}
