/*
 * dp_cors: the answers of a service with CORS on (cors.allow_origins not empty) to browsers: its
 * response headers and its preflights. The origin and header checks are in dp_rpc.
 */
#ifndef PATHWAY_DP_CORS_H
#define PATHWAY_DP_CORS_H

#include "dp_internal.h"
#include "dp_rpc.h"

/* A service answers browsers when its cors.allow_origins is not empty. This test is the only cost
 * CORS adds to a relay while it is off. */
static inline int dp_cors_on(const dp_service_t *svc)
{
    return svc->cfg->cors.allow_origins.size != 0;
}

/* Adds the CORS headers of svc's response to req->res.headers (allocated in req->pool). */
void dp_cors_add_headers(h2o_req_t *req, const dp_service_t *svc);

/* Answers a CORS preflight (see dp_cors.c): 1 with req->res set, 0 when req is not one. */
int dp_cors_preflight(h2o_req_t *req, dp_gen_t *g, dp_route_result_t rt, const char *id, size_t idlen, h2o_iovec_t reqid,
                      dp_service_t **svcp);

#endif
