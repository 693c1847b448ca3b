/*
 * Internals of the REST API shared by its files: cp_server.c (lifecycle, routing, auth),
 * cp_http.c (request and response helpers), cp_handlers.c (config, versions, tags, events,
 * health, metrics) and cp_dataplanes.c (dataplane calls and their long polls). Not for use
 * outside controlplane/.
 */
#ifndef PATHWAY_CP_SERVER_INTERNAL_H
#define PATHWAY_CP_SERVER_INTERNAL_H

#include <stdint.h>
#include <time.h>
#include <h2o.h>
#include "cp_body.h"
#include "cp_rollout.h"
#include "cp_server.h"

typedef struct st_cp_call_t cp_call_t;
typedef void (*cp_handler_fn)(cp_call_t *call);

struct st_cp_call_t {
    cp_server_t *srv;        /* the server */
    h2o_req_t *req;          /* the request (its pool holds this struct) */
    size_t route;            /* index in routes, NUM_ROUTES when none matched */
    const cp_token_t *token; /* who called (NULL on public routes) */
    h2o_iovec_t params[2];   /* captured path segments, NUL-terminated in req->pool */
    cp_query_t query;        /* decoded query (freed by call_dispose) */
    int answered;            /* a response was started */
};

/* A parked long poll; lives in the request's pool, unlinked when answered or disposed. */
typedef struct st_cp_waiter_t {
    h2o_linklist_t link;   /* in srv->waiters, ordered by deadline */
    h2o_linklist_t by_id;  /* in srv->poll_index[cp_poll_bucket(its id)] */
    cp_server_t *srv;      /* owner of the list */
    cp_call_t *call;       /* the request to answer */
    int64_t known_version; /* version=n: what the dataplane has */
    int64_t parked;        /* monotonic ms when it parked: proof of life for heartbeat_timeout only */
    int64_t deadline;      /* monotonic ms */
} cp_waiter_t;

#define NUM_STATUS 600
#define CP_POLL_BUCKETS 1024 /* a power of two */

/* The hash of one version, as stored and in this build's canonical form (they differ for a version
 * stored before the schema gained a default): drift checks compare reports with both. */
typedef struct st_cp_hash_memo_t {
    int64_t version;  /* 0 = empty slot */
    char stored[65];  /* as stored with the version */
    char current[65]; /* of its document canonicalised today (== stored when it no longer decodes) */
} cp_hash_memo_t;

#define CP_HASH_MEMO_SLOTS 32 /* direct-mapped by version: a fleet runs few versions at once */

struct st_cp_server_t {
    const cp_config_t *conf;                      /* borrowed */
    cp_store_t *store;                            /* borrowed */
    h2o_globalconf_t globalconf;                  /* h2o config: one host, one path, one handler */
    h2o_context_t ctx;                            /* the loop's context */
    h2o_accept_ctx_t accept_ctx;                  /* for h2o_accept */
    h2o_evloop_t *loop;                           /* the event loop */
    h2o_socket_t *listener;                       /* NULL after stop */
    int listener_reading;                         /* accepting now (not at the connection cap, not paused) */
    int64_t accept_paused_until;                  /* monotonic ms: accept failed (EMFILE...), retry then */
    int stopping;                                 /* draining: new long polls get 503 */
    size_t num_conns;                             /* client connections open (counted through their on_close) */
    int disposed;                                 /* the h2o context, config and loop were freed */
    h2o_linklist_t waiters;                       /* cp_waiter_t, earliest deadline first */
    size_t num_waiters;                           /* length of waiters */
    h2o_linklist_t poll_index[CP_POLL_BUCKETS];   /* the same waiters hashed by dataplane id (is_polling) */
    h2o_linklist_t reports;                       /* status reports waiting for their group commit (cp_flush_reports) */
    size_t num_reports;                           /* length of reports */
    uint64_t turns;                               /* turns of the loop (cp_server_run) */
    int wake_more;                                /* cp_wake_waiters answered a batch and left more due polls */
    h2o_linklist_t polls;                         /* config calls waiting for their group's store work (cp_flush_polls) */
    size_t num_polls;                             /* length of polls */
    uint64_t *counts;                             /* [route (NUM_ROUTES = unmatched)][status]: API requests answered */
    int64_t started_ms;                           /* for /metrics */
    uint64_t max_polls;                           /* parked polls at most: max_long_polls, lowered to fit the open-file limit */
    uint64_t polls_refused;                       /* polls answered at once because max_polls were parked */
    int64_t polls_refused_warned;                 /* monotonic ms of the last warning about it (one a minute) */
    cp_hash_memo_t hash_memo[CP_HASH_MEMO_SLOTS]; /* version hashes for drift checks */
    struct st_cp_engine_t *engine;                /* safe rollouts (cp_rollout_engine.c) */
    h2o_socket_t *store_sock;                     /* watches the store's LISTEN socket (PostgreSQL), NULL: none */
    int store_fd;                                 /* the store's fd it watches (a dup of it is the socket's) */
    int store_changed;                            /* another replica stored a version: wake the polls */
    int lease_held;                               /* this replica drives rollouts (cp_store_lease) */
    int64_t engine_reload_at;                     /* not holding it: re-read the live rollout then (wall ms) */
    struct st_cp_series_t *series;                /* per-service traffic from heartbeats (cp_series.h) */
    struct st_cp_feed_t *feed;                    /* the dataplanes' traffic read from the store (cp_traffic_feed.c) */
};

/* The handlers, one per row of the route table (cp_server.c); each answers now or later. */
void cp_h_healthz(cp_call_t *call);
void cp_h_metrics(cp_call_t *call);
void cp_h_whoami(cp_call_t *call);
void cp_h_metrics_services(cp_call_t *call);
void cp_h_get_config(cp_call_t *call);
void cp_h_put_config(cp_call_t *call);
void cp_h_patch_config(cp_call_t *call);
void cp_h_validate(cp_call_t *call);
void cp_h_list_versions(cp_call_t *call);
void cp_h_get_version(cp_call_t *call);
void cp_h_diff(cp_call_t *call);
void cp_h_rollback(cp_call_t *call);
void cp_h_list_tags(cp_call_t *call);
void cp_h_get_tag(cp_call_t *call);
void cp_h_put_tag(cp_call_t *call);
void cp_h_list_dataplanes(cp_call_t *call);
void cp_h_get_dataplane(cp_call_t *call);
void cp_h_delete_dataplane(cp_call_t *call);
void cp_h_delete_tag(cp_call_t *call);
void cp_h_dp_config(cp_call_t *call);
void cp_h_dp_status(cp_call_t *call);
void cp_h_events(cp_call_t *call);
void cp_h_list_rollouts(cp_call_t *call);
void cp_h_get_rollout(cp_call_t *call);
void cp_h_pause_rollout(cp_call_t *call);
void cp_h_resume_rollout(cp_call_t *call);
void cp_h_promote_rollout(cp_call_t *call);
void cp_h_abort_rollout(cp_call_t *call);
void cp_h_ui_redirect(cp_call_t *call);
void cp_h_ui_index(cp_call_t *call);
void cp_h_ui_asset(cp_call_t *call);

/* monotonic clock, ms: for deadlines and pauses, immune to wall-clock steps */
static inline int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- request and response helpers (cp_http.c) --------------------------------------------- */

void cp_add_header(cp_call_t *call, const h2o_token_t *token, const char *value);

void cp_add_version_headers(cp_call_t *call, int64_t version, const char *hash);

/* Sends a complete response; the body is copied into the request's pool. */
void cp_respond_raw(cp_call_t *call, int status, const char *ctype, const char *body, size_t len);

/* Sends `body` (stolen) as JSON. */
void cp_respond_json(cp_call_t *call, int status, json_t *body);

/* {"error": message, "errors": [...]}; `errors` (stolen) may be NULL. */
void cp_respond_error(cp_call_t *call, int status, const char *message, json_t *errors);

void cp_respond_errorf(cp_call_t *call, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void cp_respond_store_error(cp_call_t *call);

h2o_iovec_t *cp_find_header(cp_call_t *call, const h2o_token_t *token);

/* Checks the body bound; answers 413 and returns -1 beyond it. */
int cp_check_body_size(cp_call_t *call);

/* The body's content type; answers 415 (and returns OTHER) when it is not one of `accepted`. */
cp_ctype_t cp_body_ctype(cp_call_t *call, int accept_yaml, int accept_merge);

/* The version message from the Pathway-Message header or ?message=. Returns 0 and *msg (in the
 * pool, NULL when none), or -1 after answering 400. */
int cp_request_message(cp_call_t *call, const char **msg);

/* The If-Match precondition against the active version: -1 when absent, else the active number to
 * pass to the store (which re-checks it inside its transaction). Answers 412 and returns -2 when
 * it does not hold. */
int64_t cp_if_match(cp_call_t *call);

/* A JSON document parsed from stored canonical text. */
json_t *cp_document_json(const char *text);

json_t *cp_version_json(const cp_version_t *v, int with_document);

/* Answers 200 with one version and its document, with its ETag, and the members of `more` (stolen,
 * may be NULL) beside them; disposes *v. */
void cp_respond_version(cp_call_t *call, cp_version_t *v, json_t *more);

/* Validates a tree as a fleet document; answers 400 listing every error on failure. */
int cp_prepare_or_400(cp_call_t *call, json_t *tree, char **canonical, char hash[65]);

/* The body as a tree, parsed in the format its content type names; NULL after answering 400. */
json_t *cp_body_tree(cp_call_t *call, cp_ctype_t ct);

/* The body as a fleet document (PUT, validate): parsed in the format its content type names,
 * validated, canonicalised. Answers 400 and returns -1 on any error; else *canonical (caller
 * frees) and its hash. */
int cp_body_document(cp_call_t *call, cp_ctype_t ct, char **canonical, char hash[65]);

/* --- long polls (cp_dataplanes.c) ------------------------------------------------------------ */

/* The ids with a poll that proves them alive, sorted, for listing many dataplanes in
 * O((dataplanes + waiters) log waiters) rather than a scan of the waiters per dataplane. */
typedef struct st_cp_polling_set_t {
    const char **ids; /* borrowed from the waiters' requests; valid while the caller runs */
    size_t size;      /* entries of ids */
} cp_polling_set_t;

/* Returns 0, or -1 when out of memory. Free set->ids. */
int cp_polling_set_init(cp_server_t *srv, cp_polling_set_t *set);

int cp_polling_set_has(const cp_polling_set_t *set, const char *id);

void cp_unpark(cp_server_t *srv, cp_waiter_t *w);

/* Whether dataplane `dp` drifted: it reported serving a document whose hash is neither the one of
 * the version it ACKed (as stored, or canonicalised by this build) nor the one of a version it is
 * being handed (an apply in progress). `expected` gets the ACKed version's hash in this build's
 * canonical form ("" when it ACKed none). A store failure counts as no drift. */
int cp_dp_drifted(cp_server_t *srv, const cp_dataplane_t *dp, char expected[65]);

/* How the dataplanes known now stand to one version (GET /v1/versions, the console's timeline).
 * Dataplanes not seen within heartbeat_timeout (disconnected) are in no count; a dataplane is in at
 * most one count of a version. */
typedef struct st_cp_fleet_count_t {
    uint64_t synced;   /* runs it: its latest ACK is of it (applied_version), and it has not drifted */
    uint64_t rejected; /* NACKed it (rejected_version), and is not being handed it again for a retry */
    uint64_t applying; /* was handed it as the version meant for it and has not reported on it yet */
} cp_fleet_count_t;

/* Counts for versions[0..n-1] (any order; out[i] is versions[i]'s) in one pass over the dataplanes
 * the store knows, however many versions are asked. Returns 0, or -1 on a store error or out of
 * memory. */
int cp_fleet_counts(cp_server_t *srv, const int64_t *versions, size_t n, cp_fleet_count_t *out);

/* What dp's latest heartbeat says of its services' endpoints: {"<service>": {"up": n, "total": n,
 * "panic": bool}} (entries of another shape left out: heartbeat stats are the dataplane's free-form
 * text). NULL when the heartbeat had none. Returns a new reference. */
json_t *cp_dp_endpoints(const cp_dataplane_t *dp);

/* Whether the caller is a viewer, who sees documents and free texts with secrets redacted. */
int cp_call_redacts(cp_call_t *call);

/* A copy of `text` with every http(s) URL in it redacted (cfg_redact_url), in the request's pool. */
const char *cp_redact_text(cp_call_t *call, const char *text);

/* For a viewer: every string inside `v` (stolen) with its URLs redacted, as a tree of its own (a
 * stored object is never changed in place); for anyone else `v` as it is. Returns a reference. */
json_t *cp_redact_strings(cp_call_t *call, json_t *v);

/* Redacts the string member `key` of every object of array `arr` (or of `arr` itself when it is an
 * object) in place, when the caller is a viewer. */
void cp_redact_members(cp_call_t *call, json_t *arr, const char *key);

void cp_wake_waiters(cp_server_t *srv);

/* Answers long polls whose wait has ended; returns ms until the next deadline (-1 = none). */
int64_t cp_expire_waiters(cp_server_t *srv);

/* Stores the status reports queued since the last call (at most CP_REPORT_BATCH of them, oldest
 * first; CP_REPORT_BATCH_SQLITE on sqlite) in one store call, so that the ACKs of a push share one durable commit, and then answers
 * each. Returns 1 when more are queued (the loop should not sleep), else 0. */
#define CP_REPORT_BATCH 64 /* the most; sqlite stores at most CP_REPORT_BATCH_SQLITE */
#define CP_REPORT_BATCH_SQLITE 32

/* Handles the config calls queued since the last call (at most CP_POLL_BATCH of them, oldest first):
 * their dataplanes' states read at once, new ones admitted, their last seen and labels stored in one
 * live transaction, then each answered (a version, 304, 403) or parked. Returns 1 when more are
 * queued (the loop comes back at once, after the events that arrived meanwhile). */
int cp_flush_polls(cp_server_t *srv);
#define CP_POLL_BATCH 128
#define CP_WAKE_BATCH 128    /* polls a version is handed to in one turn of the loop */
#define CP_ACCEPT_BURST 64   /* connections accepted per turn of the loop at most */
#define CP_TURN_BUDGET_MS 10 /* a turn's group work: past it, the next group waits for the next turn */
int cp_flush_reports(cp_server_t *srv);

/* --- safe rollouts (cp_rollout_engine.c) ------------------------------------------------------ */

/* Loads the live rollout (progressing or paused) from the store. Returns 0 or -1 (logged). */
int cp_engine_init(cp_server_t *srv);
void cp_engine_dispose(cp_server_t *srv);

/* The version dataplane `id` is to run: the rollout's version when it is in the current step's
 * set, its from_version when not, the active version when no rollout is live. */
int64_t cp_engine_target(cp_server_t *srv, const char *id);

/* Runs the gate's windows and the steps' holds that are due; returns ms until the next (-1 = none). */
int64_t cp_engine_tick(cp_server_t *srv);

/* --- the dataplanes' traffic, read from the store (cp_traffic_feed.c) -------------------------- */

#define CP_FEED_INTERVAL_MS 2000 /* every replica reads the reports stored since its last read this often */
#define CP_FEED_LOOKBACK_MS 1000 /* and reads again what was stored this long before the newest it read */

/* A dataplane's latest traffic report, as read from the store. */
typedef struct st_cp_obs_t {
    char *id;        /* the dataplane (owned) */
    int64_t version; /* the version the counters are about */
    cp_traffic_t t;  /* cumulative since it runs it, summed over its services */
    int64_t at_ms;   /* when the report was stored */
    int64_t seq;     /* the row's report count then (a report read twice counts once) */
} cp_obs_t;

int cp_feed_init(cp_server_t *srv);
void cp_feed_dispose(cp_server_t *srv);
/* Reads the reports stored since the last read into the latest counters and the series: 0, or -1
 * (the store failed; logged once until a read works). */
int cp_traffic_sync(cp_server_t *srv);
/* The timer: reads when CP_FEED_INTERVAL_MS have passed; returns ms until the next read. */
int64_t cp_feed_turn(cp_server_t *srv);
/* Every dataplane's latest counters, sorted by id (borrowed, valid until the next read). */
const cp_obs_t *cp_feed_obs(cp_server_t *srv, size_t *count);
/* The newest report time read (the store's clock, as cp_obs_t.at_ms), 0 before the first. Entries
 * older than it by CP_SERIES_KEEP_MS are dropped at each read. */
int64_t cp_feed_newest(cp_server_t *srv);
/* Drops what is kept of dataplane `id` (forgotten), here and in the series. */
void cp_feed_forget(cp_server_t *srv, const char *id);

/* A NACK of `version` by dataplane `id`: a canary's aborts the live rollout at once. */
void cp_engine_nack(cp_server_t *srv, const char *id, int64_t version, const char *error);

/* The rollout a write asks for (PUT, PATCH, rollback). */
typedef struct st_cp_ro_write_t {
    cp_server_t *srv;
    int has;                /* a rollout is asked (given, or the configured default) */
    int force;              /* "force": true: supersede a live rollout */
    int from_default;       /* the rollout is the configured default, not the write's own */
    cp_rollout_spec_t spec; /* when has */
    const char *author;     /* the token's name */
    cp_rollout_t *created;  /* set by the store hook: the new rollout (owned until committed) */
    int superseded;         /* the hook ended the live rollout */
} cp_ro_write_t;

/* Takes "rollout" and "force" out of a write's top level (tree: the document, or the patch, or the
 * rollback body) and validates them; the configured default stands in when "rollout" is absent.
 * Returns 0, or -1 after answering 400. */
int cp_ro_take(cp_call_t *call, json_t *tree, cp_ro_write_t *w);

/* Whether the write may go ahead: 409 when a rollout is live and the write has no force, or when the
 * rollout cannot start (no active version, no dataplane to canary on). -1 after answering. Sets
 * a->hook so that the rollout's rows commit with the version. */
int cp_ro_admit(cp_call_t *call, cp_ro_write_t *w, cp_append_t *a);

/* After the store answered `rc`: installs the rollout, adds "rollout": {id, state} to the answer's
 * body (may be NULL), and disposes w. */
void cp_ro_finish(cp_server_t *srv, cp_ro_write_t *w, int rc, json_t *body);

/* The live rollout (NULL when none); borrowed. */
const cp_rollout_t *cp_engine_live(cp_server_t *srv);

/* Operator control (cp_rollout_api.c calls these): each answers. */
void cp_engine_control(cp_call_t *call, int64_t id, const char *action);

#endif
