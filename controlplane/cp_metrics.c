/*
 * GET /metrics: the control plane's figures in Prometheus text format (version 0.0.4), checked by
 * `promtool check metrics` in tests/integration/test_controlplane_metrics.py: every family has HELP
 * and TYPE, counters end in _total and nothing else does, units are base units.
 */
#include "cp_server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <h2o/version.h>
#include <sqlite3.h>
#include "pw_buf.h"
#include "pw_log.h"
#include "pw_process.h"
#include "pw_version.h"
#include "cp_series.h"

/* The endpoint figures of the dataplanes' latest heartbeats ({id: endpoints}, see cp_dp_endpoints),
 * one family per figure, a sample per dataplane and service. */
static void endpoint_families(pw_buf_t *b, json_t *by_dp)
{
    static const struct {
        const char *name, *help, *key;
    } fams[] = {
        {"pathway_control_endpoints_up", "Endpoints each dataplane considers up, by service (its latest heartbeat).", "up"},
        {"pathway_control_endpoints", "Endpoints each dataplane has, by service (its latest heartbeat).", "total"},
        {"pathway_control_service_panic", "1 when a dataplane has no endpoint of the service up (panic; its latest heartbeat).",
         "panic"},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        pw_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", fams[f].name, fams[f].help, fams[f].name);
        const char *id, *svc;
        json_t *eps, *e;
        json_object_foreach(by_dp, id, eps)
        {
            json_object_foreach(eps, svc, e)
            {
                json_t *v = json_object_get(e, fams[f].key);
                pw_buf_printf(b, "%s{dataplane=\"%s\",service=\"%s\"} %lld\n", fams[f].name, id, svc,
                              json_is_boolean(v) ? (long long)json_is_true(v) : (long long)json_integer_value(v));
            }
        }
    }
}

/* One family of a single unlabelled sample. */
static void family(pw_buf_t *b, const char *name, const char *type, const char *help, double value)
{
    pw_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", name, help, name, type, name, value);
}

void cp_h_metrics(cp_call_t *call)
{
    cp_server_t *srv = call->srv;
    const cp_config_t *conf = srv->conf;
    pw_buf_t b = PW_BUF_INIT;
    pw_buf_printf(&b,
                  "# HELP pathway_control_build_info Build of pathway-control: its version and the libraries it runs on; "
                  "always 1.\n# TYPE pathway_control_build_info gauge\n"
                  "pathway_control_build_info{version=\"%s\",h2o=\"%s\",sqlite=\"%s\"} 1\n",
                  PW_VERSION, H2O_VERSION, sqlite3_libversion());
    family(&b, "pathway_control_active_version", "gauge", "Number of the active config version (0 = none).",
           (double)cp_store_active_version(srv->store));
    family(&b, "pathway_control_versions", "gauge", "Config versions stored.", (double)cp_store_count_versions(srv->store));
    cp_dataplane_t *dps;
    size_t ndp;
    cp_polling_set_t polling;
    if (cp_polling_set_init(srv, &polling) != 0) {
        pw_buf_dispose(&b);
        cp_respond_error(call, 503, "out of memory", NULL);
        return;
    }
    if (cp_store_list_dataplanes(srv->store, NULL, 0, &dps, &ndp) != CP_STORE_OK) {
        free(polling.ids);
        pw_buf_dispose(&b);
        cp_respond_store_error(call);
        return;
    }
    size_t by_state[CP_DP_NUM_STATES] = {0};
    int64_t now = cp_now_ms();
    json_t *endpoints = json_object(); /* of the dataplanes still calling: a disconnected one's figures are stale */
    for (size_t i = 0; i < ndp; i++) {
        char expected[65];
        int drifted = cp_dp_drifted(srv, &dps[i], expected);
        /* under a rollout, judged against the version meant for it, as GET /v1/dataplanes does */
        cp_dp_state_t state = cp_dp_state(&dps[i], cp_engine_target(srv, dps[i].id), now, (int64_t)conf->heartbeat_ms,
                                          cp_polling_set_has(&polling, dps[i].id), drifted);
        by_state[state]++;
        json_t *e = state != CP_DP_DISCONNECTED ? cp_dp_endpoints(&dps[i]) : NULL;
        if (e != NULL)
            json_object_set_new(endpoints, dps[i].id, e);
    }
    cp_dataplanes_free(dps, ndp);
    free(polling.ids);
    pw_buf_printf(&b, "# HELP pathway_control_dataplanes Dataplanes known, by state.\n# TYPE pathway_control_dataplanes gauge\n");
    for (size_t s = 0; s < CP_DP_NUM_STATES; s++)
        pw_buf_printf(&b, "pathway_control_dataplanes{state=\"%s\"} %zu\n", cp_dp_state_name((cp_dp_state_t)s), by_state[s]);
    endpoint_families(&b, endpoints);
    json_decref(endpoints);
    family(&b, "pathway_control_long_polls", "gauge", "Dataplane long polls parked now.", (double)srv->num_waiters);
    family(&b, "pathway_control_long_polls_refused_total", "counter",
           "Dataplane long polls answered at once because max_long_polls were parked.", (double)srv->polls_refused);
    family(&b, "pathway_control_connections", "gauge", "Client connections open now.", (double)srv->num_conns);
    /* the limits, so that saturation is one division */
    family(&b, "pathway_control_max_connections", "gauge", "Client connections open at most (max_connections).",
           (double)conf->max_conns);
    family(&b, "pathway_control_reserved_connections", "gauge",
           "Connections long polls never take, kept for operators (reserved_connections).", (double)conf->reserved_conns);
    family(&b, "pathway_control_max_long_polls", "gauge",
           "Long polls parked at most (max_long_polls, lowered to fit the open-file limit).", (double)srv->max_polls);
    family(&b, "pathway_control_max_dataplanes", "gauge", "Distinct dataplane ids stored at most (max_dataplanes).",
           (double)conf->max_dataplanes);
    pw_buf_printf(&b, "# HELP pathway_control_api_requests_total API requests answered, by route and status.\n"
                      "# TYPE pathway_control_api_requests_total counter\n");
    for (size_t r = 0; r <= cp_route_count(); r++) {
        for (size_t s = 0; s < NUM_STATUS; s++) {
            uint64_t n = srv->counts[r * NUM_STATUS + s];
            /* this very request is counted once its response starts, after this text is built */
            if (n == 0)
                continue;
            if (r < cp_route_count())
                pw_buf_printf(&b, "pathway_control_api_requests_total{route=\"%s %s\",status=\"%zu\"} %llu\n", cp_route_method(r),
                              cp_route_path(r), s, (unsigned long long)n);
            else
                pw_buf_printf(&b, "pathway_control_api_requests_total{route=\"unmatched\",status=\"%zu\"} %llu\n", s,
                              (unsigned long long)n);
        }
    }
    /* safe rollouts: the newest rollout's state and step, and every verdict of the gate */
    int64_t ro_id = 0, ro_step = 0;
    cp_ro_state_t ro_state = CP_RO_PROGRESSING;
    int ro_rc = cp_ro_store_newest(srv->store, &ro_id, &ro_state, &ro_step);
    uint64_t verdicts[CP_VERDICT_NUM];
    if ((ro_rc != CP_STORE_OK && ro_rc != CP_STORE_NOT_FOUND) || cp_ro_store_verdict_counts(srv->store, verdicts) != CP_STORE_OK) {
        pw_buf_dispose(&b);
        cp_respond_store_error(call);
        return;
    }
    pw_buf_printf(&b, "# HELP pathway_rollout_state State of the newest rollout: 1 for its state, 0 for the others (all 0 before "
                      "the first).\n# TYPE pathway_rollout_state gauge\n");
    for (int s = 0; s < CP_RO_NUM_STATES; s++)
        pw_buf_printf(&b, "pathway_rollout_state{state=\"%s\"} %d\n", cp_ro_state_name((cp_ro_state_t)s),
                      ro_rc == CP_STORE_OK && (int)ro_state == s);
    family(&b, "pathway_rollout_step", "gauge", "Step index of the newest rollout (0 = the canary step).", (double)ro_step);
    family(&b, "pathway_rollout_id", "gauge", "Id of the newest rollout (0 = none).", (double)ro_id);
    pw_buf_printf(&b, "# HELP pathway_rollout_gate_verdicts_total Verdicts of rollout gates, by result.\n"
                      "# TYPE pathway_rollout_gate_verdicts_total counter\n");
    for (int v = 0; v < CP_VERDICT_NUM; v++)
        pw_buf_printf(&b, "pathway_rollout_gate_verdicts_total{result=\"%s\"} %llu\n", cp_verdict_name((cp_verdict_t)v),
                      (unsigned long long)verdicts[v]);
    /* the console's traffic series (GET /v1/metrics/services): what they hold and what they left out */
    cp_series_stats_t st;
    cp_traffic_sync(srv);
    cp_series_expire(srv->series, cp_now_ms());
    cp_series_stats(srv->series, &st);
    family(&b, "pathway_control_series_services", "gauge", "Services with a traffic series kept in memory.", (double)st.services);
    family(&b, "pathway_control_series_max_services", "gauge", "Services a traffic series is kept for at most.",
           (double)CP_SERIES_MAX_SERVICES);
    family(&b, "pathway_control_series_dataplanes", "gauge",
           "Dataplanes whose last traffic counters are kept (reported within the series' keep time).", (double)st.dataplanes);
    family(&b, "pathway_control_series_reports_total", "counter", "Heartbeats whose traffic fed the series.", (double)st.reports);
    family(&b, "pathway_control_series_refused_total", "counter",
           "Service samples of heartbeats counted in no series (max services tracked, or a name too long).", (double)st.refused);
    family(&b, "pathway_control_start_time_seconds", "gauge", "Unix time the process started.", (double)(srv->started_ms / 1000));
    pw_process_t proc;
    pw_process_read(&proc);
    pw_process_metrics(&b, &proc);
    if (b.failed) {
        pw_buf_dispose(&b);
        cp_respond_error(call, 503, "out of memory", NULL);
        return;
    }
    cp_respond_raw(call, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    pw_buf_dispose(&b);
}
