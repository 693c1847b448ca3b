#include "pw_buf.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void pw_buf_printf(pw_buf_t *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        /* strictly less: vsnprintf needs room for the NUL too, or the text was cut */
        if (b->p != NULL && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap != 0 ? b->cap * 2 : 4096) + (size_t)n;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->failed = 1;
            if (b->p != NULL)
                b->p[b->len] = '\0'; /* vsnprintf wrote a cut piece past len */
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

void pw_buf_dispose(pw_buf_t *b)
{
    free(b->p);
    *b = (pw_buf_t)PW_BUF_INIT;
}
