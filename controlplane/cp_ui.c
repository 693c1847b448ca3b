/*
 * GET /ui, /ui/ and /ui/<asset>: the web console. Public (the assets carry no data; every API call
 * the console makes carries the operator's token), with a Content-Security-Policy that allows only
 * the console's own scripts and styles, so an injected string can never run.
 */
#include "cp_ui.h"
#include "cp_server_internal.h"

#include <string.h>

/* No inline script or style, nothing from elsewhere, no framing, no forms posting away. Images may
 * also be data: URLs (nothing runs from an image). */
#define CP_UI_CSP                                                                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "         \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const cp_ui_asset_t *cp_ui_find(const char *name, size_t len)
{
    for (size_t i = 0; i < cp_ui_num_assets; i++)
        if (strlen(cp_ui_assets[i].name) == len && memcmp(cp_ui_assets[i].name, name, len) == 0)
            return &cp_ui_assets[i];
    return NULL;
}

/* h2o 2.2 has no tokens for these headers; names and values are literals, so nothing is copied */
static void add_literal_header(cp_call_t *call, const char *name, const char *value)
{
    h2o_add_header_by_str(&call->req->pool, &call->req->res.headers, name, strlen(name), 0, NULL, value, strlen(value));
}

static void add_security_headers(cp_call_t *call)
{
    add_literal_header(call, "content-security-policy", CP_UI_CSP);
    add_literal_header(call, "x-content-type-options", "nosniff");
    add_literal_header(call, "x-frame-options", "DENY");
    add_literal_header(call, "referrer-policy", "no-referrer");
}

/* Whether If-None-Match names `etag` (a list, or "*"; weak forms match too, as RFC 9110 asks for GET). */
static int none_match(cp_call_t *call, const char *etag)
{
    h2o_iovec_t *h = cp_find_header(call, H2O_TOKEN_IF_NONE_MATCH);
    if (h == NULL)
        return 0;
    size_t elen = strlen(etag);
    const char *p = h->base, *end = h->base + h->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            ++p;
        const char *tok = p;
        while (p < end && *p != ',')
            ++p;
        const char *tend = p;
        while (tend > tok && tend[-1] == ' ')
            --tend;
        if (tend - tok >= 2 && tok[0] == 'W' && tok[1] == '/')
            tok += 2;
        if ((tend - tok == 1 && *tok == '*') || ((size_t)(tend - tok) == elen && memcmp(tok, etag, elen) == 0))
            return 1;
    }
    return 0;
}

static void serve(cp_call_t *call, const cp_ui_asset_t *a)
{
    add_security_headers(call);
    cp_add_header(call, H2O_TOKEN_ETAG, a->etag);
    /* index.html names the other assets by fixed names: it is revalidated on every load (a 304 when
     * unchanged), so a new binary's console is picked up at once; the rest may be reused a while */
    int is_index = strcmp(a->name, "index.html") == 0;
    cp_add_header(call, H2O_TOKEN_CACHE_CONTROL, is_index ? "no-cache" : "public, max-age=300, must-revalidate");
    if (none_match(call, a->etag)) {
        cp_respond_raw(call, 304, NULL, "", 0);
        return;
    }
    cp_respond_raw(call, 200, a->content_type, (const char *)a->data, a->len);
}

void cp_h_ui_redirect(cp_call_t *call)
{
    add_security_headers(call);
    cp_add_header(call, H2O_TOKEN_LOCATION, "/ui/");
    cp_respond_error(call, 301, "the console is at /ui/", NULL);
}

void cp_h_ui_index(cp_call_t *call)
{
    serve(call, cp_ui_find(H2O_STRLIT("index.html")));
}

void cp_h_ui_asset(cp_call_t *call)
{
    const cp_ui_asset_t *a = cp_ui_find(call->params[0].base, call->params[0].len);
    if (a == NULL) {
        add_security_headers(call);
        cp_respond_errorf(call, 404, "no such console asset: %.64s", call->params[0].base);
        return;
    }
    serve(call, a);
}
