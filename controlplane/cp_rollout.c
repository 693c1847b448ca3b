/* The pure parts of safe rollouts: the rollout object, traffic counters, the gate, the stable order. */
#include "cp_rollout.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"
#include "cp_body.h"

const double cp_rollout_bucket_bounds_ms[CP_ROLLOUT_BUCKETS] = {1,   2,   5,    10,   25,   50,    100,
                                                                250, 500, 1000, 2500, 5000, 10000, INFINITY};

static const char *const verdict_names[] = {"pass", "fail", "inconclusive"};
static const char *const ro_state_names[] = {"progressing", "paused", "promoted", "aborted", "rolled_back"};

const char *cp_verdict_name(cp_verdict_t v)
{
    return (size_t)v < CP_VERDICT_NUM ? verdict_names[v] : "?";
}

const char *cp_ro_state_name(cp_ro_state_t s)
{
    return (size_t)s < CP_RO_NUM_STATES ? ro_state_names[s] : "?";
}

int cp_ro_state_from_name(const char *s, cp_ro_state_t *out)
{
    for (size_t i = 0; s != NULL && i < CP_RO_NUM_STATES; i++)
        if (strcmp(s, ro_state_names[i]) == 0) {
            *out = (cp_ro_state_t)i;
            return 0;
        }
    return -1;
}

/* --- the rollout object ------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int only(const json_t *obj, const char *where, const char *const *keys, const char *expected, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        size_t i;
        for (i = 0; keys[i] != NULL; i++)
            if (strcmp(k, keys[i]) == 0)
                break;
        if (keys[i] == NULL)
            return bad(err, errlen, "%s.%.64s: unknown key (expected %s)", where, k, expected);
    }
    return 0;
}

/* A duration: "30s", "250ms", "2m", or a number of seconds. */
static int get_duration(const json_t *obj, const char *key, const char *where, uint64_t min_ms, uint64_t *out, char *err,
                        size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    uint64_t ms;
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 86400 * 7) {
        ms = (uint64_t)json_integer_value(v) * 1000;
    } else if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) <= 86400 * 7) {
        ms = (uint64_t)(json_real_value(v) * 1000);
    } else {
        const char *why = NULL;
        if (!json_is_string(v) || json_string_length(v) > 31 || cfg_parse_duration(json_string_value(v), &ms, &why) != 0)
            return bad(err, errlen, "%s.%s: must be a duration such as 30s, 250ms or 2m", where, key);
    }
    if (ms < min_ms || ms > 7 * 86400 * 1000ull)
        return bad(err, errlen, "%s.%s: must be from %llums to 7 days", where, key, (unsigned long long)min_ms);
    *out = ms;
    return 0;
}

static int get_number(const json_t *obj, const char *key, const char *where, double min, double max, double *out, char *err,
                      size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max || isnan(json_number_value(v)))
        return bad(err, errlen, "%s.%s: must be a number from %g to %g", where, key, min, max);
    *out = json_number_value(v);
    return 0;
}

static int get_count(const json_t *obj, const char *key, const char *where, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return bad(err, errlen, "%s.%s: must be an integer from 0 to %llu", where, key, (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_canary(const json_t *c, const char *where, cp_rollout_spec_t *out, char *err, size_t errlen)
{
    static const char *const keys[] = {"labels", "percent", NULL};
    if (!json_is_object(c))
        return bad(err, errlen, "%s.canary: must be an object: {\"labels\": {...}} or {\"percent\": P}", where);
    if (only(c, where, keys, "labels or percent", err, errlen) != 0)
        return -1;
    const json_t *labels = json_object_get(c, "labels"), *pct = json_object_get(c, "percent");
    if ((labels == NULL) == (pct == NULL))
        return bad(err, errlen, "%s.canary: give exactly one of labels and percent", where);
    if (pct != NULL) {
        if (!json_is_integer(pct) || json_integer_value(pct) < 1 || json_integer_value(pct) > 100)
            return bad(err, errlen, "%s.canary.percent: must be an integer from 1 to 100", where);
        out->canary_percent = (int)json_integer_value(pct);
        return 0;
    }
    if (!json_is_object(labels) || json_object_size(labels) == 0 || json_object_size(labels) > CP_MAX_LABELS)
        return bad(err, errlen, "%s.canary.labels: must be an object of 1 to %d labels (name: value)", where, CP_MAX_LABELS);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        if (!cp_valid_id(k, strlen(k)) || !json_is_string(v) || json_string_length(v) > CP_MAX_LABEL_LEN ||
            strlen(json_string_value(v)) != json_string_length(v))
            return bad(err, errlen, "%s.canary.labels.%.64s: names are [A-Za-z0-9_.-]{1,64}, values strings of at most %d bytes",
                       where, k, CP_MAX_LABEL_LEN);
    }
    out->canary_labels = json_deep_copy(labels);
    return out->canary_labels != NULL ? 0 : bad(err, errlen, "out of memory");
}

int cp_rollout_spec_parse(const json_t *v, const char *where, cp_rollout_spec_t *out, char *err, size_t errlen)
{
    static const char *const keys[] = {"canary", "steps", "gate", NULL};
    static const char *const step_keys[] = {"percent", "hold", NULL};
    static const char *const gate_keys[] = {
        "max_error_rate_increase", "max_p99_ratio", "min_requests", "interval", "failures_allowed", NULL};
    memset(out, 0, sizeof(*out));
    out->max_error_rate_increase = CP_ROLLOUT_DEFAULT_MAX_ERROR_RATE_INCREASE;
    out->max_p99_ratio = CP_ROLLOUT_DEFAULT_MAX_P99_RATIO;
    out->min_requests = CP_ROLLOUT_DEFAULT_MIN_REQUESTS;
    out->interval_ms = CP_ROLLOUT_DEFAULT_INTERVAL_MS;
    out->failures_allowed = CP_ROLLOUT_DEFAULT_FAILURES_ALLOWED;
    char w[64];
    int rc = -1;
    if (!json_is_object(v)) {
        bad(err, errlen, "%s: must be an object {canary, steps, gate}", where);
        goto Exit;
    }
    if (only(v, where, keys, "canary, steps, gate", err, errlen) != 0)
        goto Exit;
    const json_t *canary = json_object_get(v, "canary");
    if (canary != NULL && !json_is_null(canary) && parse_canary(canary, where, out, err, errlen) != 0)
        goto Exit;
    const json_t *steps = json_object_get(v, "steps");
    if (!json_is_array(steps) || json_array_size(steps) == 0 || json_array_size(steps) > CP_ROLLOUT_MAX_STEPS) {
        bad(err, errlen, "%s.steps: required, a list of 1 to %d steps {percent, hold}", where, CP_ROLLOUT_MAX_STEPS);
        goto Exit;
    }
    out->num_steps = json_array_size(steps);
    for (size_t i = 0; i < out->num_steps; i++) {
        const json_t *s = json_array_get(steps, i);
        snprintf(w, sizeof(w), "%s.steps[%zu]", where, i);
        if (!json_is_object(s)) {
            bad(err, errlen, "%s: must be an object {percent, hold}", w);
            goto Exit;
        }
        if (only(s, w, step_keys, "percent, hold", err, errlen) != 0)
            goto Exit;
        const json_t *p = json_object_get(s, "percent");
        int min = i == 0 && out->canary_labels != NULL ? 0 : 1;
        if (!json_is_integer(p) || json_integer_value(p) < min || json_integer_value(p) > 100) {
            bad(err, errlen, "%s.percent: required, an integer from %d to 100%s", w, min,
                min == 0 ? " (0: the labelled canaries alone)" : "");
            goto Exit;
        }
        out->steps[i].percent = (int)json_integer_value(p);
        if (i > 0 && out->steps[i].percent <= out->steps[i - 1].percent) {
            bad(err, errlen, "%s.percent: steps must grow: %d is not more than steps[%zu].percent (%d)", w, out->steps[i].percent,
                i - 1, out->steps[i - 1].percent);
            goto Exit;
        }
        if (json_object_get(s, "hold") == NULL) {
            bad(err, errlen, "%s.hold: required, a duration such as 2m", w);
            goto Exit;
        }
        if (get_duration(s, "hold", w, 0, &out->steps[i].hold_ms, err, errlen) != 0)
            goto Exit;
    }
    const json_t *gate = json_object_get(v, "gate");
    snprintf(w, sizeof(w), "%s.gate", where);
    if (gate != NULL && !json_is_null(gate)) {
        if (!json_is_object(gate)) {
            bad(err, errlen, "%s: must be an object", w);
            goto Exit;
        }
        if (only(gate, w, gate_keys, "max_error_rate_increase, max_p99_ratio, min_requests, interval, failures_allowed", err,
                 errlen) != 0 ||
            get_number(gate, "max_error_rate_increase", w, 0, 1, &out->max_error_rate_increase, err, errlen) != 0 ||
            get_number(gate, "max_p99_ratio", w, 0, 1e6, &out->max_p99_ratio, err, errlen) != 0 ||
            get_count(gate, "min_requests", w, 1000000000ull, &out->min_requests, err, errlen) != 0 ||
            get_duration(gate, "interval", w, 100, &out->interval_ms, err, errlen) != 0 ||
            get_count(gate, "failures_allowed", w, 1000, &out->failures_allowed, err, errlen) != 0)
            goto Exit;
    }
    rc = 0;
Exit:
    if (rc != 0)
        cp_rollout_spec_dispose(out);
    return rc;
}

void cp_rollout_spec_dispose(cp_rollout_spec_t *s)
{
    json_decref(s->canary_labels);
    s->canary_labels = NULL;
}

/* A duration in the largest unit that keeps it whole: "2m", "30s", "250ms". */
static json_t *duration_json(uint64_t ms)
{
    if (ms != 0 && ms % 60000 == 0)
        return json_sprintf("%llum", (unsigned long long)(ms / 60000));
    if (ms % 1000 == 0)
        return json_sprintf("%llus", (unsigned long long)(ms / 1000));
    return json_sprintf("%llums", (unsigned long long)ms);
}

json_t *cp_rollout_spec_json(const cp_rollout_spec_t *s)
{
    json_t *steps = json_array();
    for (size_t i = 0; steps != NULL && i < s->num_steps; i++)
        json_array_append_new(steps, json_pack("{si sI so}", "percent", s->steps[i].percent, "hold_ms",
                                               (json_int_t)s->steps[i].hold_ms, "hold", duration_json(s->steps[i].hold_ms)));
    json_t *canary = s->canary_labels != NULL ? json_pack("{sO}", "labels", s->canary_labels)
                     : s->canary_percent > 0  ? json_pack("{si}", "percent", s->canary_percent)
                                              : json_null();
    return json_pack("{so so s{sf sf sI sI so sI}}", "canary", canary, "steps", steps, "gate", "max_error_rate_increase",
                     s->max_error_rate_increase, "max_p99_ratio", s->max_p99_ratio, "min_requests", (json_int_t)s->min_requests,
                     "interval_ms", (json_int_t)s->interval_ms, "interval", duration_json(s->interval_ms), "failures_allowed",
                     (json_int_t)s->failures_allowed);
}

/* --- traffic ------------------------------------------------------------------------------------ */

static int get_counter(const json_t *obj, const char *key, const char *where, uint64_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(err, errlen, "%s.%s: required, an integer >= 0", where, key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int cp_traffic_parse_services(const json_t *v, int64_t *version, cp_service_traffic_t **services, size_t *n, char *err,
                              size_t errlen)
{
    *services = NULL;
    *n = 0;
    if (!json_is_object(v))
        return bad(err, errlen, "traffic: must be an object {version, services}");
    const json_t *ver = json_object_get(v, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) < 0 || json_integer_value(ver) > CP_MAX_VERSION)
        return bad(err, errlen, "traffic.version: required, the fleet version the counters are about (an integer >= 0)");
    *version = json_integer_value(ver);
    const json_t *svcs = json_object_get(v, "services");
    if (!json_is_object(svcs) || json_object_size(svcs) > CP_ROLLOUT_MAX_SERVICES)
        return bad(err, errlen, "traffic.services: required, an object of at most %d services", CP_ROLLOUT_MAX_SERVICES);
    cp_service_traffic_t *out = json_object_size(svcs) > 0 ? malloc(json_object_size(svcs) * sizeof(*out)) : NULL;
    if (json_object_size(svcs) > 0 && out == NULL)
        return bad(err, errlen, "out of memory");
    size_t k = 0;
    const char *name;
    json_t *s;
    json_object_foreach((json_t *)svcs, name, s)
    {
        char w[128];
        snprintf(w, sizeof(w), "traffic.services.%.64s", name);
        cp_traffic_t *t = &out[k].t;
        memset(t, 0, sizeof(*t));
        out[k].name = name;
        if (!json_is_object(s)) {
            bad(err, errlen, "%s: must be an object {requests, errors, latency_ms_buckets}", w);
            goto Fail;
        }
        if (get_counter(s, "requests", w, &t->requests, err, errlen) != 0 ||
            get_counter(s, "errors", w, &t->errors, err, errlen) != 0)
            goto Fail;
        if (t->errors > t->requests) {
            bad(err, errlen, "%s.errors: more errors than requests", w);
            goto Fail;
        }
        const json_t *b = json_object_get(s, "latency_ms_buckets");
        if (b != NULL && !json_is_null(b)) {
            if (!json_is_array(b) || json_array_size(b) != CP_ROLLOUT_BUCKETS) {
                bad(err, errlen, "%s.latency_ms_buckets: must be a list of %d counts", w, CP_ROLLOUT_BUCKETS);
                goto Fail;
            }
            for (size_t i = 0; i < CP_ROLLOUT_BUCKETS; i++) {
                const json_t *c = json_array_get(b, i);
                if (!json_is_integer(c) || json_integer_value(c) < 0) {
                    bad(err, errlen, "%s.latency_ms_buckets[%zu]: must be an integer >= 0", w, i);
                    goto Fail;
                }
                t->buckets[i] = (uint64_t)json_integer_value(c);
            }
        }
        k++;
    }
    *services = out;
    *n = k;
    return 0;
Fail:
    free(out);
    return -1;
}

int cp_traffic_parse(const json_t *v, int64_t *version, cp_traffic_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    cp_service_traffic_t *svcs;
    size_t n;
    if (cp_traffic_parse_services(v, version, &svcs, &n, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        cp_traffic_add(out, &svcs[i].t);
    free(svcs);
    return 0;
}

void cp_traffic_add(cp_traffic_t *a, const cp_traffic_t *b)
{
    a->requests += b->requests;
    a->errors += b->errors;
    for (size_t i = 0; i < CP_ROLLOUT_BUCKETS; i++)
        a->buckets[i] += b->buckets[i];
}

void cp_traffic_since(const cp_traffic_t *cur, const cp_traffic_t *mark, cp_traffic_t *out)
{
    int back = cur->requests < mark->requests || cur->errors < mark->errors;
    for (size_t i = 0; !back && i < CP_ROLLOUT_BUCKETS; i++)
        back = cur->buckets[i] < mark->buckets[i];
    if (back) {
        *out = *cur;
        return;
    }
    out->requests = cur->requests - mark->requests;
    out->errors = cur->errors - mark->errors;
    for (size_t i = 0; i < CP_ROLLOUT_BUCKETS; i++)
        out->buckets[i] = cur->buckets[i] - mark->buckets[i];
}

void cp_figures_of(const cp_traffic_t *t, cp_figures_t *out)
{
    memset(out, 0, sizeof(*out));
    out->requests = t->requests;
    out->errors = t->errors;
    out->error_rate = t->requests > 0 ? (double)t->errors / (double)t->requests : 0;
    uint64_t total = 0;
    for (size_t i = 0; i < CP_ROLLOUT_BUCKETS; i++)
        total += t->buckets[i];
    if (total == 0)
        return;
    /* the rank of the 99th percentile, ceil(0.99 × total), found in the cumulated buckets */
    uint64_t rank = (total * 99 + 99) / 100, seen = 0;
    for (size_t i = 0; i < CP_ROLLOUT_BUCKETS; i++) {
        seen += t->buckets[i];
        if (seen >= rank) {
            out->p99_ms = cp_rollout_bucket_bounds_ms[i];
            out->has_p99 = 1;
            return;
        }
    }
}

json_t *cp_figures_json(const cp_figures_t *f)
{
    return json_pack("{sI sI sf so}", "requests", (json_int_t)f->requests, "errors", (json_int_t)f->errors, "error_rate",
                     f->error_rate, "p99_ms", f->has_p99 && isfinite(f->p99_ms) ? json_real(f->p99_ms) : json_null());
}

int cp_figures_from_json(const json_t *v, cp_figures_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(v))
        return -1;
    out->requests = (uint64_t)json_integer_value(json_object_get(v, "requests"));
    out->errors = (uint64_t)json_integer_value(json_object_get(v, "errors"));
    out->error_rate = json_number_value(json_object_get(v, "error_rate"));
    const json_t *p = json_object_get(v, "p99_ms");
    out->has_p99 = out->requests > 0;
    out->p99_ms = json_is_number(p) ? json_number_value(p) : INFINITY;
    return 0;
}

static void fmt_p99(char *buf, size_t len, const cp_figures_t *f)
{
    if (!f->has_p99)
        snprintf(buf, len, "none");
    else if (isinf(f->p99_ms))
        snprintf(buf, len, ">10000ms");
    else
        snprintf(buf, len, "%gms", f->p99_ms);
}

cp_verdict_t cp_rollout_judge(const cp_rollout_spec_t *s, const cp_figures_t *canary, const cp_figures_t *baseline, char *reason,
                              size_t len)
{
    if (canary->requests == 0 || canary->requests < s->min_requests) {
        snprintf(reason, len, "canary served %llu requests in the window, fewer than min_requests (%llu)",
                 (unsigned long long)canary->requests, (unsigned long long)s->min_requests);
        return CP_VERDICT_INCONCLUSIVE;
    }
    double base_rate = baseline != NULL ? baseline->error_rate : 0;
    char cp[32], bp[32];
    fmt_p99(cp, sizeof(cp), canary);
    if (baseline != NULL)
        fmt_p99(bp, sizeof(bp), baseline);
    else
        snprintf(bp, sizeof(bp), "none");
    if (canary->error_rate > base_rate + s->max_error_rate_increase) {
        snprintf(reason, len, "canary error rate %.4f > baseline %.4f + max_error_rate_increase %g", canary->error_rate, base_rate,
                 s->max_error_rate_increase);
        return CP_VERDICT_FAIL;
    }
    if (baseline != NULL && baseline->has_p99 && canary->has_p99 && !isinf(baseline->p99_ms) &&
        canary->p99_ms > s->max_p99_ratio * baseline->p99_ms) {
        snprintf(reason, len, "canary p99 %s > max_p99_ratio %g x baseline p99 %s", cp, s->max_p99_ratio, bp);
        return CP_VERDICT_FAIL;
    }
    snprintf(reason, len, "canary error rate %.4f (baseline %.4f), p99 %s (baseline %s)", canary->error_rate, base_rate, cp, bp);
    return CP_VERDICT_PASS;
}

/* --- choosing dataplanes ------------------------------------------------------------------------- */

static int64_t order_rollout; /* qsort has no context argument: the order is computed on the loop's thread */

static uint64_t order_key(const char *id)
{
    char buf[96];
    int n = snprintf(buf, sizeof(buf), "%lld/%s", (long long)order_rollout, id);
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n && i < (int)sizeof(buf); i++) {
        h ^= (unsigned char)buf[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int cmp_order(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    uint64_t hx = order_key(x), hy = order_key(y);
    return hx < hy ? -1 : hx > hy ? 1 : strcmp(x, y);
}

void cp_rollout_order(int64_t rollout_id, const char **ids, size_t n)
{
    order_rollout = rollout_id;
    qsort(ids, n, sizeof(ids[0]), cmp_order);
}

size_t cp_rollout_share(int percent, size_t n)
{
    if (n == 0 || percent <= 0)
        return 0;
    size_t k = ((size_t)percent * n + 99) / 100;
    return k < 1 ? 1 : k > n ? n : k;
}

int cp_labels_match(const json_t *labels, const json_t *want)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)want, k, v)
    {
        const json_t *have = json_object_get(labels, k);
        if (!json_is_string(have) || !json_equal((json_t *)have, v))
            return 0;
    }
    return 1;
}

/* --- the record ------------------------------------------------------------------------------------ */

void cp_rollout_dispose(cp_rollout_t *ro)
{
    cp_rollout_spec_dispose(&ro->spec);
    json_decref(ro->sets);
    json_decref(ro->marks);
    json_decref(ro->last_baseline);
    free(ro->author);
    free(ro->reason);
    memset(ro, 0, sizeof(*ro));
}

static json_t *time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[32];
    cp_format_time(ms, buf);
    return json_string(buf);
}

json_t *cp_rollout_json(const cp_rollout_t *ro, json_t *verdicts)
{
    json_t *spec = cp_rollout_spec_json(&ro->spec);
    json_t *current = json_array_get(ro->sets, json_array_size(ro->sets) - 1);
    const cp_rollout_step_t *st = &ro->spec.steps[ro->step < ro->spec.num_steps ? ro->step : 0];
    json_t *o = json_pack(
        "{sI ss sI sI sI sI sO sO sO so sO sO sI sI so so so so so so ss ss}", "id", (json_int_t)ro->id, "state",
        cp_ro_state_name(ro->state), "version", (json_int_t)ro->version, "from_version", (json_int_t)ro->from_version, "step",
        (json_int_t)ro->step, "step_percent", (json_int_t)st->percent, "canary", json_object_get(spec, "canary"), "steps",
        json_object_get(spec, "steps"), "gate", json_object_get(spec, "gate"), "dataplanes",
        current != NULL ? json_incref(current) : json_array(), "sets", ro->sets, "last_baseline", ro->last_baseline, "failures",
        (json_int_t)ro->failures, "step_passes", (json_int_t)ro->step_passes, "rollback_version",
        ro->rollback_version > 0 ? json_integer(ro->rollback_version) : json_null(), "created_at", time_or_null(ro->created_ms),
        "updated_at", time_or_null(ro->updated_ms), "step_started_at", time_or_null(ro->step_started_ms), "window_started_at",
        time_or_null(ro->window_started_ms), "paused_at", time_or_null(ro->state == CP_RO_PAUSED ? ro->paused_ms : 0), "author",
        ro->author != NULL ? ro->author : "", "reason", ro->reason != NULL ? ro->reason : "");
    json_decref(spec);
    if (o != NULL && verdicts != NULL)
        json_object_set_new(o, "verdicts", verdicts);
    else
        json_decref(verdicts);
    return o;
}
