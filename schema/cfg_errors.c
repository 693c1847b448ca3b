#include "cfg.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A document with more errors than this is reported as this many plus one line saying so;
 * enough for any human, and bounded for hostile input. */
#define MAX_ERRORS 500

void cfg_errors_init(cfg_errors_t *errs)
{
    memset(errs, 0, sizeof(*errs));
}

void cfg_errors_dispose(cfg_errors_t *errs)
{
    for (size_t i = 0; i < errs->size; i++)
        free(errs->entries[i]);
    free(errs->entries);
    memset(errs, 0, sizeof(*errs));
}

static void push(cfg_errors_t *errs, char *msg)
{
    if (errs->size == errs->_capacity) {
        size_t cap = errs->_capacity ? errs->_capacity * 2 : 8;
        char **n = realloc(errs->entries, cap * sizeof(*n));
        if (n == NULL) {
            free(msg);
            return;
        }
        errs->entries = n;
        errs->_capacity = cap;
    }
    errs->entries[errs->size++] = msg;
}

void cfg_errors_add(cfg_errors_t *errs, const char *fmt, ...)
{
    if (errs->size > MAX_ERRORS)
        return;
    if (errs->size == MAX_ERRORS) {
        char *more = strdup("(more errors not shown)");
        if (more != NULL)
            push(errs, more);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r >= 0)
        push(errs, msg);
}

char *cfg_errors_join(const cfg_errors_t *errs)
{
    size_t len = 1;
    for (size_t i = 0; i < errs->size; i++)
        len += strlen(errs->entries[i]) + 1;
    char *out = malloc(len), *p = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < errs->size; i++) {
        size_t n = strlen(errs->entries[i]);
        memcpy(p, errs->entries[i], n);
        p += n;
        if (i + 1 < errs->size)
            *p++ = '\n';
    }
    *p = '\0';
    return out;
}

json_t *cfg_errors_to_json(const cfg_errors_t *errs)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < errs->size; i++)
        json_array_append_new(arr, json_string(errs->entries[i]));
    return arr;
}
