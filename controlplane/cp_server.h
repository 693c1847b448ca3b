/*
 * cp_server: the REST API of pathway-control on one h2o event loop (DESIGN §4).
 *
 * One thread runs everything: sqlite calls are short (a write is one fsync), and long polls are
 * parked requests on a list ordered by deadline, answered when a version is stored or their wait
 * ends, so a poll costs a list entry, not a thread.
 */
#ifndef PATHWAY_CP_SERVER_H
#define PATHWAY_CP_SERVER_H

#include <signal.h>
#include <stddef.h>
#include "cfg.h"
#include "cp_config.h"
#include "cp_store.h"

typedef struct st_cp_server_t cp_server_t;

/* Binds the listener and sets up h2o. Borrows conf and store (they must outlive the server).
 * Returns NULL with a message in err. */
cp_server_t *cp_server_create(const cp_config_t *conf, cp_store_t *store, char *err, size_t errlen);

/* Serves until *stop becomes non-zero (set from a signal handler), then stops accepting, answers
 * parked long polls with 503 and returns 0. */
int cp_server_run(cp_server_t *srv, volatile sig_atomic_t *stop);

void cp_server_destroy(cp_server_t *srv);

/* The routes served, "METHOD /path/{param}" each (schema/openapi.yaml must describe the same set). */
size_t cp_route_count(void);
const char *cp_route_method(size_t i);
const char *cp_route_path(size_t i);

/* Validates a fleet document (a parsed tree; borrowed) and produces its canonical form (caller
 * frees) and hash. Returns 0, or -1 with every error in errs. */
int cp_document_prepare(json_t *tree, char **canonical, char hash[65], cfg_errors_t *errs);

/* --seed: stores the document in `path` as version 1 when the store is empty. Returns 0 when it
 * was stored or the store already had versions (*stored tells which), -1 with errors. */
int cp_seed(cp_store_t *store, const char *path, int *stored, cfg_errors_t *errs);

#endif
