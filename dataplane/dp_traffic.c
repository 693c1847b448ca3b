#include "dp_traffic.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "dp_internal.h"

/* One service's counters, summed over the workers. */
typedef struct st_svc_counts_t {
    char *id;
    uint64_t requests;              /* answers of every status */
    uint64_t errors;                /* 5xx answers + answers classed as a server's failure */
    uint64_t hist[DP_HIST_BUCKETS]; /* durations, non-cumulative */
} svc_counts_t;

typedef struct st_counts_t {
    int64_t version; /* fleet version of the generation they were read from */
    svc_counts_t *entries;
    size_t size;
} counts_t;

struct st_dp_traffic_t {
    dp_server_t *server;
    pthread_mutex_t mutex; /* guards what follows */
    int64_t version;       /* the fleet version counted for */
    counts_t base;         /* the counters when it came into force (zero for the first one) */
};

static void counts_dispose(counts_t *c)
{
    for (size_t i = 0; i != c->size; ++i)
        free(c->entries[i].id);
    free(c->entries);
    memset(c, 0, sizeof(*c));
}

/* The current generation's services and their counters. 0, or -1 when out of memory. */
static int counts_read(dp_server_t *s, counts_t *out)
{
    memset(out, 0, sizeof(*out));
    /* an apply must not free the generation while its services are read */
    pthread_mutex_lock(&s->gen_mutex);
    dp_gen_t *g = atomic_load(&s->current);
    out->version = g->fleet_version;
    out->entries = calloc(g->nservices != 0 ? g->nservices : 1, sizeof(out->entries[0]));
    int rc = out->entries != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i != g->nservices; ++i) {
        const dp_service_t *svc = g->services + i;
        svc_counts_t *e = out->entries + out->size++;
        if ((e->id = strdup(svc->id)) == NULL) {
            rc = -1;
            break;
        }
        for (size_t w = 0; w != svc->shared->nworkers; ++w) {
            const dp_svcstats_t *st = &svc->shared->stats[w];
            /* a relay counts its status before its class: the class first here, so that errors never
             * outrun the requests they are among (the control plane refuses that) */
            uint64_t rpc = DP_LOAD(st->rpc_errors);
            for (int c = 1; c <= 5; ++c)
                e->requests += DP_LOAD(st->by_class[c]);
            e->errors += DP_LOAD(st->by_class[5]) + rpc;
            for (size_t b = 0; b != DP_HIST_BUCKETS; ++b)
                e->hist[b] += DP_LOAD(st->hist[b]);
        }
        if (e->errors > e->requests) /* only if the loads above were seen out of order */
            e->errors = e->requests;
    }
    pthread_mutex_unlock(&s->gen_mutex);
    if (rc != 0)
        counts_dispose(out);
    return rc;
}

static const svc_counts_t *counts_find(const counts_t *c, const char *id)
{
    for (size_t i = 0; i != c->size; ++i)
        if (strcmp(c->entries[i].id, id) == 0)
            return c->entries + i;
    return NULL;
}

/* Takes `now` (read just before) as the base when the version changed; else leaves it to the
 * caller. Returns 1 when it took it. Under t->mutex. */
static int rebase_locked(dp_traffic_t *t, counts_t *now)
{
    if (now->version == t->version)
        return 0;
    counts_dispose(&t->base);
    t->base = *now;
    t->version = now->version;
    memset(now, 0, sizeof(*now));
    return 1;
}

dp_traffic_t *dp_traffic_create(dp_server_t *server)
{
    dp_traffic_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->server = server;
    pthread_mutex_init(&t->mutex, NULL);
    pthread_mutex_lock(&server->gen_mutex);
    t->version = atomic_load(&server->current)->fleet_version;
    pthread_mutex_unlock(&server->gen_mutex);
    return t;
}

void dp_traffic_destroy(dp_traffic_t *t)
{
    if (t == NULL)
        return;
    counts_dispose(&t->base);
    pthread_mutex_destroy(&t->mutex);
    free(t);
}

void dp_traffic_observe(dp_traffic_t *t)
{
    counts_t now;
    if (counts_read(t->server, &now) != 0)
        return;
    pthread_mutex_lock(&t->mutex);
    rebase_locked(t, &now);
    pthread_mutex_unlock(&t->mutex);
    counts_dispose(&now);
}

json_t *dp_traffic_json(dp_traffic_t *t)
{
    counts_t now;
    if (counts_read(t->server, &now) != 0)
        return NULL;
    json_t *services = json_object(), *out = NULL;
    pthread_mutex_lock(&t->mutex);
    /* a version that came into force since the last look has counted nothing yet: its base is now */
    const counts_t *cur = rebase_locked(t, &now) ? &t->base : &now;
    for (size_t i = 0; i != cur->size; ++i) {
        const svc_counts_t *e = cur->entries + i, *b = counts_find(&t->base, e->id);
        /* a service removed and added again since has counters that began again at 0 */
        if (b != NULL && (e->requests < b->requests || e->errors < b->errors))
            b = NULL;
        json_t *buckets = json_array();
        for (size_t k = 0; k != DP_HIST_BUCKETS; ++k) {
            uint64_t n = e->hist[k] - (b != NULL && b->hist[k] <= e->hist[k] ? b->hist[k] : 0);
            json_array_append_new(buckets, json_integer((json_int_t)n));
        }
        uint64_t requests = e->requests - (b != NULL ? b->requests : 0), errors = e->errors - (b != NULL ? b->errors : 0);
        json_object_set_new(services, e->id,
                            json_pack("{s:I, s:I, s:o}", "requests", (json_int_t)requests, "errors",
                                      (json_int_t)(errors <= requests ? errors : requests), "latency_ms_buckets", buckets));
    }
    out = json_pack("{s:I, s:o}", "version", (json_int_t)t->version, "services", services);
    pthread_mutex_unlock(&t->mutex);
    counts_dispose(&now);
    return out;
}
