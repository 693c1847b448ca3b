/*
 * dp: Pathway's dataplane (DESIGN §3). The public face of the server: create it from a document,
 * run its event loops, feed it new documents as generations.
 */
#ifndef PATHWAY_DP_H
#define PATHWAY_DP_H

#include <jansson.h>
#include "cfg.h"

typedef struct st_dp_server_t dp_server_t;

typedef struct st_dp_server_options_t {
    const char *config_path;     /* file re-read by SIGHUP and POST /reload; NULL = no reload from file */
    uint64_t drain_timeout_ms;   /* SIGTERM: longest wait for requests in flight */
    int managed;                 /* has a control plane: /ready waits for a fleet config from it (or state_dir) */
    int64_t start_fleet_version; /* control plane version of the first document's fleet part (0 = the file) */
    /* Called once on the server's thread when it runs and dp_server_apply_fleet_from_thread is taken
     * (a managed dataplane starts its control-plane client here). May be NULL. */
    void (*on_running)(dp_server_t *server, void *ctx);
    /* Figures shown under "control_plane" in GET /stats (new reference, or NULL); called on the
     * server's thread. May be NULL. */
    json_t *(*control_plane_stats)(void *ctx);
    void *ctx; /* passed to the two hooks above */
} dp_server_options_t;

/* Creates a server from a validated document: binds the listeners and the admin address (so a
 * port in use fails here, not later), builds the first generation. Takes ownership of `cfg` in
 * every case. Returns NULL with *err set (malloc'd; caller frees). No thread runs yet. */
dp_server_t *dp_server_create(cfg_t *cfg, const dp_server_options_t *opts, char **err);

/* Runs the workers and, on the calling thread, the admin listener and signal handling, until
 * SIGTERM (or dp_server_request_stop) and the drain that follows. Returns the exit code (0). */
int dp_server_run(dp_server_t *server);

/* Asks a running server to drain and stop (what SIGTERM does). Async-signal-safe. */
void dp_server_request_stop(dp_server_t *server);

/* Applies `cfg` as a new generation whose fleet part is control plane version `fleet_version` (0 =
 * the dataplane's own file): everything a generation needs is built first (endpoint tables,
 * addresses, TLS contexts); only when all of it succeeds is the generation published with one
 * pointer swap. Must be called on the thread that runs dp_server_run (or before it runs): SIGHUP,
 * POST /reload and a control-plane client all come through here.
 * Takes ownership of `cfg`. Returns 0, or -1 with *err set (malloc'd, one error per line; the
 * running generation is untouched). When `restart_changes` is not NULL it receives a new JSON
 * array of the restart-only paths that differ from the running document (they keep their old
 * values until a restart). */
int dp_server_apply(dp_server_t *server, cfg_t *cfg, int64_t fleet_version, char **err, json_t **restart_changes);

/* For other threads (a control-plane client): hands `fleet` (a fleet document, control plane
 * version `version`) to the thread running dp_server_run, which runs it with the node-local part
 * of the running document, and waits until it is applied or refused. Takes ownership of `fleet`.
 * Returns 0, -1 with *err set (malloc'd: the document cannot run here), or -2 (with *err set)
 * when the server does not run or is stopping: the document was neither applied nor found wrong. */
int dp_server_apply_fleet_from_thread(dp_server_t *server, cfg_t *fleet, int64_t version, char **err);

/* The figures of GET /stats as a new JSON object; callable from any thread. */
json_t *dp_server_stats(dp_server_t *server);

/* Re-reads the config file and applies it (SIGHUP, POST /reload). Same contract as
 * dp_server_apply; errors of the file are returned one per line. A dataplane whose fleet part came
 * from its control plane (pushed, or kept in state_dir) takes only the node-local part from the
 * file and keeps that fleet part. A file that changes nothing (same node-local part, same fleet
 * part) makes no generation: 0 with *changed = 0 (changed may be NULL). */
int dp_server_reload(dp_server_t *server, int *changed, char **err, json_t **restart_changes);

/* Frees a server that is not running (after dp_server_run returned, or one never run). */
void dp_server_destroy(dp_server_t *server);

#endif
