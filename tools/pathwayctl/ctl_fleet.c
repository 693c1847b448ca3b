/*
 * The fleet commands: status, dataplanes (and dataplanes forget), events, and --wait, which polls
 * the dataplanes until they ACKed a version (ctl_wait.c judges each one).
 */
#include "ctl_cmds.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every dataplane of GET /v1/dataplanes, following its pages ({"active_version", "dataplanes"}).
 * NULL with *rc when a call failed. */
static json_t *get_dataplanes(ctl_t *ctl, int *rc)
{
    json_t *all = NULL;
    char path[256] = "/v1/dataplanes?limit=1000";
    for (int page = 0; page < 1000; page++) {
        json_t *body = ctl_get_json(ctl, path, rc);
        if (body == NULL) {
            json_decref(all);
            return NULL;
        }
        if (all == NULL) {
            all = body;
            if (!json_is_array(json_object_get(all, "dataplanes")))
                json_object_set_new(all, "dataplanes", json_array());
        } else {
            json_array_extend(json_object_get(all, "dataplanes"), json_object_get(body, "dataplanes"));
        }
        const char *next = json_string_value(json_object_get(body, "next_after"));
        char *e = next != NULL && next[0] != '\0' ? ctl_escape(ctl, next) : NULL;
        int more = e != NULL;
        if (more)
            snprintf(path, sizeof(path), "/v1/dataplanes?limit=1000&after=%s", e);
        free(e);
        if (body != all)
            json_decref(body);
        if (!more)
            break;
    }
    json_object_del(all, "next_after");
    return all;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --wait: polls the dataplanes until every connected one ACKed `version` (0), one NACKed it or
 * drifted from it (1, each one's error on stderr), or `wait_ms` passed (4). Progress on stderr. */
int ctl_wait_for(ctl_t *ctl, int64_t version, uint64_t wait_ms)
{
    uint64_t start = now_ms(), deadline = start + wait_ms, last_print = 0;
    char last[512] = "";
    fflush(ctl->out); /* what was stored comes before the progress, also when stdout is a pipe */
    for (;;) {
        int rc = CTL_EXIT_OK;
        json_t *body = get_dataplanes(ctl, &rc);
        if (body == NULL)
            return rc;
        json_t *list = json_object_get(body, "dataplanes"), *dp;
        size_t i, counts[4] = {0};
        char pending[256] = "";
        size_t used = 0;
        json_array_foreach(list, i, dp)
        {
            ctl_dp_verdict_t v = ctl_dp_verdict(dp, version, NULL, 0);
            counts[v]++;
            if (v == CTL_DP_PENDING && used < 160) {
                int w = snprintf(pending + used, sizeof(pending) - used, "%s%s %s", used > 0 ? ", " : "",
                                 json_string_value(json_object_get(dp, "id")), ctl_str(dp, "state"));
                if (w > 0)
                    used += (size_t)w < sizeof(pending) - used ? (size_t)w : sizeof(pending) - used - 1;
            }
        }
        size_t connected = counts[CTL_DP_PENDING] + counts[CTL_DP_ACKED] + counts[CTL_DP_FAILED];
        char ignored[64] = "";
        if (counts[CTL_DP_IGNORED] > 0)
            snprintf(ignored, sizeof(ignored), "; %zu disconnected, not waited for", counts[CTL_DP_IGNORED]);
        if (counts[CTL_DP_FAILED] > 0) {
            fprintf(ctl->err, "pathwayctl: version %lld failed on %zu of %zu connected dataplanes%s:\n", (long long)version,
                    counts[CTL_DP_FAILED], connected, ignored);
            json_array_foreach(list, i, dp)
            {
                char why[512];
                if (ctl_dp_verdict(dp, version, why, sizeof(why)) == CTL_DP_FAILED)
                    fprintf(ctl->err, "  %s: %s\n", ctl_str(dp, "id"), why);
            }
            if (counts[CTL_DP_PENDING] > 0)
                fprintf(ctl->err, "  (still waiting: %s)\n", pending);
            json_decref(body);
            return CTL_EXIT_REJECTED;
        }
        if (counts[CTL_DP_PENDING] == 0) {
            if (connected == 0)
                fprintf(ctl->out, "version %lld: no connected dataplane to wait for%s\n", (long long)version, ignored);
            else
                fprintf(ctl->out, "version %lld: ACKed by all %zu connected dataplanes%s\n", (long long)version, connected,
                        ignored);
            json_decref(body);
            return CTL_EXIT_OK;
        }
        uint64_t t = now_ms();
        char line[512];
        snprintf(line, sizeof(line), "waiting for version %lld: %zu of %zu connected dataplanes ACKed; waiting for %s%s",
                 (long long)version, counts[CTL_DP_ACKED], connected, pending, used >= 160 ? ", ..." : "");
        if (strcmp(line, last) != 0 || t - last_print >= 5000) {
            fprintf(ctl->err, "%s (%.1fs)\n", line, (double)(t - start) / 1000.0);
            snprintf(last, sizeof(last), "%s", line);
            last_print = t;
        }
        if (t >= deadline) {
            fprintf(ctl->err,
                    "pathwayctl: timed out after %.1fs waiting for version %lld: %zu of %zu connected dataplanes ACKed%s; "
                    "not yet: %s\n",
                    (double)wait_ms / 1000.0, (long long)version, counts[CTL_DP_ACKED], connected, ignored, pending);
            json_decref(body);
            return CTL_EXIT_TIMEOUT;
        }
        json_decref(body);
        uint64_t nap = deadline - t < 200 ? deadline - t : 200;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void dataplanes_table(ctl_t *ctl, const json_t *dps)
{
    ctl_table_t t = {.ncols = 7};
    static const char *const head[] = {"ID", "STATE", "APPLIED", "LAST SEEN", "LABELS", "ENDPOINTS", "ERROR"};
    ctl_table_row(&t, head);
    size_t i;
    json_t *dp;
    json_array_foreach(dps, i, dp)
    {
        char applied[32], seen[40], labels[256] = "";
        ctl_int_or_dash(json_object_get(dp, "applied_version"), applied, sizeof(applied));
        ctl_short_time(ctl_str(dp, "last_seen"), seen, sizeof(seen));
        const char *k;
        json_t *v;
        size_t o = 0;
        json_object_foreach(json_object_get(dp, "labels"), k, v)
        {
            int w = snprintf(labels + o, sizeof(labels) - o, "%s%s=%s", o ? "," : "", k,
                             json_string_value(v) ? json_string_value(v) : "");
            if (w < 0 || (size_t)w >= sizeof(labels) - o)
                break;
            o += (size_t)w;
        }
        char drift[160];
        int drifted = strcmp(ctl_str(dp, "state"), "drifted") == 0;
        if (drifted)
            ctl_drift_text(dp, drift, sizeof(drift));
        char endpoints[256];
        ctl_endpoints_text(dp, endpoints, sizeof(endpoints));
        const char *row[] = {
            ctl_str(dp, "id"), ctl_str(dp, "state"), applied, seen, labels, endpoints, drifted ? drift : ctl_str(dp, "error")};
        ctl_table_row(&t, row);
    }
    ctl_table_print(ctl, &t);
}

int ctl_cmd_status(ctl_t *ctl, const ctl_args_t *args)
{
    int rc = CTL_EXIT_OK;
    json_t *versions = ctl_get_json(ctl, "/v1/versions?limit=1", &rc);
    if (versions == NULL)
        return rc;
    json_t *dps = get_dataplanes(ctl, &rc);
    if (dps == NULL) {
        json_decref(versions);
        return rc;
    }
    /* exit 1 when a dataplane needs the operator: it rejected the active version, drifted from what
     * it ACKed, or stopped calling */
    static const char *const bad[] = {"rejected", "drifted", "disconnected"};
    size_t nbad[3] = {0}, k;
    json_t *d;
    json_array_foreach(json_object_get(dps, "dataplanes"), k, d)
    {
        for (size_t b = 0; b < 3; b++)
            nbad[b] += strcmp(ctl_str(d, "state"), bad[b]) == 0;
    }
    int status_rc = nbad[0] + nbad[1] + nbad[2] > 0 ? CTL_EXIT_REJECTED : CTL_EXIT_OK;
    json_t *active = json_array_get(json_object_get(versions, "versions"), 0);
    if (args->given & CTL_OPT_JSON) {
        json_t *o =
            json_pack("{sO sO}", "active", active != NULL ? active : json_null(), "dataplanes", json_object_get(dps, "dataplanes"));
        ctl_print_json(ctl, o);
        json_decref(o);
    } else {
        fprintf(ctl->out, "control plane  %s\n", ctl->conn.url);
        if (active == NULL) {
            fprintf(ctl->out, "active         none (no version stored yet)\n");
        } else {
            fprintf(ctl->out, "active         ");
            ctl_version_line(ctl, active);
            fprintf(ctl->out, "hash           %s\n", ctl_str(active, "hash"));
        }
        json_t *list = json_object_get(dps, "dataplanes");
        size_t synced = 0, i;
        json_t *dp;
        json_array_foreach(list, i, dp) synced += strcmp(ctl_str(dp, "state"), "synced") == 0;
        fprintf(ctl->out, "dataplanes     %zu (%zu synced", json_array_size(list), synced);
        for (size_t b = 0; b < 3; b++)
            if (nbad[b] > 0)
                fprintf(ctl->out, ", %zu %s", nbad[b], bad[b]);
        fprintf(ctl->out, ")\n");
        if (json_array_size(list) > 0) {
            fputc('\n', ctl->out);
            dataplanes_table(ctl, list);
        }
    }
    json_decref(versions);
    json_decref(dps);
    return status_rc;
}

/* `dataplanes forget ID`: DELETE /v1/dataplanes/ID. */
static int forget_dataplane(ctl_t *ctl, const char *id)
{
    char *e = ctl_escape(ctl, id), path[512];
    snprintf(path, sizeof(path), "/v1/dataplanes/%s", e != NULL ? e : "");
    free(e);
    ctl_response_t res;
    if (ctl_request(ctl, "DELETE", path, NULL, NULL, 0, &res) != 0)
        return CTL_EXIT_UNREACHABLE;
    int rc = CTL_EXIT_OK;
    if (res.status == 404) {
        json_t *body = get_dataplanes(ctl, &rc);
        size_t n = 0;
        const char **ids = body != NULL ? ctl_names_of(json_object_get(body, "dataplanes"), "id", &n) : NULL;
        rc = ctl_print_unknown(ctl, "dataplane", id, ids, n);
        free(ids);
        json_decref(body);
    } else if (res.status / 100 != 2) {
        rc = ctl_report_failure(ctl, &res, NULL);
    } else {
        fprintf(ctl->out, "forgot dataplane %s (it is listed again when it next calls)\n", id);
    }
    ctl_response_dispose(&res);
    return rc;
}

int ctl_cmd_dataplanes(ctl_t *ctl, const ctl_args_t *args)
{
    if (args->npositional > 0) {
        if (args->npositional != 2 || strcmp(args->positional[0], "forget") != 0) {
            fprintf(ctl->err, "pathwayctl dataplanes: expects no arguments, or forget ID\n");
            return CTL_EXIT_USAGE;
        }
        if (args->given & CTL_OPT_JSON) {
            fprintf(ctl->err, "pathwayctl dataplanes: --json goes with the list\n");
            return CTL_EXIT_USAGE;
        }
        return forget_dataplane(ctl, args->positional[1]);
    }
    int rc = CTL_EXIT_OK;
    json_t *body = get_dataplanes(ctl, &rc);
    if (body == NULL)
        return rc;
    if (args->given & CTL_OPT_JSON)
        ctl_print_json(ctl, body);
    else if (json_array_size(json_object_get(body, "dataplanes")) == 0)
        fprintf(ctl->out, "no dataplane has called the control plane yet\n");
    else
        dataplanes_table(ctl, json_object_get(body, "dataplanes"));
    json_decref(body);
    return CTL_EXIT_OK;
}

int ctl_cmd_events(ctl_t *ctl, const ctl_args_t *args)
{
    int rc;
    json_t *body = ctl_get_list(ctl, args, "/v1/events", &rc);
    if (body == NULL)
        return rc;
    ctl_table_t t = {.ncols = 6};
    static const char *const head[] = {"ID", "TIME", "ACTOR", "ACTION", "VERSION", "MESSAGE"};
    ctl_table_row(&t, head);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(body, "events"), i, e)
    {
        char id[32], at[40], version[32];
        snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(e, "id")));
        ctl_short_time(ctl_str(e, "time"), at, sizeof(at));
        ctl_int_or_dash(json_object_get(e, "version"), version, sizeof(version));
        const char *row[] = {id, at, ctl_str(e, "actor"), ctl_str(e, "action"), version, ctl_str(e, "message")};
        ctl_table_row(&t, row);
    }
    if (t.rows == 1)
        fprintf(ctl->out, "no events yet\n");
    else
        ctl_table_print(ctl, &t);
    for (size_t k = 0; k < t.rows * t.ncols; k++)
        free(t.cells[k]);
    free(t.cells);
    json_decref(body);
    return CTL_EXIT_OK;
}
