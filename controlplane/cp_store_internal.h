/*
 * What the store's files (cp_store.c, cp_store_dataplanes.c) share beyond cp_store.h: the store
 * itself and the statement helpers. Not for use outside the store.
 */
#ifndef PATHWAY_CP_STORE_INTERNAL_H
#define PATHWAY_CP_STORE_INTERNAL_H

#include <sqlite3.h>
#include "cp_store.h"

struct st_cp_store_t {
    sqlite3 *db;          /* the one connection */
    int64_t active;       /* newest version number, 0 = none (cache, see cp_store_active_version) */
    char active_hash[65]; /* its hash */
    int schema_version;   /* migrations applied */
    int sync_full;        /* synchronous=FULL is known to be in force; history writes require it */
    char errmsg[256];     /* last failure */
};

/* Runs `sql` (no results); CP_STORE_OK, or CP_STORE_ERROR with the reason recorded and logged. */
int cp_store_exec(cp_store_t *store, const char *sql);
/* A prepared statement the caller finalizes, or NULL with the reason recorded (cp_store_fail). */
sqlite3_stmt *cp_store_prepare(cp_store_t *store, const char *sql);
/* Column `col` of the current row as a heap string ("" for NULL) the caller frees; NULL when out of memory. */
char *cp_store_column_strdup(sqlite3_stmt *st, int col);

#endif
