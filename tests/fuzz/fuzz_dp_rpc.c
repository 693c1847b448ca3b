/* Fuzz target: request inspection outside input reaches (routing of path + header, the JSON-RPC
 * id of a body, the method scan against a parse, the error body built from it). Input: the first line is the path, the second
 * the Target-Service-Id header, the rest the body; the whole input is also checked as an HTTP/1
 * request head. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include "dp_phr.h"
#include "dp_rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nl1 = memchr(p, '\n', size);
    const char *path = p;
    size_t pathlen = nl1 ? (size_t)(nl1 - p) : size;
    const char *hdr = NULL, *body = end;
    size_t hdrlen = 0;
    if (nl1 != NULL) {
        const char *h = nl1 + 1;
        const char *nl2 = memchr(h, '\n', (size_t)(end - h));
        hdr = h;
        hdrlen = nl2 ? (size_t)(nl2 - h) : (size_t)(end - h);
        body = nl2 ? nl2 + 1 : end;
    }
    const char *svc = NULL;
    size_t svclen = 0;
    if (dp_route(path, pathlen, hdr, hdrlen, &svc, &svclen) == DP_ROUTE_OK) {
        if (svclen == 0 || svclen > DP_SERVICE_ID_MAX || svc < p || svc + svclen > end)
            abort();
    }
    size_t blen = (size_t)(end - body);
    json_t *id = dp_rpc_request_id(body, blen);
    json_decref(id);
    /* the method scan never misses a call a full parse finds */
    char *names[] = {"eth_sendRawTransaction", "a", ""};
    if (dp_rpc_calls_any_parsed(body, blen, names, 3) && !dp_rpc_calls_any(body, blen, names, 3))
        abort();
    size_t outlen = 0;
    char *out = dp_rpc_error_body(body, blen, DP_RPC_INVALID_REQUEST, "fuzz", &outlen);
    if (out != NULL) {
        json_t *doc = json_loadb(out, outlen, 0, NULL);
        if (doc == NULL || !json_is_object(json_object_get(doc, "error")))
            abort(); /* what the gateway writes must always be valid JSON-RPC */
        json_decref(doc);
        free(out);
    }
    /* the whole input as an HTTP/1 request head (the strict framing check); where it parses, the
     * line scan the relay uses must agree with the parse, on the head as libh2o leaves it (header
     * names lowercased in place, body cut off) */
    dp_framing_t parsed = dp_rpc_check_http1_head((const char *)data, size);
    if (parsed > DP_FRAMING_UNREADABLE)
        abort();
    if (parsed != DP_FRAMING_UNREADABLE) {
        char *copy = malloc(size);
        memcpy(copy, data, size);
        const char *m, *pth;
        size_t ml, pl, nh = 100;
        int minor;
        struct phr_header h[100];
        int hl = phr_parse_request(copy, size, &m, &ml, &pth, &pl, &minor, h, &nh, 0);
        if (hl <= 0)
            abort();
        for (size_t i = 0; i != nh; ++i)
            for (size_t j = 0; j != h[i].name_len; ++j)
                ((char *)h[i].name)[j] = (char)tolower((unsigned char)h[i].name[j]);
        if (dp_rpc_scan_http1_head(copy, (size_t)hl, minor >= 1) != parsed)
            abort();
        free(copy);
    }
    return 0;
}
