/*
 * pw_buf: a growing text buffer appended to with printf formats, for response bodies built in one
 * go (Prometheus text, admin answers). Not for the relay path: it mallocs.
 */
#ifndef PATHWAY_PW_BUF_H
#define PATHWAY_PW_BUF_H

#include <stddef.h>

typedef struct st_pw_buf_t {
    char *p;    /* the text, NUL-terminated once anything was appended; NULL before */
    size_t len; /* bytes of text, not counting the NUL */
    size_t cap; /* bytes allocated */
    int failed; /* an append ran out of memory (or the format failed): the text is incomplete */
} pw_buf_t;

/* An empty buffer; it owns nothing until the first append. */
#define PW_BUF_INIT                                                                                                                \
    {                                                                                                                              \
        NULL, 0, 0, 0                                                                                                              \
    }

/* Appends the formatted text, growing the buffer as needed. On failure sets `failed` and keeps the
 * text appended so far; once `failed` is set every later append does nothing, so callers check it
 * once, after the last append. */
void pw_buf_printf(pw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees the text; the buffer is empty (and not failed) again. */
void pw_buf_dispose(pw_buf_t *b);

#endif
