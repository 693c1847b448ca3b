/*
 * GET /v1/metrics/services?since=&service=: the per-service traffic series (cp_series.h) with the
 * versions created within the window, to mark on the time axis. The series are fed from the
 * heartbeats' traffic as the store holds it (cp_traffic_feed.c): every replica reads it every
 * CP_FEED_INTERVAL_MS and before it answers, so any replica answers the same figures.
 */
#include "cp_server_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include "cp_series.h"

/* Unix ms of an RFC 3339 UTC time as cp_format_time writes it ("2026-11-26T21:05:03.123Z"); -1 when
 * it is not one. */
static int64_t parse_time(const char *s)
{
    int y, mo, d, h, mi, sec, ms, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d, &h, &mi, &sec, &ms, &n) != 7 || s[n] != '\0')
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t * 1000 + ms;
}

/* The versions created after from_ms, oldest first: [{version, t, kind, author}]. Reads the newest
 * versions page by page and stops at the first older one. NULL on a store error. */
static json_t *version_marks(cp_store_t *store, int64_t from_ms)
{
    enum { PAGE = 100 };
    json_t *marks = json_array();
    int64_t before = 0;
    while (marks != NULL) {
        json_t *page = cp_store_list_versions(store, before, PAGE, NULL);
        if (page == NULL) {
            json_decref(marks);
            return NULL;
        }
        size_t i;
        json_t *v;
        int older = 0;
        json_array_foreach(page, i, v)
        {
            int64_t t = parse_time(json_string_value(json_object_get(v, "created_at")));
            before = json_integer_value(json_object_get(v, "version"));
            if (t >= 0 && t <= from_ms) {
                older = 1;
                break;
            }
            if (t < 0)
                continue;
            json_array_insert_new(marks, 0,
                                  json_pack("{sO sI sO sO}", "version", json_object_get(v, "version"), "t", (json_int_t)t, "kind",
                                            json_object_get(v, "kind"), "author", json_object_get(v, "author")));
        }
        size_t n = json_array_size(page);
        json_decref(page);
        if (older || n < PAGE || before <= 1)
            break;
    }
    return marks;
}

void cp_h_metrics_services(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    size_t len;
    uint64_t since = (uint64_t)CP_SERIES_KEEP_MS;
    const char *s = cp_query_get(&call->query, "since", &len);
    if (s != NULL) {
        const char *why = NULL;
        if (len == 0 || len > 32 || strlen(s) != len || cfg_parse_duration(s, &since, &why) != 0) {
            cp_respond_errorf(call, 400, "since: \"%.32s\" is not a duration (such as 30s, 15m or 1h)", s);
            return;
        }
        if (since == 0) {
            cp_respond_error(call, 400, "since: must be more than 0 (such as 30s, 15m or 1h)", NULL);
            return;
        }
        if (since > (uint64_t)CP_SERIES_KEEP_MS)
            since = (uint64_t)CP_SERIES_KEEP_MS; /* what is kept, at most */
    }
    const char *service = cp_query_get(&call->query, "service", &len);
    if (service != NULL && !cp_valid_id(service, len)) {
        cp_respond_errorf(call, 400, "service: \"%.64s\" is not a service id (1-64 characters of A-Z a-z 0-9 _ . -)", service);
        return;
    }
    /* up to date with what any replica stored (a failure leaves the series as read last) */
    cp_traffic_sync(srv);
    int64_t now = cp_now_ms();
    cp_series_expire(srv->series, now);
    json_t *services = cp_series_json(srv->series, (int64_t)since, service, now);
    if (services == NULL) {
        cp_respond_error(call, 503, "out of memory", NULL);
        return;
    }
    json_t *marks = version_marks(srv->store, now - (int64_t)since);
    if (marks == NULL) {
        json_decref(services);
        cp_respond_store_error(call);
        return;
    }
    cp_respond_json(call, 200,
                    json_pack("{sI sI sI sI so so}", "resolution_ms", (json_int_t)CP_SERIES_RESOLUTION_MS, "keep_ms",
                              (json_int_t)CP_SERIES_KEEP_MS, "since_ms", (json_int_t)since, "now_ms", (json_int_t)now, "services",
                              services, "versions", marks));
}
