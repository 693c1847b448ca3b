/* Fuzz target: every parser of API input in controlplane/cp_body.c. The first byte picks the
 * parser, the rest is the input, so one corpus covers them all (8: a merge patch through the fleet
 * document validation that PUT and PATCH use; 9: a rollout object and a heartbeat's traffic,
 * controlplane/cp_rollout.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"
#include "cp_body.h"
#include "cp_rollout.h"
#include "cp_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char err[256];
    switch (data[0] % 10) {
    case 0: {
        cp_rollback_req_t r;
        if (cp_parse_rollback(in, len, &r, err, sizeof(err)) == 0)
            cp_rollback_req_dispose(&r);
        break;
    }
    case 1: {
        cp_tag_req_t r;
        if (cp_parse_tag(in, len, &r, err, sizeof(err)) == 0)
            cp_tag_req_dispose(&r);
        break;
    }
    case 2: {
        cp_status_req_t r;
        if (cp_parse_status(in, len, &r, err, sizeof(err)) == 0)
            cp_status_req_dispose(&r);
        break;
    }
    case 3: {
        static const char *const allowed[] = {"version", "wait", "message", "limit", "before", "from", NULL};
        cp_query_t q;
        if (cp_query_parse(in, len, allowed, &q, err, sizeof(err)) == 0) {
            size_t vl;
            cp_query_get(&q, "wait", &vl);
            cp_query_dispose(&q);
        }
        break;
    }
    case 4: {
        int64_t v;
        uint64_t ms;
        const char *e;
        cp_parse_version(in, len, 1, &v);
        cp_parse_wait(in, len, &ms, &e);
        cp_valid_message(in, len, &e);
        cp_valid_tag_name(in, len);
        break;
    }
    case 5:
        cp_if_match_holds(in, len, 7, 0);
        cp_if_match_holds(in, len, 0, 1);
        break;
    case 6:
        cp_content_type(in, len);
        cp_accepts_yaml(in, len);
        break;
    case 8: {
        /* PATCH /v1/config: a merge patch on a document, then the fleet validation PUT also runs */
        json_t *patch = json_loadb(in, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        if (patch == NULL)
            break;
        json_t *base = json_pack("{s{ss}s[{ss s[{ss}]}]}", "log", "level", "info", "services", "id", "eth", "endpoints", "url",
                                 "http://127.0.0.1:8545");
        json_t *merged = base != NULL ? cfg_merge_patch(base, patch) : NULL;
        if (merged != NULL) {
            cfg_errors_t errs;
            cfg_errors_init(&errs);
            char *canonical = NULL, hash[65];
            if (cp_document_prepare(merged, &canonical, hash, &errs) == 0)
                free(canonical);
            cfg_errors_dispose(&errs);
        }
        json_decref(merged);
        json_decref(base);
        json_decref(patch);
        break;
    }
    case 9: {
        json_t *v = json_loadb(in, len, JSON_DECODE_ANY, NULL);
        cp_rollout_spec_t spec;
        if (v != NULL && cp_rollout_spec_parse(v, "rollout", &spec, err, sizeof(err)) == 0) {
            json_decref(cp_rollout_spec_json(&spec));
            cp_rollout_spec_dispose(&spec);
        }
        int64_t version;
        cp_traffic_t t;
        if (v != NULL && cp_traffic_parse(v, &version, &t, err, sizeof(err)) == 0) {
            cp_figures_t f;
            cp_figures_of(&t, &f);
            json_decref(cp_figures_json(&f));
        }
        json_decref(v);
        break;
    }
    default: {
        json_t *v = cp_parse_json_object(in, len, err, sizeof(err));
        json_decref(v);
        break;
    }
    }
    return 0;
}
