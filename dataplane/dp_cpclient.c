#include "dp_cpclient.h"
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "pw_log.h"
#include "pw_token.h"

#define STATE_FILE "pathway-fleet.json"
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000
#define MAX_RESPONSE (CFG_MAX_DOCUMENT_SIZE + 64 * 1024)
#define MIN_POLL_MS 1000    /* a long poll answered faster than this without news waits out the rest */
#define WARN_EVERY_MS 60000 /* an unreachable control plane is logged once, then at most this often */

/* The latest ACK or NACK, repeated by every heartbeat until the next one. */
typedef struct st_report_t {
    int64_t version; /* the version the report is about */
    int applied;     /* ACK (1) or NACK (0) */
    char *error;     /* NACK reason; NULL for an ACK */
} report_t;

struct st_dp_cpclient_t {
    dp_cpclient_callbacks_t cb; /* how to apply and what to report */
    char *base_url;             /* control plane URL without a trailing '/' */
    char *auth_header;          /* "Authorization: Bearer ..." or NULL */
    char *id;                   /* this dataplane's id */
    char *state_dir;            /* where accepted documents are kept */
    uint64_t poll_wait_ms;      /* long-poll wait asked for */
    uint64_t heartbeat_ms;      /* heartbeat period */
    json_t *labels;             /* {"hostname": ..., control_plane.labels...} */
    char *labels_query;         /* "&labels=<labels as percent-encoded JSON>", or NULL when there are none */
    atomic_int poll_labels;     /* the control plane takes labels_query (cleared when it refuses it) */
    atomic_int send_traffic;    /* the control plane takes heartbeats' "traffic" (cleared when it refuses it) */

    pthread_t poll_thread, beat_thread;
    int started;                   /* threads were started */
    atomic_int stop;               /* set once by destroy */
    pthread_mutex_t mutex;         /* guards everything below and pairs with `wake` */
    pthread_cond_t wake;           /* signalled at stop, so sleeps end at once */
    report_t report;               /* latest report */
    int64_t applied;               /* version of the running generation (0 = from the file) */
    int64_t rejected;              /* last version rejected, 0 if none since the last ACK */
    int connected;                 /* the last call reached the control plane */
    char *conn_error;              /* why the last call did not reach it (NULL while connected) */
    uint64_t warned_at_ms;         /* monotonic time of the last "unreachable" warning (0 = none yet) */
    uint64_t failures_warned;      /* failures counted at that warning */
    uint64_t refused_warned_at_ms; /* monotonic time of the last "refused a status report" warning */
    uint64_t polls;                /* long polls answered */
    uint64_t failures;             /* calls that failed (network, 5xx, auth) */
};

static char *xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xstrdup_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* --- state_dir ----------------------------------------------------------------------------- */

int dp_cpstate_load(const char *state_dir, dp_cpstate_t *out, char **err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", state_dir, STATE_FILE);
    memset(out, 0, sizeof(*out));
    if (access(path, F_OK) != 0)
        return 0;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        *err = xstrdup_printf("%s: line %d: %s", path, jerr.line, jerr.text);
        return -1;
    }
    json_t *v = json_object_get(root, "version"), *doc = json_object_get(root, "document");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || !json_is_object(doc)) {
        *err = xstrdup_printf("%s: not a saved config (needs an integer version >= 1 and a document object)", path);
        json_decref(root);
        return -1;
    }
    out->version = json_integer_value(v);
    out->fleet = json_incref(doc);
    json_decref(root);
    return 1;
}

void dp_cpstate_dispose(dp_cpstate_t *st)
{
    json_decref(st->fleet);
    memset(st, 0, sizeof(*st));
}

/* mkdir -p: state_dir and any missing parents (0750). Returns 0, or -1 with errno set. */
static int mkdir_p(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(path, 0750) != 0 && errno != EEXIST ? -1 : 0;
}

int dp_cpstate_save(const char *state_dir, int64_t version, const json_t *fleet, char **err)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", state_dir, STATE_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    if (mkdir_p(state_dir) != 0) {
        *err = xstrdup_printf("%s: cannot create: %s", state_dir, strerror(errno));
        return -1;
    }
    json_t *root = json_pack("{s:I, s:O}", "version", (json_int_t)version, "document", (json_t *)fleet);
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (text == NULL) {
        *err = strdup("out of memory");
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int ok = fd >= 0;
    size_t len = strlen(text), off = 0;
    while (ok && off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ok = 0;
        else
            off += (size_t)n;
    }
    if (ok && fsync(fd) != 0)
        ok = 0;
    int saved_errno = errno;
    if (fd >= 0)
        close(fd);
    free(text);
    if (ok && rename(tmp, path) != 0) {
        saved_errno = errno;
        ok = 0;
    }
    if (!ok) {
        unlink(tmp);
        *err = xstrdup_printf("%s: cannot write: %s", path, strerror(saved_errno));
        return -1;
    }
    /* the rename itself must reach the disk before we call the version ours */
    int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* --- HTTP ---------------------------------------------------------------------------------- */

typedef struct st_body_t {
    char *data;
    size_t len;
    int too_large;
} body_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body_t *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > MAX_RESPONSE) {
        b->too_large = 1;
        return 0; /* aborts the transfer */
    }
    char *nd = realloc(b->data, b->len + n + 1);
    if (nd == NULL)
        return 0;
    memcpy(nd + b->len, ptr, n);
    b->data = nd;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    dp_cpclient_t *c = clientp;
    return atomic_load(&c->stop) ? 1 : 0; /* non-zero aborts a long poll once we are stopping */
}

/* One request; returns the HTTP status, or -1 when the control plane was not reached (curl's
 * error in errbuf). The body is in *body (caller frees body->data). */
static long http_call(dp_cpclient_t *c, CURL *curl, const char *method, const char *url, const char *payload, long timeout_ms,
                      body_t *body, char *errbuf)
{
    struct curl_slist *headers = NULL;
    memset(body, 0, sizeof(*body));
    errbuf[0] = '\0';
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->auth_header != NULL)
        headers = curl_slist_append(headers, c->auth_header);
    if (payload != NULL) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
        if (errbuf[0] == '\0')
            snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
        if (body->too_large)
            snprintf(errbuf, CURL_ERROR_SIZE, "response larger than %d bytes", MAX_RESPONSE);
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Sleeps up to ms, or until stop. Returns non-zero when stopping. */
static int nap(dp_cpclient_t *c, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mutex);
    while (!atomic_load(&c->stop)) {
        if (pthread_cond_timedwait(&c->wake, &c->mutex, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&c->mutex);
    return atomic_load(&c->stop);
}

/* Capped exponential backoff with full jitter in [cap/2, cap]: many dataplanes that lost the
 * same control plane do not all come back in the same millisecond. */
static uint64_t backoff_ms(unsigned failures, unsigned *seed)
{
    uint64_t cap = BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && cap < BACKOFF_MAX_MS; i++)
        cap *= 2;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    return cap / 2 + (uint64_t)rand_r(seed) % (cap / 2 + 1);
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Records whether a call reached the control plane. While it cannot be reached, one warning at the
 * first failure and then at most one per WARN_EVERY_MS (with the count), not one per retry. */
static void set_connected(dp_cpclient_t *c, int connected, const char *why)
{
    uint64_t now = monotonic_ms(), failures = 0, since = 0;
    int warn = 0;
    pthread_mutex_lock(&c->mutex);
    int was = c->connected;
    c->connected = connected;
    free(c->conn_error);
    c->conn_error = NULL;
    if (!connected) {
        c->failures++;
        c->conn_error = strdup(why != NULL ? why : "unreachable");
        if (c->warned_at_ms == 0 || was || now - c->warned_at_ms >= WARN_EVERY_MS) {
            warn = 1;
            failures = c->failures;
            since = was || c->warned_at_ms == 0 ? 0 : failures - c->failures_warned;
            c->warned_at_ms = now;
            c->failures_warned = failures;
        }
    } else {
        c->warned_at_ms = 0;
    }
    pthread_mutex_unlock(&c->mutex);
    if (warn && since == 0)
        PW_WARN("control plane %s unreachable: %s; serving the current config, retrying", c->base_url, why);
    else if (warn)
        PW_WARN("control plane %s still unreachable (%" PRIu64 " failed calls since the last warning): %s", c->base_url, since,
                why);
    else if (!was && connected)
        PW_INFO("control plane %s reached", c->base_url);
}

/* Whether a refused status report should be logged now: heartbeats repeat every few seconds, the
 * log line at most once per WARN_EVERY_MS. */
static int refusal_due(dp_cpclient_t *c)
{
    uint64_t now = monotonic_ms();
    pthread_mutex_lock(&c->mutex);
    int due = c->refused_warned_at_ms == 0 || now - c->refused_warned_at_ms >= WARN_EVERY_MS;
    if (due)
        c->refused_warned_at_ms = now;
    pthread_mutex_unlock(&c->mutex);
    return due;
}

/* Sends the latest report with live figures. Returns 0 when the control plane took it. */
static int send_report(dp_cpclient_t *c, CURL *curl)
{
    pthread_mutex_lock(&c->mutex);
    json_t *msg = json_pack("{s:I, s:b}", "version", (json_int_t)c->report.version, "applied", c->report.applied);
    if (msg != NULL && c->report.error != NULL)
        json_object_set_new(msg, "error", json_string(c->report.error));
    pthread_mutex_unlock(&c->mutex);
    if (msg == NULL)
        return -1;
    json_t *stats = c->cb.stats != NULL ? c->cb.stats(c->cb.ctx) : NULL;
    if (stats != NULL)
        json_object_set_new(msg, "stats", stats);
    if (json_object_size(c->labels) != 0)
        json_object_set(msg, "labels", c->labels);
    int with_traffic = c->cb.traffic != NULL && atomic_load(&c->send_traffic);
    json_t *traffic = with_traffic ? c->cb.traffic(c->cb.ctx) : NULL;
    if (traffic != NULL)
        json_object_set_new(msg, "traffic", traffic);
    char *payload = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    char *url = xstrdup_printf("%s/v1/dataplanes/%s/status", c->base_url, c->id);
    body_t body = {NULL, 0, 0};
    char errbuf[CURL_ERROR_SIZE] = "out of memory";
    long status = payload != NULL && url != NULL ? http_call(c, curl, "POST", url, payload, 10000, &body, errbuf) : -1;
    if (status == 400 && traffic != NULL && body.data != NULL && strstr(body.data, "traffic: unknown field") != NULL) {
        /* a control plane older than rollouts: the report goes on without the evidence */
        PW_INFO("control plane %s does not take traffic figures in heartbeats; sending them no more", c->base_url);
        atomic_store(&c->send_traffic, 0);
        free(body.data);
        free(url);
        free(payload);
        return send_report(c, curl);
    }
    if (status < 0)
        set_connected(c, 0, errbuf);
    else if (status >= 300 && refusal_due(c))
        PW_WARN("control plane refused a status report (logged at most once a minute): HTTP %ld %.200s", status,
                body.data != NULL ? body.data : "");
    free(body.data);
    free(url);
    free(payload);
    return status >= 200 && status < 300 ? 0 : -1;
}

static void set_report(dp_cpclient_t *c, int64_t version, int applied, const char *error)
{
    pthread_mutex_lock(&c->mutex);
    free(c->report.error);
    c->report.version = version;
    c->report.applied = applied;
    c->report.error = error != NULL ? strdup(error) : NULL;
    if (applied) {
        c->applied = version;
        c->rejected = 0;
    } else {
        c->rejected = version;
    }
    pthread_mutex_unlock(&c->mutex);
}

/* Turns a fleet document into a running generation. Returns 0 (applied), -1 (rejected: *err,
 * malloc'd, is what the NACK carries) or -2 (the server is stopping: neither). */
static int apply_fleet(dp_cpclient_t *c, int64_t version, json_t *fleet, char **err)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    int rc = -1;
    *err = NULL;
    cfg_t *fcfg = cfg_decode(fleet, CFG_SCOPE_FLEET, &errs);
    if (fcfg == NULL) {
        *err = cfg_errors_join(&errs);
    } else if ((rc = c->cb.apply(c->cb.ctx, fcfg, version, err)) == -1) {
        if (*err == NULL)
            *err = strdup("the dataplane could not apply it");
    } else if (rc == 0) {
        char *serr = NULL;
        if (dp_cpstate_save(c->state_dir, version, fleet, &serr) != 0) {
            /* it runs; only a restart without the control plane would miss it */
            PW_ERROR("version %lld applied but not saved: %s", (long long)version, serr);
            free(serr);
        }
    }
    cfg_errors_dispose(&errs);
    return rc;
}

static void *poll_main(void *arg)
{
    dp_cpclient_t *c = arg;
    CURL *curl = curl_easy_init();
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)c;
    unsigned failures = 0;
    char errbuf[CURL_ERROR_SIZE];
    while (curl != NULL && !atomic_load(&c->stop)) {
        pthread_mutex_lock(&c->mutex);
        /* ask for anything newer than what we run or last rejected */
        int64_t seen = c->rejected > c->applied ? c->rejected : c->applied;
        pthread_mutex_unlock(&c->mutex);
        int with_labels = c->labels_query != NULL && atomic_load(&c->poll_labels);
        char *url = xstrdup_printf("%s/v1/dataplanes/%s/config?version=%lld&wait=%llums%s", c->base_url, c->id, (long long)seen,
                                   (unsigned long long)c->poll_wait_ms, with_labels ? c->labels_query : "");
        body_t body = {NULL, 0, 0};
        snprintf(errbuf, sizeof(errbuf), "out of memory");
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long status = url != NULL ? http_call(c, curl, "GET", url, NULL, (long)(c->poll_wait_ms + 10000), &body, errbuf) : -1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t took_ms = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        free(url);
        if (atomic_load(&c->stop)) {
            free(body.data);
            break;
        }
        if (status == 200 || status == 304) {
            set_connected(c, 1, NULL);
            failures = 0;
            pthread_mutex_lock(&c->mutex);
            c->polls++;
            pthread_mutex_unlock(&c->mutex);
        }
        if (status == 200) {
            json_error_t jerr;
            json_t *root = json_loadb(body.data != NULL ? body.data : "", body.len, JSON_REJECT_DUPLICATES, &jerr);
            json_t *v = json_object_get(root, "version"), *doc = json_object_get(root, "document");
            if (!json_is_integer(v) || !json_is_object(doc)) {
                PW_ERROR("control plane sent a config the dataplane cannot read (%s); ignoring it",
                         root == NULL ? jerr.text : "no version or document");
                json_decref(root);
                free(body.data);
                nap(c, backoff_ms(++failures, &seed));
                continue;
            }
            int64_t version = json_integer_value(v);
            int rc = 0;
            if (version == seen && took_ms < MIN_POLL_MS) {
                /* a control plane that answers "same version" at once would make this a busy loop */
                json_decref(root);
                free(body.data);
                nap(c, MIN_POLL_MS);
                continue;
            }
            if (version != seen) {
                char *err = NULL;
                rc = apply_fleet(c, version, doc, &err);
                if (rc == 0)
                    PW_INFO("applied control plane version %lld", (long long)version);
                else if (rc == -1)
                    PW_WARN("rejected control plane version %lld: %s", (long long)version, err);
                if (rc != -2) {
                    set_report(c, version, rc == 0, err);
                    send_report(c, curl);
                }
                free(err);
            }
            json_decref(root);
            if (rc == -2) { /* stopping: neither ACK nor NACK; wait to be destroyed */
                free(body.data);
                nap(c, BACKOFF_MAX_MS);
                continue;
            }
        } else if (status == 304 && took_ms < MIN_POLL_MS) {
            free(body.data);
            nap(c, MIN_POLL_MS); /* a 304 that did not wait: do not spin */
            continue;
        } else if (status == 400 && with_labels && body.data != NULL &&
                   strstr(body.data, "unknown parameter \\\"labels\\\"") != NULL) {
            /* a control plane older than rollouts: it learns the labels from heartbeats only */
            PW_INFO("control plane %s does not take labels at poll time; they go in heartbeats only", c->base_url);
            atomic_store(&c->poll_labels, 0);
            free(body.data);
            continue;
        } else if (status != 304) {
            if (status < 0)
                set_connected(c, 0, errbuf);
            else {
                char why[256];
                snprintf(why, sizeof(why), "HTTP %ld %.160s", status, body.data != NULL ? body.data : "");
                set_connected(c, 0, why);
            }
            free(body.data);
            nap(c, backoff_ms(++failures, &seed));
            continue;
        }
        free(body.data);
    }
    curl_easy_cleanup(curl);
    return NULL;
}

static void *beat_main(void *arg)
{
    dp_cpclient_t *c = arg;
    CURL *curl = curl_easy_init();
    while (curl != NULL && !atomic_load(&c->stop)) {
        send_report(c, curl);
        if (nap(c, c->heartbeat_ms))
            break;
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* --- lifecycle ----------------------------------------------------------------------------- */

/* The labels reported: the hostname, then control_plane.labels (a `hostname` label overrides it),
 * and their form in a long poll's query. 0, or -1 when out of memory. */
static int make_labels(dp_cpclient_t *c, const cfg_control_plane_t *cp)
{
    char host[256];
    if ((c->labels = json_object()) == NULL)
        return -1;
    if (gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        json_object_set_new(c->labels, "hostname", json_string(host));
    }
    for (size_t i = 0; i != cp->labels.size; ++i)
        json_object_set_new(c->labels, cp->labels.entries[i].name, json_string(cp->labels.entries[i].value));
    if (json_object_size(c->labels) == 0)
        return 0;
    char *text = json_dumps(c->labels, JSON_COMPACT | JSON_SORT_KEYS);
    CURL *curl = text != NULL ? curl_easy_init() : NULL;
    char *escaped = curl != NULL ? curl_easy_escape(curl, text, 0) : NULL;
    c->labels_query = escaped != NULL ? xstrdup_printf("&labels=%s", escaped) : NULL;
    curl_free(escaped);
    curl_easy_cleanup(curl);
    free(text);
    return c->labels_query != NULL ? 0 : -1;
}

/* curl_global_init is not thread-safe; libcurl wants it once, before any other call */
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

dp_cpclient_t *dp_cpclient_create(const cfg_t *local, int64_t applied_version, const dp_cpclient_callbacks_t *cb, char **err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!local->has_control_plane) {
        *err = strdup("no control_plane section");
        return NULL;
    }
    pthread_once(&once, curl_init_once);
    const cfg_control_plane_t *cp = &local->control_plane;
    dp_cpclient_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        *err = strdup("out of memory");
        return NULL;
    }
    c->cb = *cb;
    c->base_url = strdup(cp->url);
    c->id = strdup(cp->id);
    c->state_dir = strdup(cp->state_dir);
    c->poll_wait_ms = cp->poll_wait_ms;
    c->heartbeat_ms = cp->heartbeat_interval_ms;
    c->applied = applied_version;
    atomic_store(&c->poll_labels, 1);
    atomic_store(&c->send_traffic, 1);
    c->report.version = applied_version;
    c->report.applied = 1;
    pthread_mutex_init(&c->mutex, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (c->base_url == NULL || c->id == NULL || c->state_dir == NULL || make_labels(c, cp) != 0) {
        dp_cpclient_destroy(c);
        *err = strdup("out of memory");
        return NULL;
    }
    size_t n = strlen(c->base_url);
    while (n > 0 && c->base_url[n - 1] == '/')
        c->base_url[--n] = '\0';
    if (cp->token_file != NULL) {
        char *token = pw_token_read(cp->token_file, "control_plane.token_file", err);
        if (token == NULL || (c->auth_header = xstrdup_printf("Authorization: Bearer %s", token)) == NULL) {
            if (token != NULL)
                *err = strdup("out of memory");
            free(token);
            dp_cpclient_destroy(c);
            return NULL;
        }
        free(token);
    }
    if (mkdir_p(c->state_dir) != 0 || access(c->state_dir, W_OK | X_OK) != 0) {
        *err = xstrdup_printf("control_plane.state_dir %s: cannot be written: %s", c->state_dir, strerror(errno));
        dp_cpclient_destroy(c);
        return NULL;
    }
    return c;
}

int dp_cpclient_start(dp_cpclient_t *c)
{
    if (pthread_create(&c->poll_thread, NULL, poll_main, c) != 0)
        return -1;
    if (pthread_create(&c->beat_thread, NULL, beat_main, c) != 0) {
        atomic_store(&c->stop, 1);
        pthread_join(c->poll_thread, NULL);
        return -1;
    }
    c->started = 1;
    return 0;
}

void dp_cpclient_destroy(dp_cpclient_t *c)
{
    if (c == NULL)
        return;
    if (c->started) {
        pthread_mutex_lock(&c->mutex);
        atomic_store(&c->stop, 1);
        pthread_cond_broadcast(&c->wake);
        pthread_mutex_unlock(&c->mutex);
        pthread_join(c->poll_thread, NULL);
        pthread_join(c->beat_thread, NULL);
    }
    pthread_mutex_destroy(&c->mutex);
    pthread_cond_destroy(&c->wake);
    free(c->base_url);
    free(c->auth_header);
    free(c->id);
    free(c->state_dir);
    free(c->report.error);
    free(c->conn_error);
    json_decref(c->labels);
    free(c->labels_query);
    free(c);
}

json_t *dp_cpclient_status(dp_cpclient_t *c)
{
    pthread_mutex_lock(&c->mutex);
    const char *last_error = c->conn_error != NULL ? c->conn_error : c->report.applied ? NULL : c->report.error;
    json_t *j = json_pack("{s:I, s:I, s:s?, s:b, s:I, s:I}", "applied_version", (json_int_t)c->applied, "rejected_version",
                          (json_int_t)c->rejected, "last_error", last_error, "connected", c->connected, "polls",
                          (json_int_t)c->polls, "failures", (json_int_t)c->failures);
    pthread_mutex_unlock(&c->mutex);
    return j;
}
