/*
 * dp_cpclient: a managed dataplane's link to its control plane (DESIGN §2 control_plane, §4).
 *
 * Two threads of its own, so a slow or absent control plane never touches the workers: one
 * long-polls GET /v1/dataplanes/{id}/config?version=n&wait=..., hands each newer fleet document to
 * the server through `apply`, reports the ACK or NACK, and writes each accepted document to
 * state_dir (write, fsync, rename); the other repeats the latest report as a heartbeat with live
 * figures. Failures back off exponentially with jitter, capped.
 *
 * Both carry the dataplane's labels (its hostname, then control_plane.labels, which may override
 * it): heartbeats in their "labels" key, long polls as a `labels` query parameter (a JSON object), so
 * a control plane choosing a rollout's canaries knows them at poll time. A control plane that
 * refuses the parameter or the heartbeat's "traffic" key (one older than rollouts) is answered by
 * leaving them out from then on.
 *
 * A version that was rejected is remembered: the long poll asks for versions newer than it, so
 * the same bad version is never fetched and rejected in a loop.
 */
#ifndef PATHWAY_DP_CPCLIENT_H
#define PATHWAY_DP_CPCLIENT_H

#include <stdint.h>
#include <jansson.h>
#include "cfg.h"

typedef struct st_dp_cpclient_t dp_cpclient_t;

typedef struct st_dp_cpclient_callbacks_t {
    /* Applies a pushed fleet document (control plane version `version`) as a new generation, with
     * the dataplane's node-local settings. Called on the client's thread; may block until the
     * server has applied it. Takes ownership of fleet. Returns 0, -1 with *err (malloc'd) when the
     * document cannot be applied (a NACK), or -2 when the server is stopping (no report). */
    int (*apply)(void *ctx, cfg_t *fleet, int64_t version, char **err);
    /* Live figures for heartbeats (new reference, a JSON object), or NULL. Called on the
     * heartbeat thread. */
    json_t *(*stats)(void *ctx);
    /* The rollout evidence for reports' "traffic" key (new reference, a JSON object), or NULL.
     * Called on either of the client's threads (each report carries it). May be NULL. */
    json_t *(*traffic)(void *ctx);
    void *ctx;
} dp_cpclient_callbacks_t;

/* The last document accepted from the control plane, as kept in state_dir. */
typedef struct st_dp_cpstate_t {
    int64_t version; /* control plane version number */
    json_t *fleet;   /* the fleet document (owned reference) */
} dp_cpstate_t;

/* Reads state_dir's last accepted document. Returns 1 when there is one (fills *out), 0 when
 * there is none, -1 with *err (malloc'd) when the file exists but cannot be used. */
int dp_cpstate_load(const char *state_dir, dp_cpstate_t *out, char **err);
/* Writes it atomically (temp file, fsync, rename, fsync of the directory). 0 or -1 with *err. */
int dp_cpstate_save(const char *state_dir, int64_t version, const json_t *fleet, char **err);
void dp_cpstate_dispose(dp_cpstate_t *st);

/* Creates a client for `local` (the dataplane's own document; copied) whose running
 * generation came from control-plane version `applied_version` (0 = from the file). Reads the
 * token file and makes sure state_dir can be written. Returns NULL with *err (malloc'd) when it
 * cannot: a dataplane that could never reach or remember its control plane should not start. */
dp_cpclient_t *dp_cpclient_create(const cfg_t *local, int64_t applied_version, const dp_cpclient_callbacks_t *cb, char **err);

/* Starts the two threads. 0, or -1 when a thread cannot be started. */
int dp_cpclient_start(dp_cpclient_t *client);

/* Stops the threads (a long poll in progress is abandoned within ~100 ms) and frees the client. */
void dp_cpclient_destroy(dp_cpclient_t *client);

/* What the client knows, for /stats: {"applied_version", "rejected_version", "last_error",
 * "connected", "polls", "failures"} (new reference). last_error is why the control plane is
 * unreachable while it is, else the reason of the last NACK, else null. Thread-safe. */
json_t *dp_cpclient_status(dp_cpclient_t *client);

#endif
