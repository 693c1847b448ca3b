/*
 * The SQL migrations of schema/sql/ (sqlite) and schema/sql/pg/ (PostgreSQL), compiled into the binary by controlplane/CMakeLists.txt
 * (cp_migrations.c is generated), so pathway-control does not depend on its working directory.
 */
#ifndef PATHWAY_CP_MIGRATIONS_H
#define PATHWAY_CP_MIGRATIONS_H

#include <stddef.h>

typedef struct st_cp_migration_t {
    int number;       /* NNN of NNN_name.sql; applied in increasing order */
    const char *name; /* file name */
    const char *sql;  /* its text */
} cp_migration_t;

extern const cp_migration_t cp_migrations[];
extern const size_t cp_num_migrations;
/* schema/sql/pg/: the same list for PostgreSQL */
extern const cp_migration_t cp_pg_migrations[];
extern const size_t cp_pg_migrations_count;

#endif
