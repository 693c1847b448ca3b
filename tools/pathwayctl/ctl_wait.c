/*
 * --wait's judgement of one dataplane against the version just stored, and the texts of a drift and
 * of endpoints that are not up. Pure, so the unit tests cover every state; ctl_fleet.c polls
 * GET /v1/dataplanes and prints.
 */
#include "ctl.h"
#include <string.h>

static int64_t int_of(const json_t *dp, const char *key)
{
    return json_is_integer(json_object_get(dp, key)) ? (int64_t)json_integer_value(json_object_get(dp, key)) : 0;
}

void ctl_drift_text(const json_t *dp, char *out, size_t len)
{
    const char *reported = json_string_value(json_object_get(dp, "reported_hash"));
    const char *expected = json_string_value(json_object_get(dp, "expected_hash"));
    snprintf(out, len, "drifted: serves hash %.12s, version %lld has %.12s", reported != NULL ? reported : "?",
             (long long)int_of(dp, "applied_version"), expected != NULL ? expected : "?");
}

void ctl_endpoints_text(const json_t *dp, char *out, size_t len)
{
    json_t *eps = json_object_get(dp, "endpoints"), *e;
    const char *svc;
    size_t o = 0;
    int down = 0; /* services not all up */
    if (len == 0)
        return;
    out[0] = '\0';
    if (!json_is_object(eps)) {
        snprintf(out, len, "-");
        return;
    }
    json_object_foreach(eps, svc, e)
    {
        json_int_t up = json_integer_value(json_object_get(e, "up")), total = json_integer_value(json_object_get(e, "total"));
        int panic = json_is_true(json_object_get(e, "panic"));
        if (up >= total && !panic)
            continue;
        down++;
        int w = panic ? snprintf(out + o, len - o, "%s%s PANIC %lld/%lld", o ? ", " : "", svc, (long long)up, (long long)total)
                      : snprintf(out + o, len - o, "%s%s %lld/%lld up", o ? ", " : "", svc, (long long)up, (long long)total);
        if (w < 0 || (size_t)w >= len - o) {
            /* cut at the last whole service */
            out[o] = '\0';
            break;
        }
        o += (size_t)w;
    }
    if (down == 0)
        snprintf(out, len, "all up");
}

ctl_dp_verdict_t ctl_dp_verdict(const json_t *dp, int64_t version, char *why, size_t whylen)
{
    const char *state = json_string_value(json_object_get(dp, "state"));
    int64_t applied = int_of(dp, "applied_version"), rejected = int_of(dp, "rejected_version");
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    if (state != NULL && strcmp(state, "disconnected") == 0)
        return CTL_DP_IGNORED;
    /* it ACKed this version (or a newer one) but serves another document */
    if (state != NULL && strcmp(state, "drifted") == 0 && applied >= version) {
        if (why != NULL)
            ctl_drift_text(dp, why, whylen);
        return CTL_DP_FAILED;
    }
    /* it NACKed this version, or a newer one without ever ACKing this one: it will not ACK it */
    if (rejected >= version && applied < version) {
        if (why != NULL) {
            const char *e = json_string_value(json_object_get(dp, "error"));
            snprintf(why, whylen, "rejected version %lld: %s", (long long)rejected, e != NULL && e[0] ? e : "(no error given)");
        }
        return CTL_DP_FAILED;
    }
    if (applied >= version)
        return CTL_DP_ACKED;
    return CTL_DP_PENDING;
}
