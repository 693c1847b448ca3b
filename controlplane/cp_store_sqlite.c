/*
 * The sqlite store. Every statement is prepared per call: the control plane handles a few calls a
 * second, and per-call statements keep each function self-contained and leak-free on every path.
 * The dataplanes' rows are cp_store_sqlite_dataplanes.c's, the rollouts' cp_store_sqlite_rollouts.c's.
 * One implementation of the store's interface (cp_store_internal.h): the ops table is at the end.
 */
#include "cp_store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <sqlite3.h>
#include "cp_migrations.h"
#include "pw_log.h"

static int fail(cp_store_t *store, const char *what)
{
    snprintf(store->errmsg, sizeof(store->errmsg), "%s: %s", what, sqlite3_errmsg(store->db));
    PW_ERROR("store: %s", store->errmsg);
    return CP_STORE_ERROR;
}

int sq_exec(cp_store_t *store, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(store->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(store->errmsg, sizeof(store->errmsg), "%s", msg != NULL ? msg : sqlite3_errmsg(store->db));
        PW_ERROR("store: %s (in: %.60s)", store->errmsg, sql);
        sqlite3_free(msg);
        return CP_STORE_ERROR;
    }
    return CP_STORE_OK;
}

sqlite3_stmt *sq_prepare(cp_store_t *store, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail(store, "prepare");
        return NULL;
    }
    return st;
}

static void rollback(cp_store_t *store)
{
    if (!sqlite3_get_autocommit(store->db))
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Begins a transaction that writes history (a version, a tag, an event). It must commit at
 * synchronous=FULL: when a live-state write could not restore FULL, try again here and refuse to
 * write rather than acknowledge history that a power cut could lose. */
static int begin_durable(cp_store_t *store)
{
    if (!store->sync_full) {
        if (sq_exec(store, "PRAGMA synchronous=FULL") != CP_STORE_OK) {
            snprintf(store->errmsg, sizeof(store->errmsg), "cannot restore synchronous=FULL: refusing to write history");
            return CP_STORE_ERROR;
        }
        store->sync_full = 1;
    }
    return sq_exec(store, "BEGIN IMMEDIATE");
}

const char *sq_col(void *row, int col)
{
    return (const char *)sqlite3_column_text((sqlite3_stmt *)row, col);
}

char *sq_column_strdup(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return strdup(s != NULL ? (const char *)s : "");
}

static int load_active(cp_store_t *store)
{
    sqlite3_stmt *st = sq_prepare(store, "SELECT version, hash FROM versions ORDER BY version DESC LIMIT 1");
    if (st == NULL)
        return CP_STORE_ERROR;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        store->active = sqlite3_column_int64(st, 0);
        snprintf(store->active_hash, sizeof(store->active_hash), "%s", (const char *)sqlite3_column_text(st, 1));
    } else if (rc == SQLITE_DONE) {
        store->active = 0;
        store->active_hash[0] = '\0';
    } else {
        sqlite3_finalize(st);
        return fail(store, "reading the active version");
    }
    sqlite3_finalize(st);
    return CP_STORE_OK;
}

static int migrate(cp_store_t *store)
{
    if (sq_exec(store, "CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                       "applied_ms INTEGER NOT NULL)") != CP_STORE_OK)
        return CP_STORE_ERROR;
    sqlite3_stmt *st = sq_prepare(store, "SELECT coalesce(max(number), 0) FROM schema_migrations");
    if (st == NULL)
        return CP_STORE_ERROR;
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return fail(store, "reading schema_migrations");
    }
    int applied = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    int newest = cp_num_migrations > 0 ? cp_migrations[cp_num_migrations - 1].number : 0;
    if (applied > newest) {
        snprintf(store->errmsg, sizeof(store->errmsg),
                 "the database has migration %d, this pathway-control knows up to %d: use a newer binary", applied, newest);
        return CP_STORE_ERROR;
    }
    for (size_t i = 0; i < cp_num_migrations; i++) {
        const cp_migration_t *m = &cp_migrations[i];
        if (m->number <= applied)
            continue;
        if (sq_exec(store, "BEGIN IMMEDIATE") != CP_STORE_OK)
            return CP_STORE_ERROR;
        if (sq_exec(store, m->sql) != CP_STORE_OK) {
            char why[160];
            snprintf(why, sizeof(why), "%.150s", store->errmsg);
            rollback(store);
            snprintf(store->errmsg, sizeof(store->errmsg), "migration %s: %s", m->name, why);
            return CP_STORE_ERROR;
        }
        sqlite3_stmt *ins = sq_prepare(store, "INSERT INTO schema_migrations (number, name, applied_ms) VALUES (?, ?, ?)");
        if (ins == NULL) {
            rollback(store);
            return CP_STORE_ERROR;
        }
        sqlite3_bind_int(ins, 1, m->number);
        sqlite3_bind_text(ins, 2, m->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, cp_now_ms());
        int rc = sqlite3_step(ins);
        sqlite3_finalize(ins);
        if (rc != SQLITE_DONE || sq_exec(store, "COMMIT") != CP_STORE_OK) {
            if (rc != SQLITE_DONE)
                fail(store, "recording a migration");
            rollback(store);
            return CP_STORE_ERROR;
        }
        PW_INFO("store: applied migration %s", m->name);
        applied = m->number;
    }
    store->schema_version = applied;
    return CP_STORE_OK;
}

int cp_store_sqlite_backup(const char *path, const char *dest, char *err, size_t errlen)
{
    sqlite3 *src = NULL, *dst = NULL;
    size_t tlen = strlen(dest) + 16;
    char *tmp = malloc(tlen);
    int ret = -1, fd = -1;
    if (tmp == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(tmp, tlen, "%s.partial", dest);
    /* READWRITE without CREATE: a missing database is an error, not an empty backup; read-write
     * because a WAL database's readers need its shared-memory file */
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, src != NULL ? sqlite3_errmsg(src) : "cannot open");
        goto Exit;
    }
    sqlite3_busy_timeout(src, 5000);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(src, "SELECT count(*) FROM schema_migrations", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, errlen, "%s: not a pathway-control database (%s)", path, sqlite3_errmsg(src));
        sqlite3_finalize(st);
        goto Exit;
    }
    sqlite3_finalize(st);
    unlink(tmp);
    if ((fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto Exit;
    }
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", tmp, dst != NULL ? sqlite3_errmsg(dst) : "cannot open");
        goto Exit;
    }
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        snprintf(err, errlen, "backup: %s", sqlite3_errmsg(dst));
        goto Exit;
    }
    /* all pages in one step: one read transaction, so the copy is of one moment (a writer in WAL
     * mode is not blocked by it); a busy or locked source is retried for a while */
    int rc, tries = 0;
    while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED) {
        if (++tries > 100)
            break;
        sqlite3_sleep(50);
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "backup: %s", sqlite3_errstr(rc));
        goto Exit;
    }
    if (sqlite3_prepare_v2(dst, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
        snprintf(err, errlen, "backup: the copy fails its check: %s",
                 st != NULL && sqlite3_column_text(st, 0) != NULL ? (const char *)sqlite3_column_text(st, 0) : sqlite3_errmsg(dst));
        sqlite3_finalize(st);
        goto Exit;
    }
    sqlite3_finalize(st);
    /* the copy is a whole database file by itself: no -wal beside it to carry along */
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "backup: %s", sqlite3_errmsg(dst));
        goto Exit;
    }
    sqlite3_close(dst);
    dst = NULL;
    if (fsync(fd) != 0 || rename(tmp, dest) != 0) {
        snprintf(err, errlen, "%s: %s", dest, strerror(errno));
        goto Exit;
    }
    /* the rename itself must survive a crash too */
    char *dir = strdup(dest), *slash = dir != NULL ? strrchr(dir, '/') : NULL;
    if (dir != NULL) {
        if (slash == dir)
            dir[1] = '\0';
        else if (slash != NULL)
            *slash = '\0';
        int dfd = open(slash != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    ret = 0;
Exit:
    if (dst != NULL)
        sqlite3_close(dst);
    if (src != NULL)
        sqlite3_close(src);
    if (fd >= 0)
        close(fd);
    if (ret != 0)
        unlink(tmp);
    free(tmp);
    return ret;
}

static const cp_store_ops_t sqlite_ops;
static void sqlite_close(cp_store_t *store);
static void checkpointer_start(cp_store_t *store, const char *path);

cp_store_t *cp_store_sqlite_open(const char *path, char *err, size_t errlen)
{
    cp_store_t *store = calloc(1, sizeof(*store));
    if (store == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    store->ops = &sqlite_ops;
    /* documents may carry endpoint URLs with API keys: a new file is readable by its owner only
     * (sqlite gives its -wal and -shm files the same permissions) */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    if (sqlite3_open_v2(path, &store->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, store->db != NULL ? sqlite3_errmsg(store->db) : "cannot open");
        sqlite_close(store);
        return NULL;
    }
    sqlite3_extended_result_codes(store->db, 1);
    /* another process (a backup, sqlite3 running integrity_check) may hold the lock for a moment */
    sqlite3_busy_timeout(store->db, 5000);
    sqlite3_stmt *st = sq_prepare(store, "PRAGMA journal_mode=WAL");
    const unsigned char *mode = NULL;
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
        mode = sqlite3_column_text(st, 0);
    int wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        snprintf(err, errlen, "%s: cannot switch to WAL mode: %s", path, sqlite3_errmsg(store->db));
        sqlite_close(store);
        return NULL;
    }
    store->sync_full = 1;
    if (sq_exec(store, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;") != CP_STORE_OK || migrate(store) != CP_STORE_OK ||
        load_active(store) != CP_STORE_OK) {
        snprintf(err, errlen, "%s: %s", path, store->errmsg);
        sqlite_close(store);
        return NULL;
    }
    checkpointer_start(store, path);
    return store;
}

/* The WAL's checkpoints (copying committed pages into the database file, with its fsync) run on a
 * thread of their own and its own connection, every CHECKPOINT_MS, instead of inside whichever
 * commit crosses sqlite's threshold: a heartbeat's commit on the event loop would wait for the
 * disk, and every call behind it. PASSIVE: it never blocks the loop's connection, and what it
 * copies was durable in the WAL already (its commits were flushed there). */
#define CHECKPOINT_MS 500

typedef struct st_sq_checkpointer_t {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    sqlite3 *db;
} sq_checkpointer_t;

static void *checkpointer_main(void *arg)
{
    sq_checkpointer_t *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)CHECKPOINT_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->lock);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            PW_WARN("store: checkpointing the WAL: %s", sqlite3_errmsg(c->db));
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void checkpointer_stop(cp_store_t *store)
{
    sq_checkpointer_t *c = store->ckpt;
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
    store->ckpt = NULL;
}

/* Starts the checkpointer; when it cannot start, sqlite checkpoints in commits as by default. */
static void checkpointer_start(cp_store_t *store, const char *path)
{
    sq_checkpointer_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK) {
        PW_WARN("store: %s: no WAL checkpointer (%s): checkpoints run in commits", path, sqlite3_errmsg(c->db));
        sqlite3_close(c->db);
        free(c);
        return;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pthread_create(&c->thread, NULL, checkpointer_main, c) != 0) {
        PW_WARN("store: %s: no WAL checkpointer (cannot start a thread): checkpoints run in commits", path);
        sqlite3_close(c->db);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return;
    }
    store->ckpt = c;
    if (sq_exec(store, "PRAGMA wal_autocheckpoint=0") != CP_STORE_OK)
        checkpointer_stop(store);
}

static void sqlite_close(cp_store_t *store)
{
    if (store == NULL)
        return;
    checkpointer_stop(store);
    sqlite3_close(store->db);
    free(store);
}

/* Fills *out from a row of (version, created_ms, author, message, kind, source_version, hash[, document]). */
static int read_version_row(sqlite3_stmt *st, cp_version_t *out, int with_document)
{
    memset(out, 0, sizeof(*out));
    out->version = sqlite3_column_int64(st, 0);
    out->created_ms = sqlite3_column_int64(st, 1);
    out->author = sq_column_strdup(st, 2);
    out->message = sq_column_strdup(st, 3);
    if (cp_kind_from_name((const char *)sqlite3_column_text(st, 4), &out->kind) != 0)
        out->kind = CP_KIND_APPLY;
    out->source_version = sqlite3_column_int64(st, 5);
    snprintf(out->hash, sizeof(out->hash), "%s", (const char *)sqlite3_column_text(st, 6));
    if (with_document)
        out->document = sq_column_strdup(st, 7);
    if (out->author == NULL || out->message == NULL || (with_document && out->document == NULL)) {
        cp_version_dispose(out);
        return -1;
    }
    return 0;
}

static int sq_get_version(cp_store_t *store, int64_t n, cp_version_t *out)
{
    if (n <= 0)
        n = store->active;
    if (n <= 0)
        return CP_STORE_NOT_FOUND;
    sqlite3_stmt *st =
        sq_prepare(store, "SELECT version, created_ms, author, message, kind, coalesce(source_version, 0), hash, document "
                          "FROM versions WHERE version = ?");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_int64(st, 1, n);
    int rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW)
        ret = read_version_row(st, out, 1) == 0 ? CP_STORE_OK : CP_STORE_ERROR;
    else if (rc == SQLITE_DONE)
        ret = CP_STORE_NOT_FOUND;
    else
        ret = fail(store, "reading a version");
    sqlite3_finalize(st);
    return ret;
}

static int insert_event(cp_store_t *store, int64_t now, const char *actor, const char *action, int64_t version, const char *detail)
{
    sqlite3_stmt *st = sq_prepare(store, "INSERT INTO events (created_ms, actor, action, version, detail) VALUES (?, ?, ?, ?, ?)");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
    if (version > 0)
        sqlite3_bind_int64(st, 4, version);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_text(st, 5, detail != NULL ? detail : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? CP_STORE_OK : fail(store, "appending an event");
}

static int sq_append(cp_store_t *store, const cp_append_t *a, int64_t *version)
{
    if (begin_durable(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    /* read inside the write transaction: the check and the insert see the same active version */
    if (load_active(store) != CP_STORE_OK)
        goto Error;
    if (a->if_match >= 0 && a->if_match != store->active) {
        rollback(store);
        return CP_STORE_CONFLICT;
    }
    if (store->active > 0 && strcmp(store->active_hash, a->hash) == 0) {
        rollback(store);
        *version = store->active;
        return CP_STORE_UNCHANGED;
    }
    int64_t next = store->active + 1, now = cp_now_ms();
    sqlite3_stmt *st =
        sq_prepare(store, "INSERT INTO versions (version, created_ms, author, message, kind, source_version, document, hash) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (st == NULL)
        goto Error;
    sqlite3_bind_int64(st, 1, next);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, a->author, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, a->message != NULL ? a->message : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, cp_kind_name(a->kind), -1, SQLITE_STATIC);
    if (a->source_version > 0)
        sqlite3_bind_int64(st, 6, a->source_version);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_text(st, 7, a->document, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, a->hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        fail(store, "inserting a version");
        goto Error;
    }
    if (insert_event(store, now, a->author, cp_kind_name(a->kind), next, a->message) != CP_STORE_OK)
        goto Error;
    if (a->hook != NULL && a->hook(store, next, a->hook_arg) != CP_STORE_OK)
        goto Error;
    /* synchronous=FULL: COMMIT returns after the WAL is fsynced, so the caller may acknowledge */
    if (sq_exec(store, "COMMIT") != CP_STORE_OK)
        goto Error;
    store->active = next;
    snprintf(store->active_hash, sizeof(store->active_hash), "%s", a->hash);
    *version = next;
    return CP_STORE_CREATED;

Error:
    rollback(store);
    load_active(store);
    return CP_STORE_ERROR;
}

int sq_fail(cp_store_t *store, const char *what)
{
    return fail(store, what);
}

int sq_begin(cp_store_t *store)
{
    return begin_durable(store);
}

int sq_commit(cp_store_t *store)
{
    if (sq_exec(store, "COMMIT") == CP_STORE_OK)
        return CP_STORE_OK;
    rollback(store);
    return CP_STORE_ERROR;
}

void sq_abandon(cp_store_t *store)
{
    rollback(store);
}

int sq_event(cp_store_t *store, int64_t now_ms, const char *actor, const char *action, int64_t version, const char *detail)
{
    return insert_event(store, now_ms, actor, action, version, detail);
}

/* Binds a listing's filter to parameters 3 (who) and 4 (what); NULL binds NULL, which keeps all. */
static void bind_filter(sqlite3_stmt *st, const cp_list_filter_t *f)
{
    sqlite3_bind_text(st, 3, f != NULL ? f->who : NULL, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, f != NULL ? f->what : NULL, -1, SQLITE_STATIC);
}

static json_t *sq_list_versions(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f)
{
    sqlite3_stmt *st = sq_prepare(store, "SELECT version, created_ms, author, message, kind, coalesce(source_version, 0), hash "
                                         "FROM versions WHERE version < ?1 AND (?3 IS NULL OR author = ?3) "
                                         "AND (?4 IS NULL OR kind = ?4) ORDER BY version DESC LIMIT ?2");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX);
    sqlite3_bind_int(st, 2, limit);
    bind_filter(st, f);
    json_t *arr = json_array();
    int rc;
    while (arr != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        cp_version_t v;
        if (read_version_row(st, &v, 0) != 0) {
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, cp_version_summary_json(&v));
        cp_version_dispose(&v);
    }
    if (arr != NULL && rc != SQLITE_DONE) {
        fail(store, "listing versions");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_finalize(st);
    return arr;
}

static int version_exists(cp_store_t *store, int64_t version)
{
    return version >= 1 && version <= store->active;
}

/* Appends a tags row (a move, or a deletion) and its event, inside the caller's transaction. */
static int append_tag_row(cp_store_t *store, const char *name, int64_t version, int deleted, const char *author,
                          const char *message)
{
    int64_t now = cp_now_ms();
    sqlite3_stmt *st =
        sq_prepare(store, "INSERT INTO tags (name, version, created_ms, author, message, deleted) VALUES (?, ?, ?, ?, ?, ?)");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, author, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, message != NULL ? message : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, deleted);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return fail(store, "inserting a tag");
    size_t dlen = strlen(name) + (message != NULL ? strlen(message) : 0) + 8;
    char *detail = malloc(dlen);
    if (detail == NULL)
        return CP_STORE_ERROR;
    snprintf(detail, dlen, "%s%s%s", name, message != NULL && message[0] ? ": " : "", message != NULL ? message : "");
    rc = insert_event(store, now, author, deleted ? "tag_delete" : "tag", version, detail);
    free(detail);
    return rc;
}

static int sq_set_tag(cp_store_t *store, const char *name, int64_t version, const char *author, const char *message)
{
    if (!version_exists(store, version))
        return CP_STORE_NOT_FOUND;
    if (begin_durable(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    if (append_tag_row(store, name, version, 0, author, message) != CP_STORE_OK || sq_exec(store, "COMMIT") != CP_STORE_OK) {
        rollback(store);
        return CP_STORE_ERROR;
    }
    return CP_STORE_OK;
}

static int sq_delete_tag(cp_store_t *store, const char *name, const char *author, const char *message, int64_t *version)
{
    if (begin_durable(store) != CP_STORE_OK)
        return CP_STORE_ERROR;
    /* read inside the transaction: a deletion names the version the tag pointed at just then */
    int64_t v = 0;
    int rc = sq_get_tag(store, name, &v);
    if (rc == CP_STORE_OK)
        rc = append_tag_row(store, name, v, 1, author, message);
    if (rc == CP_STORE_OK && sq_exec(store, "COMMIT") != CP_STORE_OK)
        rc = CP_STORE_ERROR;
    if (rc != CP_STORE_OK)
        rollback(store);
    else if (version != NULL)
        *version = v;
    return rc;
}

int sq_get_tag(cp_store_t *store, const char *name, int64_t *version)
{
    sqlite3_stmt *st = sq_prepare(store, "SELECT version, deleted FROM tags WHERE name = ? ORDER BY id DESC LIMIT 1");
    if (st == NULL)
        return CP_STORE_ERROR;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int64(st, 0);
        ret = sqlite3_column_int(st, 1) ? CP_STORE_NOT_FOUND : CP_STORE_OK;
    } else {
        ret = rc == SQLITE_DONE ? CP_STORE_NOT_FOUND : fail(store, "reading a tag");
    }
    sqlite3_finalize(st);
    return ret;
}

/* A row of SELECT name, version, created_ms, author, message, deleted FROM tags. */
static json_t *tag_row_json(sqlite3_stmt *st, int with_name)
{
    json_t *o = json_pack("{sI so ss ss}", "version", (json_int_t)sqlite3_column_int64(st, 1), "updated_at",
                          cp_time_json(sqlite3_column_int64(st, 2)), "author", (const char *)sqlite3_column_text(st, 3), "message",
                          (const char *)sqlite3_column_text(st, 4));
    if (o != NULL && with_name)
        json_object_set_new(o, "name", json_string((const char *)sqlite3_column_text(st, 0)));
    if (o != NULL && sqlite3_column_int(st, 5))
        json_object_set_new(o, "deleted", json_true());
    return o;
}

static json_t *sq_tag_json(cp_store_t *store, const char *name, int *rc_out)
{
    sqlite3_stmt *st =
        sq_prepare(store, "SELECT name, version, created_ms, author, message, deleted FROM tags WHERE name = ? ORDER BY id DESC");
    if (st == NULL) {
        *rc_out = CP_STORE_ERROR;
        return NULL;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    json_t *tag = NULL, *history = json_array();
    int rc, first = 1, deleted = 0;
    while (history != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (first)
            deleted = sqlite3_column_int(st, 5);
        if (first && !deleted)
            tag = tag_row_json(st, 1);
        first = 0;
        json_array_append_new(history, tag_row_json(st, 0));
    }
    sqlite3_finalize(st);
    if (history == NULL || rc != SQLITE_DONE) {
        *rc_out = history == NULL ? CP_STORE_ERROR : fail(store, "reading a tag");
        json_decref(tag);
        json_decref(history);
        return NULL;
    }
    if (tag == NULL) {
        *rc_out = CP_STORE_NOT_FOUND;
        json_decref(history);
        return NULL;
    }
    json_object_set_new(tag, "history", history);
    *rc_out = CP_STORE_OK;
    return tag;
}

static json_t *sq_list_tags(cp_store_t *store)
{
    sqlite3_stmt *st = sq_prepare(store, "SELECT t.name, t.version, t.created_ms, t.author, t.message, t.deleted FROM tags t "
                                         "WHERE t.id = (SELECT max(id) FROM tags u WHERE u.name = t.name) AND NOT t.deleted "
                                         "ORDER BY t.name");
    if (st == NULL)
        return NULL;
    json_t *arr = json_array();
    int rc;
    while (arr != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr, tag_row_json(st, 1));
    if (arr != NULL && rc != SQLITE_DONE) {
        fail(store, "listing tags");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_finalize(st);
    return arr;
}

static json_t *sq_list_events(cp_store_t *store, int64_t before, int limit, const cp_list_filter_t *f)
{
    sqlite3_stmt *st = sq_prepare(store, "SELECT id, created_ms, actor, action, coalesce(version, 0), detail FROM events "
                                         "WHERE id < ?1 AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR action = ?4) "
                                         "ORDER BY id DESC LIMIT ?2");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX);
    sqlite3_bind_int(st, 2, limit);
    bind_filter(st, f);
    json_t *arr = json_array();
    int rc;
    while (arr != NULL && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 4);
        json_array_append_new(
            arr, json_pack("{sI so ss ss so ss}", "id", (json_int_t)sqlite3_column_int64(st, 0), "time",
                           cp_time_json(sqlite3_column_int64(st, 1)), "actor", (const char *)sqlite3_column_text(st, 2), "action",
                           (const char *)sqlite3_column_text(st, 3), "version", v > 0 ? json_integer(v) : json_null(), "message",
                           (const char *)sqlite3_column_text(st, 5)));
    }
    if (arr != NULL && rc != SQLITE_DONE) {
        fail(store, "listing events");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_finalize(st);
    return arr;
}

static const cp_store_ops_t sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .get_version = sq_get_version,
    .append = sq_append,
    .list_versions = sq_list_versions,
    .set_tag = sq_set_tag,
    .get_tag = sq_get_tag,
    .tag_json = sq_tag_json,
    .list_tags = sq_list_tags,
    .delete_tag = sq_delete_tag,
    .list_events = sq_list_events,
    .begin = sq_begin,
    .commit = sq_commit,
    .abandon = sq_abandon,
    .event = sq_event,
    .dataplane_seen = sq_dataplane_seen,
    .dataplanes_delivered = sq_dataplanes_delivered,
    .dataplane_reports = sq_dataplane_reports,
    .traffic_since = sq_traffic_since,
    .forget_dataplane = sq_forget_dataplane,
    .dataplane_admit = sq_dataplane_admit,
    .get_dataplane = sq_get_dataplane,
    .list_dataplanes = sq_list_dataplanes,
    .dataplane_labels = sq_dataplane_labels,
    .get_dataplanes = sq_get_dataplanes,
    .dataplanes_polled = sq_dataplanes_polled,
    .ro_insert = sq_ro_insert,
    .ro_update = sq_ro_update,
    .ro_verdict = sq_ro_verdict,
    .ro_get = sq_ro_get,
    .ro_newest = sq_ro_newest,
    .ro_list = sq_ro_list,
    .ro_verdicts = sq_ro_verdicts,
    .ro_verdict_counts = sq_ro_verdict_counts,
};
