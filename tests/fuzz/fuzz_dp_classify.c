/* Fuzz target: classification of upstream answers (dp_classify). Input: the first line is the
 * HTTP status (digits; anything else means 200), the second a hex digit choosing which of four
 * operator rows apply, the rest the response body. Checks: the verdict is well formed, the cheap
 * scan never changes it (dp_classify == dp_classify_parsed), 429 always rate-limits, and an array
 * in a 2xx (a batch's answer) is always ok. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_classify.h"

static const cfg_rpc_error_t rows_[] = {
    {.has_code = 1, .code = -32011, .rpc_class = CFG_RPC_RATE_LIMITED},
    {.message = "daily request count", .rpc_class = CFG_RPC_SERVER_ERROR},
    {.has_code = 1, .code = 3, .message = "out of gas", .rpc_class = CFG_RPC_MISSING_DATA},
    {.has_code = 1, .code = -32000, .message = "nonce", .rpc_class = CFG_RPC_CLIENT_ERROR},
};

static const char *line(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *next = nl != NULL ? nl + 1 : end;
    return nl != NULL ? nl : end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size, *next;
    const char *eol = line(p, end, &next);
    int status = 200;
    if (eol - p >= 1 && eol - p <= 3) {
        int v = 0, ok = 1;
        for (const char *c = p; c < eol; c++) {
            if (!isdigit((unsigned char)*c))
                ok = 0;
            else
                v = v * 10 + (*c - '0');
        }
        if (ok)
            status = v;
    }
    p = next;
    eol = line(p, end, &next);
    unsigned mask = 0;
    if (eol - p == 1 && isxdigit((unsigned char)*p))
        mask = (unsigned)strtoul((char[]){*p, '\0'}, NULL, 16);
    p = next;
    cfg_rpc_error_t rows[4];
    size_t nrows = 0;
    for (unsigned i = 0; i < 4; i++)
        if (mask & (1u << i))
            rows[nrows++] = rows_[i];
    /* the body in its own allocation, so a read past len is caught by ASan */
    size_t len = (size_t)(end - p);
    char *body = malloc(len ? len : 1);
    memcpy(body, p, len);

    dp_verdict_t v = dp_classify(status, body, len, rows, nrows);
    dp_verdict_t o = dp_classify_parsed(status, body, len, rows, nrows);
    if ((unsigned)v.cls >= DP_CLASS_COUNT)
        abort();
    int retriable_class = v.cls == DP_CLASS_RATE_LIMITED || v.cls == DP_CLASS_MISSING_DATA || v.cls == DP_CLASS_SERVER_ERROR;
    if (retriable_class != (v.reason >= 0) || v.reason >= CFG_RETRY_ON_COUNT)
        abort();
    if (v.cls != o.cls || v.reason != o.reason || v.has_code != o.has_code || v.code != o.code)
        abort(); /* the cheap scan skipped an error the parse finds */
    if (status == 429 && (v.cls != DP_CLASS_RATE_LIMITED || v.reason != CFG_RETRY_ON_HTTP_429))
        abort();
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]) != NULL && body[i] != '\0')
        i++;
    if (status >= 200 && status <= 299 && i < len && body[i] == '[' && v.cls != DP_CLASS_OK)
        abort(); /* an item's error never makes a batch a failure */
    free(body);
    return 0;
}
