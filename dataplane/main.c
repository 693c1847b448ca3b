/*
 * pathway: the dataplane binary. Parses the command line, loads the document, runs the server.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cfg.h"
#include "dp.h"
#include "dp_cpclient.h"
#include "dp_traffic.h"
#include "pw_log.h"
#include "pw_version.h"

/* A managed dataplane's glue between its server and its control-plane client. */
typedef struct st_managed_t {
    dp_server_t *server;   /* set before the server runs */
    dp_cpclient_t *client; /* created before the server (its errors stop the start), started once it runs */
    cfg_t *local;          /* the dataplane's own file, whose node-local part every push keeps */
    int64_t start_version; /* control plane version the first generation came from (0 = the file) */
    dp_traffic_t *traffic; /* the heartbeats' rollout evidence (set with server) */
} managed_t;

static int managed_apply(void *ctx, cfg_t *fleet, int64_t version, char **err)
{
    managed_t *m = ctx;
    int rc = dp_server_apply_fleet_from_thread(m->server, fleet, version, err);
    if (rc == 0 && m->traffic != NULL)
        dp_traffic_observe(m->traffic); /* the new version's requests count for it from here */
    return rc;
}

/* At most this much compact JSON of endpoint figures per heartbeat: the control plane refuses a
 * report whose stats pass 16 KiB, and the other figures need room. */
#define HEARTBEAT_ENDPOINTS_MAX 4096

/* How many of each service's endpoints this dataplane considers up, out of /stats' services:
 * {"<service>": {"up": n, "total": n, "panic": bool}}. With more services than fit in
 * HEARTBEAT_ENDPOINTS_MAX, only those not all up are sent (what an operator looks for), as many as
 * fit. */
static json_t *heartbeat_endpoints(json_t *all)
{
    json_t *every = json_object(), *down = json_object(), *svc;
    size_t i, size = 2, size_down = 2; /* of every and down as compact JSON, roughly */
    json_array_foreach(json_object_get(all, "services"), i, svc)
    {
        json_t *h = json_object_get(svc, "health");
        const char *id = json_string_value(json_object_get(svc, "id"));
        if (id == NULL || h == NULL)
            continue;
        json_t *e = json_pack("{s:O?, s:I, s:O?}", "up", json_object_get(h, "endpoints_up"), "total",
                              (json_int_t)json_array_size(json_object_get(svc, "endpoints")), "panic", json_object_get(h, "panic"));
        if (e == NULL)
            continue;
        size_t n = strlen(id) + json_dumpb(e, NULL, 0, JSON_COMPACT) + 4; /* "id":{...}, */
        int all_up = json_is_false(json_object_get(e, "panic")) &&
                     json_integer_value(json_object_get(e, "up")) == json_integer_value(json_object_get(e, "total"));
        if (!all_up && size_down + n <= HEARTBEAT_ENDPOINTS_MAX) {
            json_object_set(down, id, e);
            size_down += n;
        }
        json_object_set_new(every, id, e);
        size += n;
    }
    json_t *out = size <= HEARTBEAT_ENDPOINTS_MAX ? every : down;
    json_decref(out == every ? down : every);
    return out;
}

/* What a heartbeat carries: a few live figures out of /stats. */
static json_t *managed_heartbeat_stats(void *ctx)
{
    managed_t *m = ctx;
    json_t *all = dp_server_stats(m->server);
    if (all == NULL)
        return NULL;
    json_t *req = json_object_get(all, "requests"), *lim = json_object_get(all, "limiter");
    json_t *out = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "requests", json_object_get(req, "total"), "errors_5xx",
                            json_object_get(req, "5xx"), "latency_ms", json_object_get(all, "latency_ms"), "inflight",
                            json_object_get(lim, "inflight"), "queued", json_object_get(lim, "queued"), "rss_bytes",
                            json_object_get(all, "rss_bytes"), "hash", json_object_get(all, "hash"));
    if (out != NULL)
        json_object_set_new(out, "endpoints", heartbeat_endpoints(all));
    json_decref(all);
    return out;
}

/* What a heartbeat's "traffic" carries: the rollout evidence. */
static json_t *managed_heartbeat_traffic(void *ctx)
{
    managed_t *m = ctx;
    return m->traffic != NULL ? dp_traffic_json(m->traffic) : NULL;
}

static void managed_on_running(dp_server_t *server, void *ctx)
{
    managed_t *m = ctx;
    if (dp_cpclient_start(m->client) != 0) {
        /* serving goes on from the file or state_dir; /ready stays 503 without a fleet config */
        PW_ERROR("control plane client not started: cannot start its threads");
        dp_cpclient_destroy(m->client);
        m->client = NULL;
        return;
    }
    PW_INFO("managed by %s as %s", m->local->control_plane.url, m->local->control_plane.id);
}

static json_t *managed_stats(void *ctx)
{
    managed_t *m = ctx;
    return m->client != NULL ? dp_cpclient_status(m->client) : NULL;
}

/* The document a managed dataplane starts from: its file merged with the last version it
 * accepted (state_dir), when there is one that still makes a valid document. Takes `file`. */
static cfg_t *managed_start_cfg(cfg_t *file, const char *path, int64_t *version)
{
    dp_cpstate_t st;
    char *err = NULL;
    *version = 0;
    int r = dp_cpstate_load(file->control_plane.state_dir, &st, &err);
    if (r <= 0) {
        if (r < 0)
            PW_WARN("%s; starting from %s", err, path);
        else
            PW_INFO("no accepted config in %s yet; starting from %s", file->control_plane.state_dir, path);
        free(err);
        return file;
    }
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *fleet = cfg_decode(st.fleet, CFG_SCOPE_FLEET, &errs);
    cfg_t *merged = fleet != NULL ? cfg_merge_local(file, fleet, &errs) : NULL;
    cfg_destroy(fleet);
    if (merged == NULL) {
        char *joined = cfg_errors_join(&errs);
        PW_WARN("the config kept in %s (version %lld) is not usable: %s; starting from %s", file->control_plane.state_dir,
                (long long)st.version, joined != NULL ? joined : "", path);
        free(joined);
        cfg_errors_dispose(&errs);
        dp_cpstate_dispose(&st);
        return file;
    }
    PW_INFO("starting from control plane version %lld kept in %s", (long long)st.version, file->control_plane.state_dir);
    *version = st.version;
    cfg_errors_dispose(&errs);
    dp_cpstate_dispose(&st);
    cfg_destroy(file);
    return merged;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: pathway -c FILE [--drain-timeout MS]\n"
                "       pathway --check -c FILE\n"
                "       pathway --version\n"
                "\n"
                "  -c, --config FILE       the dataplane's document (YAML or JSON)\n"
                "      --check             validate FILE, print every error, exit 0 (valid) or 1\n"
                "      --drain-timeout MS  SIGTERM: longest wait for requests in flight (default 10000)\n"
                "      --version           print the version and exit\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"check", no_argument, NULL, 'k'},
                                             {"drain-timeout", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int check = 0, opt;
    dp_server_options_t opts = {.config_path = NULL, .drain_timeout_ms = 10000};
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'd': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v == 0 || v > 3600000) {
                fprintf(stderr, "pathway: --drain-timeout: expected milliseconds between 1 and 3600000\n");
                return 2;
            }
            opts.drain_timeout_ms = v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("pathway %s\n", PW_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    pw_log_set_ident("pathway");

    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cfg_t *cfg = cfg_load_file(path, CFG_SCOPE_FULL, &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i != errs.size; ++i)
            fprintf(stderr, "%s: %s\n", path, errs.entries[i]);
        cfg_errors_dispose(&errs);
        return 1;
    }
    cfg_errors_dispose(&errs);
    if (check) {
        printf("%s: ok\n", path);
        cfg_destroy(cfg);
        return 0;
    }

    managed_t managed = {NULL, NULL, NULL, 0, NULL};
    if (cfg->has_control_plane) {
        if ((managed.local = cfg_dup(cfg)) == NULL) {
            fprintf(stderr, "pathway: out of memory\n");
            return 1;
        }
        cfg = managed_start_cfg(cfg, path, &managed.start_version);
        /* a token it cannot read or a state_dir it cannot write is an error now, not at the first poll */
        dp_cpclient_callbacks_t cb = {
            .apply = managed_apply, .stats = managed_heartbeat_stats, .traffic = managed_heartbeat_traffic, .ctx = &managed};
        char *cerr = NULL;
        if ((managed.client = dp_cpclient_create(managed.local, managed.start_version, &cb, &cerr)) == NULL) {
            fprintf(stderr, "pathway: %s: %s\n", path, cerr != NULL ? cerr : "cannot set up the control plane client");
            free(cerr);
            cfg_destroy(cfg);
            cfg_destroy(managed.local);
            return 1;
        }
        opts.managed = 1;
        opts.start_fleet_version = managed.start_version;
        opts.on_running = managed_on_running;
        opts.control_plane_stats = managed_stats;
        opts.ctx = &managed;
    }
    opts.config_path = path;
    char *err = NULL;
    dp_server_t *server = managed.server = dp_server_create(cfg, &opts, &err);
    if (server == NULL) {
        fprintf(stderr, "pathway: %s\n", err != NULL ? err : "cannot start");
        free(err);
        dp_cpclient_destroy(managed.client);
        cfg_destroy(managed.local);
        return 1;
    }
    if (managed.client != NULL && (managed.traffic = dp_traffic_create(server)) == NULL)
        PW_WARN("heartbeats carry no traffic figures: out of memory");
    int rc = dp_server_run(server);
    /* the client's threads may call into the server until they are joined here */
    dp_cpclient_destroy(managed.client);
    dp_traffic_destroy(managed.traffic);
    cfg_destroy(managed.local);
    dp_server_destroy(server);
    return rc;
}
