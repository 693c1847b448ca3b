/* The handlers of /v1/rollouts: list, one (with its verdicts), and pause / resume / promote / abort. */
#include "cp_server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cp_h_list_rollouts(cp_call_t *call)
{
    size_t len;
    int64_t v, before = 0;
    int limit = 50;
    const char *s = cp_query_get(&call->query, "limit", &len);
    if (s != NULL) {
        if (cp_parse_version(s, len, 0, &v) != 0 || v > 1000) {
            cp_respond_error(call, 400, "limit: must be an integer from 1 to 1000", NULL);
            return;
        }
        limit = (int)v;
    }
    if ((s = cp_query_get(&call->query, "before", &len)) != NULL) {
        if (cp_parse_version(s, len, 0, &v) != 0) {
            cp_respond_error(call, 400, "before: must be a positive integer", NULL);
            return;
        }
        before = v;
    }
    json_t *list = cp_ro_store_list(call->srv->store, before, limit);
    if (list == NULL) {
        cp_respond_store_error(call);
        return;
    }
    size_t n = json_array_size(list);
    json_t *next = n == (size_t)limit && n > 0 ? json_incref(json_object_get(json_array_get(list, n - 1), "id")) : json_null();
    const cp_rollout_t *live = cp_engine_live(call->srv);
    /* reasons quote NACK errors, free text from dataplanes: a viewer sees their URLs redacted */
    list = cp_redact_strings(call, list);
    cp_respond_json(call, 200,
                    json_pack("{so so so}", "current", live != NULL ? json_integer(live->id) : json_null(), "rollouts", list,
                              "next_before", next));
}

/* {id} as a rollout number; answers 400 otherwise. */
static int path_rollout(cp_call_t *call, int64_t *id)
{
    h2o_iovec_t s = call->params[0];
    if (cp_parse_version(s.base, s.len, 0, id) != 0) {
        cp_respond_errorf(call, 400, "id: \"%.32s\" is not a rollout id (a positive integer)", s.base);
        return -1;
    }
    return 0;
}

void cp_h_get_rollout(cp_call_t *call)
{
    int64_t id;
    if (path_rollout(call, &id) != 0)
        return;
    cp_rollout_t ro;
    int rc = cp_ro_store_get(call->srv->store, id, &ro);
    if (rc == CP_STORE_NOT_FOUND) {
        cp_respond_errorf(call, 404, "rollout %lld does not exist", (long long)id);
        return;
    }
    if (rc != CP_STORE_OK) {
        cp_respond_store_error(call);
        return;
    }
    json_t *verdicts = cp_ro_store_verdicts(call->srv->store, id);
    if (verdicts == NULL) {
        cp_rollout_dispose(&ro);
        cp_respond_store_error(call);
        return;
    }
    json_t *body = cp_rollout_json(&ro, verdicts);
    cp_rollout_dispose(&ro);
    cp_respond_json(call, 200, body != NULL ? cp_redact_strings(call, body) : NULL);
}

static void control(cp_call_t *call, const char *action)
{
    int64_t id;
    if (path_rollout(call, &id) != 0)
        return;
    cp_engine_control(call, id, action);
}

void cp_h_pause_rollout(cp_call_t *call)
{
    control(call, "pause");
}

void cp_h_resume_rollout(cp_call_t *call)
{
    control(call, "resume");
}

void cp_h_promote_rollout(cp_call_t *call)
{
    control(call, "promote");
}

void cp_h_abort_rollout(cp_call_t *call)
{
    control(call, "abort");
}
