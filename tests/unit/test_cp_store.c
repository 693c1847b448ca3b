/* cp_store: migrations, append-only versions, If-Match, identical documents, tags, events,
 * dataplane reports and the state each dataplane is shown in. One suite for both stores: on a
 * temporary sqlite file, or, when PW_TEST_STORE_URL is set (tests/unit/run_with_pg.py starts a
 * throwaway PostgreSQL and sets it), on that PostgreSQL database, emptied before each test; the
 * PostgreSQL run adds two stores on one database (two replicas): contiguous versions, If-Match
 * across them, and the notification that wakes the other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <poll.h>
#include <sqlite3.h>
#include <libpq-fe.h>
#include "cp_store.h"
#include "cp_rollout.h"

typedef struct {
    char dir[64];
    char path[128];
    cp_store_t *store;
} fixture_t;

static const char H1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char H2[] = "2222222222222222222222222222222222222222222222222222222222222222";
static const char H3[] = "3333333333333333333333333333333333333333333333333333333333333333";

/* the PostgreSQL database under test, NULL: sqlite files */
static const char *pg_url;

/* Runs sql on the database under test through a connection of its own (not the store's): 0 when
 * it succeeded, -1 when the database refused it. */
static int db_exec(fixture_t *f, const char *sql)
{
    if (pg_url != NULL) {
        PGconn *c = PQconnectdb(pg_url);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *r = PQexec(c, sql);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        PQfinish(c);
        return ok ? 0 : -1;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* The first column of the first row of a query on the database under test, as an integer. */
static int64_t db_int(fixture_t *f, const char *sql)
{
    int64_t v = -1;
    if (pg_url != NULL) {
        PGconn *c = PQconnectdb(pg_url);
        PGresult *r = PQexec(c, sql);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
        return v;
    }
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static cp_store_t *open_store(fixture_t *f)
{
    char err[256];
    cp_store_t *s = cp_store_open(pg_url != NULL ? pg_url : f->path, err, sizeof(err));
    if (s == NULL)
        fail_msg("open: %s", err);
    return s;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_cp_store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/cp.db", f->dir);
    if (pg_url != NULL)
        /* every test starts from an empty database, as it does from a new file */
        assert_int_equal(db_exec(f, "DROP SCHEMA public CASCADE; CREATE SCHEMA public"), 0);
    f->store = open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    cp_store_close(f->store);
    char p[160];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int64_t append(cp_store_t *s, const char *doc, const char *hash, int64_t if_match, int expect_rc)
{
    cp_append_t a = {.author = "ops", .message = "why", .kind = CP_KIND_APPLY, .document = doc, .hash = hash, .if_match = if_match};
    int64_t v = -1;
    assert_int_equal(cp_store_append(s, &a, &v), expect_rc);
    return v;
}

static void test_open_migrates(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(cp_store_schema_version(f->store), 5);
    assert_int_equal(cp_store_active_version(f->store), 0);
    cp_version_t v;
    assert_int_equal(cp_store_get_version(f->store, 0, &v), CP_STORE_NOT_FOUND);

    assert_int_equal(db_int(f, "SELECT count(*) FROM schema_migrations"), 5);
    if (pg_url != NULL) {
        assert_string_equal(cp_store_kind(f->store), "postgresql");
        cp_store_close(f->store);
        f->store = open_store(f);
        assert_int_equal(cp_store_schema_version(f->store), 5);
        assert_int_equal(db_int(f, "SELECT count(*) FROM schema_migrations"), 5);
        return;
    }
    assert_string_equal(cp_store_kind(f->store), "sqlite");
    /* the pragmas a second connection can see */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM schema_migrations", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 5);
    sqlite3_finalize(st);
    sqlite3_close(db);

    struct stat st_file;
    assert_int_equal(stat(f->path, &st_file), 0);
    assert_int_equal(st_file.st_mode & 0777, 0600);

    /* reopening applies nothing twice */
    cp_store_close(f->store);
    f->store = open_store(f);
    assert_int_equal(cp_store_schema_version(f->store), 5);
}

static void test_append_and_read(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(append(f->store, "{\"a\":1}", H1, -1, CP_STORE_CREATED), 1);
    assert_int_equal(append(f->store, "{\"a\":2}", H2, 1, CP_STORE_CREATED), 2);
    assert_int_equal(cp_store_active_version(f->store), 2);
    assert_string_equal(cp_store_active_hash(f->store), H2);

    cp_version_t v;
    assert_int_equal(cp_store_get_version(f->store, 1, &v), CP_STORE_OK);
    assert_int_equal(v.version, 1);
    assert_string_equal(v.document, "{\"a\":1}");
    assert_string_equal(v.hash, H1);
    assert_string_equal(v.author, "ops");
    assert_string_equal(v.message, "why");
    assert_int_equal(v.kind, CP_KIND_APPLY);
    assert_int_equal(v.source_version, 0);
    assert_true(v.created_ms > 0);
    cp_version_dispose(&v);
    assert_int_equal(cp_store_get_version(f->store, 3, &v), CP_STORE_NOT_FOUND);

    /* survives a reopen */
    cp_store_close(f->store);
    f->store = open_store(f);
    assert_int_equal(cp_store_active_version(f->store), 2);
    assert_string_equal(cp_store_active_hash(f->store), H2);
}

static void test_identical_and_if_match(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(append(f->store, "{}", H1, 1, CP_STORE_CONFLICT), -1); /* empty store: 1 is not active */
    assert_int_equal(append(f->store, "{}", H1, 0, CP_STORE_CREATED), 1);   /* 0 = "only when empty" */
    assert_int_equal(append(f->store, "{}", H1, -1, CP_STORE_UNCHANGED), 1);
    assert_int_equal(append(f->store, "{}", H1, 0, CP_STORE_CONFLICT), -1);
    assert_int_equal(cp_store_count_versions(f->store), 1);
    /* two writers with the same precondition: exactly one wins */
    assert_int_equal(append(f->store, "{\"x\":1}", H2, 1, CP_STORE_CREATED), 2);
    assert_int_equal(append(f->store, "{\"x\":2}", H3, 1, CP_STORE_CONFLICT), -1);
    assert_int_equal(cp_store_active_version(f->store), 2);
    /* a rollback to 1's document is a new version */
    cp_append_t a = {.author = "ops", .kind = CP_KIND_ROLLBACK, .source_version = 1, .document = "{}", .hash = H1, .if_match = -1};
    int64_t v;
    assert_int_equal(cp_store_append(f->store, &a, &v), CP_STORE_CREATED);
    assert_int_equal(v, 3);
    cp_version_t got;
    assert_int_equal(cp_store_get_version(f->store, 3, &got), CP_STORE_OK);
    assert_int_equal(got.kind, CP_KIND_ROLLBACK);
    assert_int_equal(got.source_version, 1);
    assert_string_equal(got.message, "");
    cp_version_dispose(&got);
}

static void test_list_versions_paged(void **state)
{
    fixture_t *f = *state;
    char hash[65], doc[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(hash, sizeof(hash), "%064d", i);
        snprintf(doc, sizeof(doc), "{\"i\":%d}", i);
        append(f->store, doc, hash, -1, CP_STORE_CREATED);
    }
    json_t *page = cp_store_list_versions(f->store, 0, 2, NULL);
    assert_int_equal(json_array_size(page), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(page, 0), "version")), 5);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(page, 1), "version")), 4);
    assert_null(json_object_get(json_array_get(page, 0), "document"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(page, 0), "kind")), "apply");
    json_decref(page);
    page = cp_store_list_versions(f->store, 4, 10, NULL);
    assert_int_equal(json_array_size(page), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(page, 0), "version")), 3);
    json_decref(page);
}

static void test_append_only(void **state)
{
    fixture_t *f = *state;
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    assert_int_equal(db_exec(f, "UPDATE versions SET message = 'x'"), -1);
    assert_int_equal(db_exec(f, "DELETE FROM versions"), -1);
    assert_int_equal(db_exec(f, "DELETE FROM events"), -1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM versions"), 1);
    assert_int_equal(cp_store_count_versions(f->store), 1);
}

static void test_tags(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(cp_store_set_tag(f->store, "stable", 1, "ops", NULL), CP_STORE_NOT_FOUND);
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    append(f->store, "{\"a\":1}", H2, -1, CP_STORE_CREATED);
    assert_int_equal(cp_store_set_tag(f->store, "stable", 1, "ops", "known good"), CP_STORE_OK);
    int64_t v = 0;
    assert_int_equal(cp_store_get_tag(f->store, "stable", &v), CP_STORE_OK);
    assert_int_equal(v, 1);
    assert_int_equal(cp_store_set_tag(f->store, "stable", 2, "ops", NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_tag(f->store, "stable", &v), CP_STORE_OK);
    assert_int_equal(v, 2);
    assert_int_equal(cp_store_get_tag(f->store, "nope", &v), CP_STORE_NOT_FOUND);
    int rc;
    json_t *t = cp_store_tag_json(f->store, "stable", &rc);
    assert_int_equal(rc, CP_STORE_OK);
    assert_int_equal(json_integer_value(json_object_get(t, "version")), 2);
    assert_int_equal(json_array_size(json_object_get(t, "history")), 2);
    json_decref(t);
    assert_null(cp_store_tag_json(f->store, "nope", &rc));
    assert_int_equal(rc, CP_STORE_NOT_FOUND);
    json_t *all = cp_store_list_tags(f->store);
    assert_int_equal(json_array_size(all), 1);
    json_decref(all);
    json_t *ev = cp_store_list_events(f->store, 0, 10, NULL);
    assert_int_equal(json_array_size(ev), 4); /* 2 versions, 2 tag moves */
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "action")), "tag");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 3), "message")), "why");
    json_decref(ev);

    /* deleting a tag appends a row and an event; the rows before stay (the triggers still hold) */
    assert_int_equal(cp_store_delete_tag(f->store, "nope", "ops", NULL, &v), CP_STORE_NOT_FOUND);
    v = 0;
    assert_int_equal(cp_store_delete_tag(f->store, "stable", "ops", "retired", &v), CP_STORE_OK);
    assert_int_equal(v, 2);
    assert_int_equal(cp_store_get_tag(f->store, "stable", &v), CP_STORE_NOT_FOUND);
    assert_null(cp_store_tag_json(f->store, "stable", &rc));
    assert_int_equal(rc, CP_STORE_NOT_FOUND);
    assert_int_equal(cp_store_delete_tag(f->store, "stable", "ops", NULL, NULL), CP_STORE_NOT_FOUND);
    all = cp_store_list_tags(f->store);
    assert_int_equal(json_array_size(all), 0);
    json_decref(all);
    ev = cp_store_list_events(f->store, 0, 10, NULL);
    assert_int_equal(json_array_size(ev), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "action")), "tag_delete");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "message")), "stable: retired");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "version")), 2);
    json_decref(ev);
    /* set again: the history keeps the deletion */
    assert_int_equal(cp_store_set_tag(f->store, "stable", 1, "ops", NULL), CP_STORE_OK);
    t = cp_store_tag_json(f->store, "stable", &rc);
    assert_int_equal(rc, CP_STORE_OK);
    assert_int_equal(json_integer_value(json_object_get(t, "version")), 1);
    json_t *hist = json_object_get(t, "history");
    assert_int_equal(json_array_size(hist), 4);
    assert_true(json_is_true(json_object_get(json_array_get(hist, 1), "deleted")));
    assert_null(json_object_get(json_array_get(hist, 0), "deleted"));
    json_decref(t);
    /* and the tags table is still append-only underneath */
    assert_int_equal(db_exec(f, "DELETE FROM tags"), -1);
    assert_int_equal(db_exec(f, "UPDATE tags SET deleted = 0"), -1);
}

static void test_forget_dataplane_and_drift_state(void **state)
{
    fixture_t *f = *state;
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    assert_int_equal(cp_store_forget_dataplane(f->store, "dp-1", "ops"), CP_STORE_NOT_FOUND);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 1000, 1, 1, NULL, NULL, NULL, H2, NULL), CP_STORE_OK);
    cp_dataplane_t dp;
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_string_equal(dp.reported_hash, H2);
    /* drifted wins over synced while it is connected, not once it is disconnected */
    assert_int_equal(cp_dp_state(&dp, 1, 1000, 30000, 0, 1), CP_DP_DRIFTED);
    assert_int_equal(cp_dp_state(&dp, 1, 1000, 30000, 0, 0), CP_DP_SYNCED);
    assert_int_equal(cp_dp_state(&dp, 1, 40000, 30000, 0, 1), CP_DP_DISCONNECTED);
    cp_dataplane_dispose(&dp);
    /* a report without a hash keeps the last one */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 1100, 1, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_string_equal(dp.reported_hash, H2);
    cp_dataplane_dispose(&dp);
    assert_int_equal(cp_store_forget_dataplane(f->store, "dp-1", "ops"), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_NOT_FOUND);
    json_t *ev = cp_store_list_events(f->store, 0, 10, NULL);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "action")), "forget");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "actor")), "ops");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "message")), "dp-1");
    json_decref(ev);
    assert_int_equal(cp_store_forget_dataplane(f->store, "dp-1", "ops"), CP_STORE_NOT_FOUND);
}

static void test_dataplanes(void **state)
{
    fixture_t *f = *state;
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    append(f->store, "{\"a\":1}", H2, -1, CP_STORE_CREATED);
    cp_dataplane_t dp;
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_NOT_FOUND);
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-1", 1000, 2), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.delivered_version, 2);
    assert_int_equal(cp_dp_state(&dp, 2, 1000, 30000, 0, 0), CP_DP_APPLYING);
    cp_dataplane_dispose(&dp);

    json_t *labels = json_pack("{ss}", "region", "eu");
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 2000, 2, 0, "ca_file: cannot read", labels, NULL, NULL, NULL),
                     CP_STORE_OK);
    json_decref(labels);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.rejected_version, 2);
    assert_string_equal(dp.error, "ca_file: cannot read");
    assert_string_equal(json_string_value(json_object_get(dp.labels, "region")), "eu");
    assert_int_equal(cp_dp_state(&dp, 2, 2000, 30000, 0, 0), CP_DP_REJECTED);
    cp_dataplane_dispose(&dp);

    /* the same NACK again is a heartbeat: no second event */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 3000, 2, 0, "ca_file: cannot read", NULL, NULL, NULL, NULL),
                     CP_STORE_OK);
    json_t *ev = cp_store_list_events(f->store, 0, 100, NULL);
    assert_int_equal(json_array_size(ev), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "action")), "nack");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "actor")), "dp-1");
    json_decref(ev);

    json_t *stats = json_pack("{si}", "requests", 10);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 4000, 1, 1, NULL, NULL, stats, NULL, NULL), CP_STORE_OK);
    json_decref(stats);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.applied_version, 1);
    /* re-ACKing the version it still runs does not hide the NACK of the newer one */
    assert_int_equal(dp.rejected_version, 2);
    assert_string_equal(dp.error, "ca_file: cannot read");
    assert_string_equal(json_string_value(json_object_get(dp.labels, "region")), "eu"); /* kept */
    assert_int_equal(json_integer_value(json_object_get(dp.stats, "requests")), 10);
    assert_int_equal(cp_dp_state(&dp, 2, 4000, 30000, 0, 0), CP_DP_REJECTED);
    assert_int_equal(cp_dp_state(&dp, 3, 4000, 30000, 0, 0), CP_DP_STALE);
    assert_int_equal(cp_dp_state(&dp, 1, 4000, 30000, 0, 0), CP_DP_SYNCED);
    assert_int_equal(cp_dp_state(&dp, 1, 40000, 30000, 0, 0), CP_DP_DISCONNECTED);
    assert_int_equal(cp_dp_state(&dp, 1, 40000, 30000, 1, 0), CP_DP_SYNCED); /* an open poll is alive */
    cp_dataplane_dispose(&dp);
    ev = cp_store_list_events(f->store, 0, 100, NULL);
    assert_int_equal(json_array_size(ev), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "action")), "ack");
    json_decref(ev);
    /* an ACK of the rejected version (the operator fixed the file) clears it */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 4500, 2, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.rejected_version, 0);
    assert_string_equal(dp.error, "");
    assert_int_equal(cp_dp_state(&dp, 2, 4500, 30000, 0, 0), CP_DP_SYNCED);
    cp_dataplane_dispose(&dp);

    cp_dataplane_t *all;
    size_t n;
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-0", 5000, 0), CP_STORE_OK);
    assert_int_equal(cp_store_list_dataplanes(f->store, NULL, 0, &all, &n), CP_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].id, "dp-0");
    assert_int_equal(all[0].delivered_version, 0);
    cp_dataplanes_free(all, n);
    /* paged by id */
    assert_int_equal(cp_store_list_dataplanes(f->store, NULL, 1, &all, &n), CP_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(all[0].id, "dp-0");
    cp_dataplanes_free(all, n);
    assert_int_equal(cp_store_list_dataplanes(f->store, "dp-0", 1, &all, &n), CP_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(all[0].id, "dp-1");
    cp_dataplanes_free(all, n);
    assert_int_equal(cp_store_list_dataplanes(f->store, "dp-1", 1, &all, &n), CP_STORE_OK);
    assert_int_equal(n, 0);
    cp_dataplanes_free(all, n);
}

/* Review item 8: an older ACK arriving after a newer one (a late heartbeat) does not move
 * applied_version back; a NACKed version handed out again for one retry after the dataplane
 * re-reported (it restarted) shows applying, and rejected again once NACKed. */
static void test_dataplane_late_ack_and_retry(void **state)
{
    fixture_t *f = *state;
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    append(f->store, "{\"a\":1}", H2, -1, CP_STORE_CREATED);
    cp_dataplane_t dp;
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 1000, 2, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 1100, 1, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.applied_version, 2);
    assert_int_equal(cp_dp_state(&dp, 2, 1100, 30000, 0, 0), CP_DP_SYNCED);
    cp_dataplane_dispose(&dp);
    json_t *ev = cp_store_list_events(f->store, 0, 100, NULL);
    assert_int_equal(json_array_size(ev), 3); /* two versions, one ack: the late one is a heartbeat */
    json_decref(ev);

    append(f->store, "{\"a\":2}", H3, -1, CP_STORE_CREATED);
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-1", 2000, 3), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 2100, 3, 0, "bad", NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(cp_dp_state(&dp, 3, 2100, 30000, 0, 0), CP_DP_REJECTED);
    cp_dataplane_dispose(&dp);
    /* restarted: re-ACKs what it runs (still rejected), then is handed 3 again: applying */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 3000, 2, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(cp_dp_state(&dp, 3, 3000, 30000, 0, 0), CP_DP_REJECTED);
    cp_dataplane_dispose(&dp);
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-1", 3100, 3), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(cp_dp_state(&dp, 3, 3100, 30000, 0, 0), CP_DP_APPLYING);
    assert_int_equal(dp.rejected_version, 3); /* still shown with its error */
    cp_dataplane_dispose(&dp);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 3200, 3, 0, "bad", NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(cp_dp_state(&dp, 3, 3200, 30000, 0, 0), CP_DP_REJECTED);
    cp_dataplane_dispose(&dp);

    /* a parked poll answered later (now_ms 0) records the delivery, not a sighting */
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-1", 0, 3), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.last_seen_ms, 3200);
    cp_dataplane_dispose(&dp);
}

/* Issue 16: a heartbeat built before the dataplane applied a new version lands after its ACK: its
 * older version and hash are not what the dataplane runs, and do not replace them (it would show
 * drifted until its next heartbeat). */
static void test_dataplane_late_heartbeat_keeps_hash(void **state)
{
    fixture_t *f = *state;
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    append(f->store, "{\"a\":1}", H2, -1, CP_STORE_CREATED);
    cp_dataplane_t dp;
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 1000, 1, 1, NULL, NULL, NULL, H1, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 2000, 2, 1, NULL, NULL, NULL, H2, NULL), CP_STORE_OK);
    /* the late heartbeat, built while it still ran version 1 */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 2100, 1, 1, NULL, NULL, NULL, H1, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.applied_version, 2);
    assert_int_equal(dp.reported_version, 2);
    assert_string_equal(dp.reported_hash, H2);
    cp_dataplane_dispose(&dp);
    /* the next heartbeat, of what it runs, is stored as ever */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 7000, 2, 1, NULL, NULL, NULL, H2, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.reported_version, 2);
    assert_string_equal(dp.reported_hash, H2);
    cp_dataplane_dispose(&dp);
}

/* Reports stored together (cp_store_dataplane_reports): each by the single report's rules, in
 * order, with one event per changed outcome and none for a repeated one. */
static void test_dataplane_reports_batch(void **state)
{
    fixture_t *f = *state;
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    append(f->store, "{\"a\":1}", H2, -1, CP_STORE_CREATED);
    cp_dp_report_t r[] = {
        {"dp-a", 1000, 2, 1, NULL, NULL, NULL, H2, NULL}, {"dp-b", 1001, 2, 0, "bad", NULL, NULL, NULL, NULL},
        {"dp-a", 1002, 2, 1, NULL, NULL, NULL, H2, NULL}, /* a heartbeat: no event */
        {"dp-c", 1003, 1, 1, NULL, NULL, NULL, H1, NULL}, {"dp-b", 1004, 2, 1, NULL, NULL, NULL, H2, NULL}, /* the retry applied */
    };
    assert_int_equal(cp_store_dataplane_reports(f->store, r, 5), CP_STORE_OK);
    json_t *ev = cp_store_list_events(f->store, 0, 100, NULL);
    /* newest first: two versions, then ack dp-a, nack dp-b, ack dp-c, ack dp-b */
    assert_int_equal(json_array_size(ev), 6);
    const char *want[][2] = {{"ack", "dp-b"}, {"ack", "dp-c"}, {"nack", "dp-b"}, {"ack", "dp-a"}};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(json_string_value(json_object_get(json_array_get(ev, i), "action")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(json_array_get(ev, i), "actor")), want[i][1]);
    }
    json_decref(ev);
    cp_dataplane_t dp;
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-b", &dp), CP_STORE_OK);
    assert_int_equal(dp.applied_version, 2);
    assert_int_equal(dp.rejected_version, 0);
    assert_int_equal(cp_dp_state(&dp, 2, 1004, 30000, 0, 0), CP_DP_SYNCED);
    cp_dataplane_dispose(&dp);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-c", &dp), CP_STORE_OK);
    assert_int_equal(dp.applied_version, 1);
    assert_string_equal(dp.reported_hash, H1);
    cp_dataplane_dispose(&dp);
    assert_int_equal(cp_store_dataplane_reports(f->store, r, 0), CP_STORE_OK);
}

/* Polls that arrive together: their states read in one call (an id asked twice, an unknown one),
 * their last seen and labels written in one (labels kept where none were sent; quotes and
 * backslashes in a label survive the batch's encoding). */
static void test_dataplane_polls_batch(void **state)
{
    fixture_t *f = *state;
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-a", 1000, 1), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-b", 1000, 0), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-b", 1100, 1, 0, "bad", NULL, NULL, NULL, NULL), CP_STORE_OK);
    json_t *la = json_pack("{ss}", "zone", "a\"b\\c");
    cp_dp_poll_t polls[] = {{"dp-a", la}, {"dp-b", NULL}, {"dp-a", NULL}};
    assert_int_equal(cp_store_dataplanes_polled(f->store, polls, 3, 5000), CP_STORE_OK);
    const char *ids[] = {"dp-b", "nobody", "dp-a", "dp-b"};
    cp_dataplane_t dps[4];
    int found[4] = {1, 1, 1, 1};
    assert_int_equal(cp_store_get_dataplanes(f->store, ids, 4, 0, dps, found), CP_STORE_OK);
    assert_true(found[0] && !found[1] && found[2] && found[3]);
    assert_string_equal(dps[0].id, "dp-b");
    assert_int_equal(dps[0].rejected_version, 1);
    assert_int_equal(dps[0].reported_version, 1);
    assert_int_equal(dps[0].last_seen_ms, 5000);
    assert_string_equal(dps[3].id, "dp-b");
    assert_string_equal(dps[2].id, "dp-a");
    assert_int_equal(dps[2].last_seen_ms, 5000);
    assert_int_equal(dps[2].delivered_version, 1);
    assert_true(json_equal(dps[2].labels, la));
    for (size_t i = 0; i < 4; i++)
        if (found[i])
            cp_dataplane_dispose(&dps[i]);
    /* narrow: the state without labels */
    assert_int_equal(cp_store_get_dataplanes(f->store, ids + 2, 1, 1, dps, found), CP_STORE_OK);
    assert_true(found[0]);
    assert_int_equal(json_object_size(dps[0].labels), 0);
    assert_int_equal(dps[0].delivered_version, 1);
    cp_dataplane_dispose(&dps[0]);
    json_decref(la);
    assert_int_equal(cp_store_get_dataplanes(f->store, ids, 0, 0, dps, found), CP_STORE_OK);
    assert_int_equal(cp_store_dataplanes_polled(f->store, polls, 0, 6000), CP_STORE_OK);
}

/* Review item 7: no new dataplane beyond the limit; known ones still report. */
static void test_dataplane_admit(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(cp_store_dataplane_admit(f->store, "a", 2), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_seen(f->store, "a", 1000, 0), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_seen(f->store, "b", 1000, 0), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_admit(f->store, "a", 2), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_admit(f->store, "c", 2), CP_STORE_LIMIT);
    assert_int_equal(cp_store_dataplane_admit(f->store, "c", 3), CP_STORE_OK);
}

/* A heartbeat's traffic is stored with the dataplane in the same write as its stats, with the time
 * it was stored and a count of such reports; cp_store_traffic_since lists every dataplane's latest
 * report stored after a time, oldest first, through an index on that time. */
static const char *traffic_doc(int64_t version, int requests, int errors)
{
    static char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"services\":{\"eth\":{\"errors\":%d,\"latency_ms_buckets\":[%d,0,0,0,0,0,0,0,0,0,0,0,0,0],\"requests\":%d},"
             "\"poly\":{\"errors\":0,\"latency_ms_buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"requests\":0}},\"version\":%lld}",
             errors, requests, requests, (long long)version);
    return buf;
}

static void test_traffic_reports(void **state)
{
    fixture_t *f = *state;
    int64_t t0 = cp_now_ms();
    cp_traffic_report_t *r;
    size_t n;
    assert_int_equal(cp_store_traffic_since(f->store, 0, &r, &n), CP_STORE_OK);
    assert_int_equal(n, 0);
    cp_traffic_reports_free(r, n);
    /* a report without traffic stores none */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", t0, 1, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    cp_dataplane_t dp;
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_null(dp.traffic);
    assert_int_equal(dp.traffic_ms, 0);
    cp_dataplane_dispose(&dp);
    assert_int_equal(cp_store_traffic_since(f->store, 0, &r, &n), CP_STORE_OK);
    assert_int_equal(n, 0);
    cp_traffic_reports_free(r, n);

    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", t0, 1, 1, NULL, NULL, NULL, NULL, traffic_doc(1, 100, 3)),
                     CP_STORE_OK);
    usleep(3000);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-2", cp_now_ms(), 1, 1, NULL, NULL, NULL, NULL, traffic_doc(1, 40, 0)),
                     CP_STORE_OK);
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_non_null(dp.traffic);
    assert_int_equal(json_integer_value(json_object_get(dp.traffic, "version")), 1);
    /* stored when it arrived (PostgreSQL: by the database's clock, a few ms from ours) */
    assert_true(dp.traffic_ms >= t0 - 5000 && dp.traffic_ms <= cp_now_ms() + 5000);
    int64_t first_ms = dp.traffic_ms;
    cp_dataplane_dispose(&dp);

    assert_int_equal(cp_store_traffic_since(f->store, 0, &r, &n), CP_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].id, "dp-1"); /* oldest first */
    assert_string_equal(r[1].id, "dp-2");
    assert_true(r[0].at_ms <= r[1].at_ms);
    assert_int_equal(r[0].at_ms, first_ms);
    assert_int_equal(r[0].version, 1);
    assert_int_equal(r[0].seq, 1);
    assert_int_equal(r[0].num_svcs, 2);
    assert_string_equal(r[0].svcs[0].name, "eth");
    assert_int_equal(r[0].svcs[0].t.requests, 100);
    assert_int_equal(r[0].svcs[0].t.errors, 3);
    assert_int_equal(r[0].svcs[0].t.buckets[0], 100);
    assert_string_equal(r[0].svcs[1].name, "poly");
    assert_int_equal(r[1].svcs[0].t.requests, 40);
    int64_t newest = r[1].at_ms;
    cp_traffic_reports_free(r, n);

    /* nothing stored after the newest read */
    assert_int_equal(cp_store_traffic_since(f->store, newest, &r, &n), CP_STORE_OK);
    assert_int_equal(n, 0);
    cp_traffic_reports_free(r, n);
    /* a heartbeat without traffic leaves the latest traffic (and its time) alone */
    usleep(3000);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", cp_now_ms(), 1, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_traffic_since(f->store, newest, &r, &n), CP_STORE_OK);
    assert_int_equal(n, 0);
    cp_traffic_reports_free(r, n);
    /* a new one is listed alone, the latest of its dataplane, counted */
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", cp_now_ms(), 2, 1, NULL, NULL, NULL, NULL, traffic_doc(2, 7, 1)),
                     CP_STORE_OK);
    assert_int_equal(cp_store_traffic_since(f->store, newest, &r, &n), CP_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].id, "dp-1");
    assert_int_equal(r[0].version, 2);
    assert_int_equal(r[0].seq, 2);
    assert_true(r[0].at_ms > newest);
    assert_int_equal(r[0].svcs[0].t.requests, 7);
    cp_traffic_reports_free(r, n);
    /* listed through an index on the time (1,000s of dataplanes are read often) */
    assert_int_equal(db_int(f, pg_url != NULL ? "SELECT count(*) FROM pg_indexes WHERE indexname = 'dataplanes_by_traffic_ms'"
                                              : "SELECT count(*) FROM sqlite_master WHERE name = 'dataplanes_by_traffic_ms'"),
                     1);
    /* a forgotten dataplane's report goes with it */
    assert_int_equal(cp_store_forget_dataplane(f->store, "dp-2", "ops"), CP_STORE_OK);
    assert_int_equal(cp_store_traffic_since(f->store, 0, &r, &n), CP_STORE_OK);
    assert_int_equal(n, 1);
    cp_traffic_reports_free(r, n);
}

/* Review item 5: every event (history) is written at synchronous=FULL, including the ACK/NACK
 * event of a status report, whose live row is written at NORMAL. A trace on the store's own
 * connection (installed through an auto extension) follows the pragma. */
static int trace_sync_full = 1, trace_events_at_normal, trace_events;

static int trace_cb(unsigned type, void *ctx, void *p, void *x)
{
    (void)ctx;
    (void)p;
    const char *sql = x;
    if (type != SQLITE_TRACE_STMT || sql == NULL)
        return 0;
    if (strstr(sql, "synchronous=NORMAL") != NULL)
        trace_sync_full = 0;
    else if (strstr(sql, "synchronous=FULL") != NULL)
        trace_sync_full = 1;
    if (strstr(sql, "INSERT INTO events") != NULL) {
        trace_events++;
        trace_events_at_normal += !trace_sync_full;
    }
    return 0;
}

static int trace_entry(sqlite3 *db, char **err, const void *api)
{
    (void)err;
    (void)api;
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT, trace_cb, NULL);
    return SQLITE_OK;
}

static void test_events_written_at_full(void **state)
{
    fixture_t *f = *state;
    if (pg_url != NULL)
        skip(); /* sqlite's pragmas; PostgreSQL: synchronous_commit is set per transaction */
    cp_store_close(f->store);
    assert_int_equal(sqlite3_auto_extension((void (*)(void))trace_entry), SQLITE_OK);
    char err[256];
    f->store = cp_store_open(f->path, err, sizeof(err));
    assert_non_null(f->store);
    append(f->store, "{}", H1, -1, CP_STORE_CREATED);
    assert_int_equal(cp_store_dataplane_seen(f->store, "dp-1", 1000, 1), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 1100, 1, 0, "bad", NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_dataplane_report(f->store, "dp-1", 1200, 1, 1, NULL, NULL, NULL, NULL, NULL), CP_STORE_OK);
    assert_int_equal(cp_store_set_tag(f->store, "stable", 1, "ops", NULL), CP_STORE_OK);
    sqlite3_reset_auto_extension();
    assert_int_equal(trace_events, 4);
    assert_int_equal(trace_events_at_normal, 0);
    json_t *ev = cp_store_list_events(f->store, 0, 100, NULL);
    assert_int_equal(json_array_size(ev), 4);
    json_decref(ev);
}

static void test_state_names(void **state)
{
    assert_string_equal(cp_dp_state_name(CP_DP_SYNCED), "synced");
    assert_string_equal(cp_dp_state_name(CP_DP_APPLYING), "applying");
    assert_string_equal(cp_dp_state_name(CP_DP_REJECTED), "rejected");
    assert_string_equal(cp_dp_state_name(CP_DP_STALE), "stale");
    assert_string_equal(cp_dp_state_name(CP_DP_DISCONNECTED), "disconnected");
    assert_string_equal(cp_dp_state_name(CP_DP_DRIFTED), "drifted");
    char t[32];
    cp_format_time(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    cp_format_time(1795727087123, t);
    assert_string_equal(t, "2026-11-26T21:04:47.123Z");
}

static void test_refuses_newer_database(void **state)
{
    fixture_t *f = *state;
    cp_store_close(f->store);
    f->store = NULL;
    assert_int_equal(db_exec(f, "INSERT INTO schema_migrations VALUES (999, '999_future.sql', 0)"), 0);
    char err[256];
    assert_null(cp_store_open(pg_url != NULL ? pg_url : f->path, err, sizeof(err)));
    assert_non_null(strstr(err, "999"));
}

static void test_open_fails_cleanly(void **state)
{
    char err[256];
    assert_null(cp_store_open("/nonexistent-dir/x/cp.db", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent-dir/x/cp.db"));
}

/* --- two replicas on one PostgreSQL ------------------------------------------------------------ */

static void hash_of(int a, int b, char out[65])
{
    snprintf(out, 65, "%08x%08x%048d", (unsigned)a, (unsigned)b, 0);
}

/* max_dataplanes is exact across replicas: the count and the new row are one step, so the last free
 * place goes to one of two replicas, not both. */
static void test_pg_admit_across_replicas(void **state)
{
    fixture_t *f = *state;
    if (pg_url == NULL)
        skip();
    cp_store_t *b = open_store(f);
    assert_int_equal(cp_store_dataplane_admit(f->store, "x", 1), CP_STORE_OK);
    /* B admits after A, before A's dataplane wrote anything else: the place is taken */
    assert_int_equal(cp_store_dataplane_admit(b, "y", 1), CP_STORE_LIMIT);
    assert_int_equal(cp_store_dataplane_admit(b, "x", 1), CP_STORE_OK);
    assert_int_equal(db_int(f, "SELECT count(*) FROM dataplanes"), 1);
    cp_store_close(b);
}

static void test_pg_two_replicas(void **state)
{
    fixture_t *f = *state;
    if (pg_url == NULL)
        skip();
    cp_store_t *b = open_store(f);
    char h[65];
    hash_of(1, 1, h);
    assert_int_equal(append(f->store, "{\"r\":\"a\"}", h, -1, CP_STORE_CREATED), 1);
    /* B's cache says 0, the head inside its transaction says 1: B writes 2 */
    hash_of(2, 1, h);
    assert_int_equal(append(b, "{\"r\":\"b\"}", h, -1, CP_STORE_CREATED), 2);
    /* A's If-Match of 1 is stale: a conflict, and A's cache learns 2 */
    hash_of(1, 2, h);
    assert_int_equal(cp_store_active_version(f->store), 1);
    assert_int_equal(append(f->store, "{\"r\":\"a2\"}", h, 1, CP_STORE_CONFLICT), -1);
    assert_int_equal(cp_store_active_version(f->store), 2);
    /* the identical-document rule sees the other replica's version */
    hash_of(2, 1, h);
    assert_int_equal(append(f->store, "{\"r\":\"b\"}", h, -1, CP_STORE_UNCHANGED), 2);
    /* tags and dataplanes written on one are read on the other */
    assert_int_equal(cp_store_set_tag(b, "stable", 2, "ops", NULL), CP_STORE_OK);
    int64_t v = 0;
    assert_int_equal(cp_store_get_tag(f->store, "stable", &v), CP_STORE_OK);
    assert_int_equal(v, 2);
    assert_int_equal(cp_store_dataplane_seen(b, "dp-1", 1000, 2), CP_STORE_OK);
    cp_dataplane_t dp;
    assert_int_equal(cp_store_get_dataplane(f->store, "dp-1", &dp), CP_STORE_OK);
    assert_int_equal(dp.delivered_version, 2);
    cp_dataplane_dispose(&dp);
    cp_store_close(b);
}

static void test_pg_concurrent_writers(void **state)
{
    fixture_t *f = *state;
    if (pg_url == NULL)
        skip();
    enum { WRITERS = 4, EACH = 15 };
    pid_t kids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        kids[w] = fork();
        assert_true(kids[w] >= 0);
        if (kids[w] == 0) {
            char err[256], h[65], doc[64];
            cp_store_t *s = cp_store_open(pg_url, err, sizeof(err));
            int bad = s == NULL;
            for (int i = 0; !bad && i < EACH; i++) {
                hash_of(w + 10, i, h);
                snprintf(doc, sizeof(doc), "{\"w\":%d,\"i\":%d}", w, i);
                cp_append_t a = {.author = "w", .kind = CP_KIND_APPLY, .document = doc, .hash = h, .if_match = -1};
                int64_t v;
                bad = cp_store_append(s, &a, &v) != CP_STORE_CREATED;
            }
            cp_store_close(s);
            _exit(bad);
        }
    }
    for (int w = 0; w < WRITERS; w++) {
        int status;
        assert_int_equal(waitpid(kids[w], &status, 0), kids[w]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* every append made a version, numbered 1..N without a gap */
    assert_int_equal(db_int(f, "SELECT count(*) FROM versions"), WRITERS * EACH);
    assert_int_equal(db_int(f, "SELECT max(version) FROM versions"), WRITERS * EACH);
    assert_int_equal(db_int(f, "SELECT count(DISTINCT hash) FROM versions"), WRITERS * EACH);
    assert_int_equal(cp_store_refresh(f->store), CP_STORE_OK);
    assert_int_equal(cp_store_active_version(f->store), WRITERS * EACH);
}

static int changes_seen;
static void on_change(void *arg)
{
    (void)arg;
    changes_seen++;
}

static void test_pg_notify_wakes_the_other(void **state)
{
    fixture_t *f = *state;
    if (pg_url == NULL)
        skip();
    cp_store_t *b = open_store(f);
    changes_seen = 0;
    cp_store_set_change_hook(b, on_change, NULL);
    int fd = cp_store_listen_fd(b);
    assert_true(fd >= 0);
    char h[65];
    hash_of(3, 1, h);
    assert_int_equal(append(f->store, "{\"n\":1}", h, -1, CP_STORE_CREATED), 1);
    /* the socket becomes readable: no SQL polling on B */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int64_t deadline = cp_now_ms() + 5000;
    while (cp_store_active_version(b) != 1 && cp_now_ms() < deadline) {
        assert_true(poll(&pfd, 1, 1000) >= 0);
        cp_store_notified(b);
    }
    assert_int_equal(cp_store_active_version(b), 1);
    assert_string_equal(cp_store_active_hash(b), h);
    assert_int_equal(changes_seen, 1);
    /* B's own write notifies B too, which is no change to it */
    hash_of(3, 2, h);
    assert_int_equal(append(b, "{\"n\":2}", h, -1, CP_STORE_CREATED), 2);
    assert_true(poll(&pfd, 1, 2000) > 0);
    cp_store_notified(b);
    assert_int_equal(changes_seen, 1);
    cp_store_close(b);
}

static void test_pg_rollout_lease(void **state)
{
    fixture_t *f = *state;
    if (pg_url == NULL) {
        /* one process owns a sqlite file: always the holder */
        assert_int_equal(cp_store_lease(f->store), 1);
        return;
    }
    cp_store_t *b = open_store(f);
    assert_int_equal(cp_store_lease(f->store), 1);
    assert_int_equal(cp_store_lease(b), 0);
    assert_int_equal(cp_store_lease(f->store), 1);
    /* the holder goes away (its sessions end): the other takes the lease */
    cp_store_close(f->store);
    f->store = NULL;
    int64_t deadline = cp_now_ms() + 5000;
    int got = 0;
    while (!(got = cp_store_lease(b)) && cp_now_ms() < deadline)
        usleep(50000);
    assert_int_equal(got, 1);
    f->store = b;
}

static void test_pg_unreachable(void **state)
{
    (void)state;
    /* nothing listens on port 1: a clear error, not a crash, whichever suite runs */
    char err[256];
    assert_null(cp_store_open("postgres://postgres@127.0.0.1:1/pathway?connect_timeout=2", err, sizeof(err)));
    assert_non_null(strstr(err, "database unavailable"));
}

int main(void)
{
    pg_url = getenv("PW_TEST_STORE_URL");
    if (pg_url != NULL && pg_url[0] == '\0')
        pg_url = NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identical_and_if_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_versions_paged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataplanes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_dataplane_and_drift_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataplane_late_ack_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataplane_late_heartbeat_keeps_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataplane_reports_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataplane_polls_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataplane_admit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traffic_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_written_at_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_newer_database, setup, teardown),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_open_fails_cleanly),
        cmocka_unit_test_setup_teardown(test_pg_two_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_admit_across_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_notify_wakes_the_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_rollout_lease, setup, teardown),
        cmocka_unit_test(test_pg_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
