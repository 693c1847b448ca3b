/* dp_cors: CORS answers of the relay (see dp_cors.h). */
#include <inttypes.h>
#include <stdio.h>
#include "pw_http.h"
#include "dp_cors.h"
#include "dp_errors.h"

static h2o_iovec_t request_header(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, len, -1);
    return i != -1 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

static int cors_allows(const dp_service_t *svc, h2o_iovec_t origin)
{
    const cfg_cors_t *c = &svc->cfg->cors;
    return origin.base != NULL && dp_cors_origin_allowed(c->allow_origins.entries, c->allow_origins.size, origin.base, origin.len);
}

/* A response of a service with CORS on: an allowed Origin is echoed (so one answer never serves
 * another origin from a cache: Vary), and the browser may read X-Request-Id and the failover
 * headers (X-Pathway-Attempts, X-Pathway-Hedged). Others get nothing. */
void dp_cors_add_headers(h2o_req_t *req, const dp_service_t *svc)
{
    h2o_iovec_t origin = request_header(req, H2O_STRLIT("origin"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
    if (!cors_allows(svc, origin))
        return;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, origin.base, origin.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-expose-headers"), 0, NULL,
                          H2O_STRLIT("X-Request-Id, X-Pathway-Attempts, X-Pathway-Hedged"));
}

/* Answers an OPTIONS request that is a CORS preflight (Origin and Access-Control-Request-Method)
 * for a service with CORS on: 204, with the CORS headers when the origin is allowed, without them
 * when not (as Envoy answers preflights it does not forward; the browser then refuses the call).
 * `POST /v1` names its service in a header a preflight does not carry, so a preflight of `/v1` is
 * answered for the services that have CORS on: allowed when one of them allows the origin (the
 * response to the call itself is then judged by its own service), with the shortest max_age among
 * them. Returns 1 with the response's status and headers set (*svcp = the service named, or NULL)
 * for the caller to send, 0 when it is not such a preflight: the caller answers as without CORS
 * (405). */
int dp_cors_preflight(h2o_req_t *req, dp_gen_t *g, dp_route_result_t rt, const char *id, size_t idlen, h2o_iovec_t reqid,
                      dp_service_t **svcp)
{
    h2o_iovec_t origin = request_header(req, H2O_STRLIT("origin"));
    if (origin.base == NULL || request_header(req, H2O_STRLIT("access-control-request-method")).base == NULL)
        return 0;
    dp_service_t *svc = NULL;
    int allowed = 0;
    uint64_t max_age_ms = UINT64_MAX;
    if (rt == DP_ROUTE_OK) {
        if ((svc = dp_gen_find_service(g, id, idlen)) == NULL || !dp_cors_on(svc))
            return 0;
        if ((allowed = cors_allows(svc, origin)) != 0)
            max_age_ms = svc->cfg->cors.max_age_ms;
    } else if (rt == DP_ROUTE_MISSING) {
        int any_on = 0;
        for (size_t i = 0; i != g->nservices; ++i) {
            const dp_service_t *s = g->services + i;
            if (!dp_cors_on(s))
                continue;
            any_on = 1;
            if (cors_allows(s, origin)) {
                allowed = 1;
                if (s->cfg->cors.max_age_ms < max_age_ms)
                    max_age_ms = s->cfg->cors.max_age_ms;
            }
        }
        if (!any_on)
            return 0;
    } else {
        return 0;
    }
    req->res.status = 204;
    req->res.reason = pw_http_reason(204);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, reqid.base, reqid.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
    if (allowed) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, origin.base, origin.len);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                              H2O_STRLIT("POST, OPTIONS"));
        h2o_iovec_t asked = request_header(req, H2O_STRLIT("access-control-request-headers"));
        if (asked.base != NULL) {
            char *names = h2o_mem_alloc_pool(&req->pool, sizeof(DP_CORS_SAFE_HEADERS));
            size_t n = dp_cors_allow_headers(asked.base, asked.len, names);
            if (n != 0)
                h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL, names, n);
        }
        char *ma = h2o_mem_alloc_pool(&req->pool, 24);
        int n = snprintf(ma, 24, "%" PRIu64, max_age_ms / 1000);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL, ma, (size_t)n);
    }
    *svcp = svc;
    return 1;
}
