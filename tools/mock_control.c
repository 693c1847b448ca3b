/*
 * pathway-mock-upstream's control listener (--control-port): GET /control shows the settings, the
 * head and the calls by method; POST /control changes faults, latency, lag, errors, status and the capacity model while
 * the mock runs (the whole body is checked before anything changes); POST /control/reset-counters.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mock_upstream.h"

static char *fault_method_owned; /* opt.fault_method when the control listener set it */

static const char *fault_name(const mopt_t *o)
{
    static char buf[48];
    switch (o->fault) {
    case FAULT_NONE:
        return "none";
    case FAULT_RESET:
        return "reset";
    case FAULT_HANG:
        return "hang";
    case FAULT_GARBAGE:
        return "garbage";
    case FAULT_SLOW_BODY:
        return "slow-body";
    case FAULT_REFUSE:
        return "refuse";
    case FAULT_CLOSE_AFTER:
        snprintf(buf, sizeof(buf), "close-after=%" PRIu64, o->close_after);
        return buf;
    }
    return "none";
}

int parse_fault(const char *s, mopt_t *o)
{
    static const struct {
        const char *name;
        fault_t fault;
    } kinds[] = {{"none", FAULT_NONE},       {"reset", FAULT_RESET},         {"hang", FAULT_HANG},
                 {"garbage", FAULT_GARBAGE}, {"slow-body", FAULT_SLOW_BODY}, {"refuse", FAULT_REFUSE}};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(s, kinds[i].name) == 0) {
            o->fault = kinds[i].fault;
            return 0;
        }
    if (strncmp(s, "close-after=", 12) == 0) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(s + 12, &end, 10);
        if (s[12] >= '0' && s[12] <= '9' && *end == '\0' && errno == 0 && n != 0) {
            o->fault = FAULT_CLOSE_AFTER;
            o->close_after = n;
            return 0;
        }
    }
    return -1;
}

/* the settings the control listener can change, as POST /control takes them */
static json_t *settings_json(void)
{
    json_t *doc =
        json_pack("{s:s, s:f, s:I, s:I, s:I, s:f, s:i, s:i, s:f, s:I}", "fault", fault_name(&opt), "fault_rate", opt.fault_rate,
                  "latency_ms", (json_int_t)opt.latency_ms, "jitter_ms", (json_int_t)opt.jitter_ms, "lag", (json_int_t)opt.lag,
                  "error_rate", opt.error_rate, "error_code", opt.error_code, "status", opt.status != 0 ? opt.status : 200,
                  "status_rate", opt.status_rate, "block_time_ms", (json_int_t)opt.block_time_ms);
    json_object_set_new(doc, "fault_method", opt.fault_method != NULL ? json_string(opt.fault_method) : json_null());
    json_object_set_new(doc, "capacity", json_integer((json_int_t)opt.capacity));
    json_object_set_new(doc, "service_time_ms", json_integer((json_int_t)opt.service_time_ms));
    json_object_set_new(doc, "ws_refuse_status", json_integer(opt.ws_refuse_status));
    return doc;
}

/* GET /control: the settings, the head eth_blockNumber answers now, and the counters */
static json_t *control_state(void)
{
    json_t *doc = settings_json();
    json_object_set_new(doc, "head", json_integer((json_int_t)answered_head()));
    json_object_set_new(doc, "requests", json_integer((json_int_t)ctl.requests));
    json_object_set_new(doc, "by_method", json_deep_copy(ctl.by_method));
    uint64_t busy, queued;
    capacity_state(&busy, &queued);
    json_object_set_new(doc, "busy", json_integer((json_int_t)busy));
    json_object_set_new(doc, "queued", json_integer((json_int_t)queued));
    return doc;
}

static int ctl_rate(json_t *v, double *out)
{
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
        return -1;
    *out = json_number_value(v);
    return 0;
}

static int ctl_count(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Applies a POST /control body to *o (a copy of opt); NULL on success, else the error (static
 * text or in errbuf) naming the key. */
static const char *control_parse(json_t *body, mopt_t *o, const char **method, int *method_set, char *errbuf, size_t errlen)
{
    if (!json_is_object(body))
        return "body: expected a JSON object of settings";
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        const char *want = NULL;
        if (strcmp(key, "fault") == 0) {
            if (!json_is_string(v) || parse_fault(json_string_value(v), o) != 0)
                want = "one of none, reset, hang, garbage, slow-body, refuse, close-after=N";
        } else if (strcmp(key, "fault_rate") == 0) {
            if (ctl_rate(v, &o->fault_rate) != 0)
                want = "a fraction between 0 and 1";
        } else if (strcmp(key, "error_rate") == 0) {
            if (ctl_rate(v, &o->error_rate) != 0)
                want = "a fraction between 0 and 1";
        } else if (strcmp(key, "status_rate") == 0) {
            if (ctl_rate(v, &o->status_rate) != 0)
                want = "a fraction between 0 and 1";
        } else if (strcmp(key, "latency_ms") == 0) {
            if (ctl_count(v, &o->latency_ms) != 0)
                want = "a non-negative integer";
        } else if (strcmp(key, "jitter_ms") == 0) {
            if (ctl_count(v, &o->jitter_ms) != 0)
                want = "a non-negative integer";
        } else if (strcmp(key, "lag") == 0) {
            if (ctl_count(v, &o->lag) != 0)
                want = "a non-negative integer";
        } else if (strcmp(key, "capacity") == 0) {
            uint64_t k;
            if (ctl_count(v, &k) != 0 || k > UINT32_MAX)
                want = "a non-negative integer (workers; 0 = no bound)";
            else
                o->capacity = (uint32_t)k;
        } else if (strcmp(key, "service_time_ms") == 0) {
            if (ctl_count(v, &o->service_time_ms) != 0)
                want = "a non-negative integer";
        } else if (strcmp(key, "ws_refuse_status") == 0) {
            if (!json_is_integer(v) || (json_integer_value(v) != 0 && (json_integer_value(v) < 200 || json_integer_value(v) > 599)))
                want = "an HTTP status (200-599), or 0 to accept WebSocket upgrades";
            else
                o->ws_refuse_status = (int)json_integer_value(v);
        } else if (strcmp(key, "block_time_ms") == 0) {
            if (ctl_count(v, &o->block_time_ms) != 0)
                want = "a non-negative integer";
        } else if (strcmp(key, "error_code") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
                want = "an integer";
            else
                o->error_code = (int)json_integer_value(v);
        } else if (strcmp(key, "status") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 599)
                want = "an HTTP status (100-599)";
            else
                o->status = json_integer_value(v) == 200 ? 0 : (int)json_integer_value(v);
        } else if (strcmp(key, "fault_method") == 0) {
            if (!json_is_string(v) && !json_is_null(v))
                want = "a method name or null";
            else {
                *method = json_string_value(v);
                *method_set = 1;
            }
        } else {
            snprintf(errbuf, errlen,
                     "unknown key \"%s\" (known: fault, fault_rate, latency_ms, jitter_ms, lag, error_rate, "
                     "error_code, status, status_rate, block_time_ms, fault_method, capacity, service_time_ms, ws_refuse_status)",
                     key);
            return errbuf;
        }
        if (want != NULL) {
            snprintf(errbuf, errlen, "%s: expected %s", key, want);
            return errbuf;
        }
    }
    return NULL;
}

static void control_error(h2o_req_t *req, int status, const char *msg)
{
    send_doc(req, status, json_pack("{s:s}", "error", msg), 0);
}

/* POST /control: validates the whole body first, so that a bad key changes nothing */
static void control_post(h2o_req_t *req)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->entity.base, req->entity.len, 0, &jerr);
    char errbuf[512];
    if (body == NULL) {
        snprintf(errbuf, sizeof(errbuf), "body: not JSON: %s", jerr.text);
        control_error(req, 400, errbuf);
        return;
    }
    mopt_t next = opt;
    const char *method = NULL;
    int method_set = 0;
    const char *err = control_parse(body, &next, &method, &method_set, errbuf, sizeof(errbuf));
    if (err != NULL) {
        json_decref(body);
        control_error(req, 400, err);
        return;
    }
    if (next.fault != FAULT_REFUSE && opt.fault == FAULT_REFUSE && reopen_relay(&err) != 0) {
        snprintf(errbuf, sizeof(errbuf), "fault: cannot listen on %s:%u again: %s", opt.host, opt.port, err);
        json_decref(body);
        control_error(req, 500, errbuf);
        return;
    }
    if (next.fault == FAULT_REFUSE && opt.fault != FAULT_REFUSE)
        refuse_relay();
    if (method_set) {
        char *copy = method != NULL ? strdup(method) : NULL;
        free(fault_method_owned);
        fault_method_owned = copy;
        next.fault_method = copy;
    }
    uint64_t block_time = next.block_time_ms;
    next.block_time_ms = opt.block_time_ms;
    opt = next;
    if (block_time != opt.block_time_ms)
        set_block_time(block_time);
    capacity_changed(); /* a raised capacity serves waiting requests at once */
    json_decref(body);  /* after: method pointed into it */
    send_doc(req, 200, settings_json(), 0);
}

int on_control(h2o_req_t *req)
{
    int post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/control"))) {
        if (post)
            control_post(req);
        else if (get)
            send_doc(req, 200, control_state(), 0);
        else
            control_error(req, 405, "/control: GET or POST");
        return 0;
    }
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/control/reset-counters"))) {
        if (!post) {
            control_error(req, 405, "/control/reset-counters: POST");
            return 0;
        }
        ctl.requests = 0;
        json_object_clear(ctl.by_method);
        send_doc(req, 200, control_state(), 0);
        return 0;
    }
    control_error(req, 404, "the control listener answers GET /control, POST /control, POST /control/reset-counters");
    return 0;
}
