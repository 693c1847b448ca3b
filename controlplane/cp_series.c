/* Per-service traffic series fed by heartbeats: see cp_series.h. */
#include "cp_series.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One bucket of one service: what the fleet's reports that arrived in it added up to. */
typedef struct st_cp_series_bucket_t {
    int64_t index; /* bucket number (start / resolution); -1 = never written */
    cp_traffic_t t;
} cp_series_bucket_t;

typedef struct st_cp_series_service_t {
    char name[CP_SERIES_MAX_NAME + 1];          /* the service id */
    int64_t last_ms;                            /* the latest report that named it */
    cp_series_bucket_t ring[CP_SERIES_BUCKETS]; /* bucket b lives in ring[b % CP_SERIES_BUCKETS] */
} cp_series_service_t;

/* A dataplane's last counters of one service. */
typedef struct st_cp_series_last_t {
    char name[CP_SERIES_MAX_NAME + 1]; /* the service id */
    cp_traffic_t t;                    /* as last reported */
} cp_series_last_t;

typedef struct st_cp_series_dp_t {
    struct st_cp_series_dp_t *next; /* in its hash chain */
    char *id;                       /* owned */
    int64_t version;                /* the traffic version of its last report */
    int64_t last_ms;                /* its last report */
    cp_series_last_t *last;         /* per tracked service it reported, unsorted */
    size_t num_last, cap_last;      /* entries used and allocated */
} cp_series_dp_t;

struct st_cp_series_t {
    size_t max_services;            /* bound on num_services */
    cp_series_service_t **services; /* sorted by name, num_services of them */
    size_t num_services;
    cp_series_dp_t **table; /* dataplanes by FNV-1a of their id, table_size chains */
    size_t table_size;      /* a power of two */
    size_t num_dps;
    int64_t next_expire_ms; /* when observe runs cp_series_expire next */
    uint64_t reports;       /* heartbeats with traffic fed */
    uint64_t refused;       /* service samples left out */
};

cp_series_t *cp_series_create(size_t max_services)
{
    cp_series_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->max_services = max_services > 0 ? max_services : 1;
    s->table_size = 64;
    s->services = calloc(s->max_services, sizeof(s->services[0]));
    s->table = calloc(s->table_size, sizeof(s->table[0]));
    if (s->services == NULL || s->table == NULL) {
        cp_series_destroy(s);
        return NULL;
    }
    return s;
}

static void dp_free(cp_series_dp_t *d)
{
    free(d->id);
    free(d->last);
    free(d);
}

void cp_series_destroy(cp_series_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->services != NULL && i < s->num_services; i++)
        free(s->services[i]);
    free(s->services);
    for (size_t i = 0; s->table != NULL && i < s->table_size; i++) {
        cp_series_dp_t *d = s->table[i];
        while (d != NULL) {
            cp_series_dp_t *next = d->next;
            dp_free(d);
            d = next;
        }
    }
    free(s->table);
    free(s);
}

/* --- services ---------------------------------------------------------------------------------- */

/* Index of the first service whose name is >= name (binary search in the sorted array). */
static size_t service_pos(const cp_series_t *s, const char *name, int *found)
{
    size_t lo = 0, hi = s->num_services;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->services[mid]->name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static const cp_series_service_t *find_service(const cp_series_t *s, const char *name)
{
    int found;
    size_t i = service_pos(s, name, &found);
    return found ? s->services[i] : NULL;
}

/* The series of `name`, created when there is room. NULL when max_services are tracked or out of
 * memory (*oom set). */
static cp_series_service_t *get_service(cp_series_t *s, const char *name, int *oom)
{
    int found;
    size_t i = service_pos(s, name, &found);
    if (found)
        return s->services[i];
    if (s->num_services == s->max_services)
        return NULL;
    cp_series_service_t *svc = malloc(sizeof(*svc));
    if (svc == NULL) {
        *oom = 1;
        return NULL;
    }
    memset(svc, 0, sizeof(*svc));
    strcpy(svc->name, name); /* the caller checked its length */
    for (size_t b = 0; b < CP_SERIES_BUCKETS; b++)
        svc->ring[b].index = -1;
    memmove(&s->services[i + 1], &s->services[i], (s->num_services - i) * sizeof(s->services[0]));
    s->services[i] = svc;
    s->num_services++;
    return svc;
}

static int64_t bucket_of(int64_t ms)
{
    return ms >= 0 ? ms / CP_SERIES_RESOLUTION_MS : 0;
}

/* Adds `delta` to the bucket of now_ms. A slot holding a later bucket (the wall clock went back by
 * more than the keep time) is left alone. */
static void add_to_bucket(cp_series_service_t *svc, const cp_traffic_t *delta, int64_t now_ms)
{
    int64_t b = bucket_of(now_ms);
    cp_series_bucket_t *slot = &svc->ring[b % CP_SERIES_BUCKETS];
    if (slot->index > b)
        return;
    if (slot->index != b) {
        slot->index = b;
        memset(&slot->t, 0, sizeof(slot->t));
    }
    cp_traffic_add(&slot->t, delta);
}

/* --- dataplanes -------------------------------------------------------------------------------- */

static size_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)h;
}

static cp_series_dp_t **dp_slot(const cp_series_t *s, const char *id)
{
    cp_series_dp_t **pp = &s->table[hash_id(id) & (s->table_size - 1)];
    while (*pp != NULL && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Doubles the table when the chains grow longer than one on average; keeps it when out of memory. */
static void maybe_grow(cp_series_t *s)
{
    if (s->num_dps < s->table_size)
        return;
    size_t size = s->table_size * 2;
    cp_series_dp_t **table = calloc(size, sizeof(table[0]));
    if (table == NULL)
        return;
    for (size_t i = 0; i < s->table_size; i++) {
        cp_series_dp_t *d = s->table[i];
        while (d != NULL) {
            cp_series_dp_t *next = d->next;
            size_t h = hash_id(d->id) & (size - 1);
            d->next = table[h];
            table[h] = d;
            d = next;
        }
    }
    free(s->table);
    s->table = table;
    s->table_size = size;
}

static cp_series_last_t *find_last(cp_series_dp_t *d, const char *name)
{
    for (size_t i = 0; i < d->num_last; i++)
        if (strcmp(d->last[i].name, name) == 0)
            return &d->last[i];
    return NULL;
}

static cp_series_last_t *add_last(cp_series_dp_t *d, const char *name)
{
    if (d->num_last == d->cap_last) {
        size_t cap = d->cap_last ? d->cap_last * 2 : 4;
        cp_series_last_t *n = realloc(d->last, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        d->last = n;
        d->cap_last = cap;
    }
    cp_series_last_t *l = &d->last[d->num_last++];
    strcpy(l->name, name);
    return l;
}

void cp_series_forget(cp_series_t *s, const char *dp)
{
    cp_series_dp_t **pp = dp_slot(s, dp), *d = *pp;
    if (d == NULL)
        return;
    *pp = d->next;
    dp_free(d);
    s->num_dps--;
}

void cp_series_expire(cp_series_t *s, int64_t now_ms)
{
    int64_t cut = now_ms - CP_SERIES_KEEP_MS;
    for (size_t i = 0; i < s->table_size; i++) {
        cp_series_dp_t **pp = &s->table[i];
        while (*pp != NULL) {
            cp_series_dp_t *d = *pp;
            if (d->last_ms < cut) {
                *pp = d->next;
                dp_free(d);
                s->num_dps--;
            } else {
                pp = &d->next;
            }
        }
    }
    /* a service no report named for the keep time has no bucket left in any window: its slot may go
     * to another, and the dataplanes' last counters of it go with it */
    size_t k = 0, dropped = 0;
    for (size_t i = 0; i < s->num_services; i++) {
        if (s->services[i]->last_ms < cut) {
            free(s->services[i]);
            dropped++;
        } else {
            s->services[k++] = s->services[i];
        }
    }
    s->num_services = k;
    for (size_t i = 0; dropped > 0 && i < s->table_size; i++) {
        for (cp_series_dp_t *d = s->table[i]; d != NULL; d = d->next) {
            size_t kept = 0;
            for (size_t j = 0; j < d->num_last; j++)
                if (find_service(s, d->last[j].name) != NULL)
                    d->last[kept++] = d->last[j];
            d->num_last = kept;
        }
    }
}

int cp_series_observe(cp_series_t *s, const char *dp, int64_t version, const cp_service_traffic_t *svcs, size_t n, int64_t now_ms)
{
    if (now_ms >= s->next_expire_ms) {
        cp_series_expire(s, now_ms);
        s->next_expire_ms = now_ms + CP_SERIES_RESOLUTION_MS;
    }
    s->reports++;
    cp_series_dp_t **pp = dp_slot(s, dp), *d = *pp;
    int first = d == NULL, oom = 0, refused = 0;
    if (first) {
        if ((d = calloc(1, sizeof(*d))) == NULL || (d->id = strdup(dp)) == NULL) {
            free(d);
            return -1;
        }
        d->version = version;
        *pp = d;
        s->num_dps++;
        maybe_grow(s);
    } else if (d->version != version) {
        /* another version: every counter restarted at 0 with it, the whole values are new */
        d->num_last = 0;
        d->version = version;
    }
    d->last_ms = now_ms;
    for (size_t i = 0; i < n; i++) {
        const char *name = svcs[i].name;
        if (strlen(name) > CP_SERIES_MAX_NAME) {
            refused++;
            continue;
        }
        cp_series_service_t *svc = get_service(s, name, &oom);
        if (svc == NULL) {
            refused += !oom;
            continue;
        }
        if (now_ms > svc->last_ms)
            svc->last_ms = now_ms;
        cp_series_last_t *l = find_last(d, name);
        if (l == NULL) {
            if ((l = add_last(d, name)) == NULL) {
                oom = 1;
                continue;
            }
            if (!first) {
                /* a service new in a known dataplane's reports counts from 0 */
                memset(&l->t, 0, sizeof(l->t));
            } else {
                /* its baseline: what it counted before we saw it is not in this bucket */
                l->t = svcs[i].t;
                continue;
            }
        }
        cp_traffic_t delta;
        cp_traffic_since(&svcs[i].t, &l->t, &delta);
        l->t = svcs[i].t;
        add_to_bucket(svc, &delta, now_ms);
    }
    s->refused += (uint64_t)refused;
    return oom ? -1 : refused;
}

/* --- reading ------------------------------------------------------------------------------------- */

static json_t *service_json(const cp_series_service_t *svc, int64_t first, int64_t last)
{
    json_t *t = json_array(), *req = json_array(), *err = json_array(), *rps = json_array(), *rate = json_array(),
           *p99 = json_array();
    for (int64_t b = first; t != NULL && req != NULL && err != NULL && rps != NULL && rate != NULL && p99 != NULL && b <= last;
         b++) {
        const cp_series_bucket_t *slot = &svc->ring[b % CP_SERIES_BUCKETS];
        if (slot->index != b)
            continue;
        cp_figures_t f;
        cp_figures_of(&slot->t, &f);
        json_array_append_new(t, json_integer(b * CP_SERIES_RESOLUTION_MS));
        json_array_append_new(req, json_integer((json_int_t)f.requests));
        json_array_append_new(err, json_integer((json_int_t)f.errors));
        json_array_append_new(rps, json_real((double)f.requests * 1000.0 / CP_SERIES_RESOLUTION_MS));
        json_array_append_new(rate, json_real(f.error_rate));
        /* beyond the last finite bound (10 s) it is shown as that bound: "10 s or more" */
        double p = isinf(f.p99_ms) ? cp_rollout_bucket_bounds_ms[CP_ROLLOUT_BUCKETS - 2] : f.p99_ms;
        json_array_append_new(p99, f.has_p99 ? json_real(p) : json_null());
    }
    return json_pack("{so so so so so so}", "t", t, "requests", req, "errors", err, "rps", rps, "error_rate", rate, "p99_ms", p99);
}

json_t *cp_series_json(const cp_series_t *s, int64_t since_ms, const char *service, int64_t now_ms)
{
    if (since_ms < 1)
        since_ms = 1;
    if (since_ms > CP_SERIES_KEEP_MS)
        since_ms = CP_SERIES_KEEP_MS;
    /* buckets starting in (now - since, now] */
    int64_t from = now_ms - since_ms, first = from < 0 ? 0 : from / CP_SERIES_RESOLUTION_MS + 1, last = bucket_of(now_ms);
    if (first > last)
        first = last; /* a window shorter than a bucket: the current one */
    json_t *out = json_object();
    const cp_series_service_t *one = service != NULL ? find_service(s, service) : NULL;
    size_t n = service != NULL ? one != NULL : s->num_services;
    for (size_t i = 0; out != NULL && i < n; i++) {
        const cp_series_service_t *svc = one != NULL ? one : s->services[i];
        json_t *j = service_json(svc, first, last);
        if (j == NULL || json_object_set_new(out, svc->name, j) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

void cp_series_count_reports(cp_series_t *s, uint64_t n)
{
    s->reports += n;
}

void cp_series_stats(const cp_series_t *s, cp_series_stats_t *out)
{
    out->services = s->num_services;
    out->dataplanes = s->num_dps;
    out->reports = s->reports;
    out->refused = s->refused;
}
