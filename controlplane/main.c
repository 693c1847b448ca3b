/*
 * pathway-control: the control plane's REST API over sqlite (DESIGN §4).
 *
 *   pathway-control -c examples/controlplane.yaml [--seed FILE] [--listen ADDR] [--database FILE]
 *                   [--log-level LEVEL]
 *   pathway-control --routes      (the routes served, one "METHOD /path" per line)
 *   pathway-control (-c CONFIG | --database FILE) backup DEST   (online copy of the database)
 *   pathway-control --version
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cp_config.h"
#include "cp_server.h"
#include "cp_store.h"
#include "pw_log.h"
#include "pw_version.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: pathway-control -c CONFIG [--seed DOCUMENT] [--listen HOST:PORT] [--database FILE|URL]\n"
                "                       [--log-level debug|info|warn|error|off]\n"
                "       pathway-control (-c CONFIG | --database FILE) backup DEST\n"
                "       pathway-control --routes | --version\n"
                "  -c, --config FILE     the control plane's config (listen, database, max_body, tokens)\n"
                "      --seed FILE       store FILE (a fleet document) as version 1 when the database is empty\n"
                "      --listen ADDR     overrides listen of the config\n"
                "      --database FILE|URL  overrides database of the config: a sqlite file, or\n"
                "                        postgres://user@host:5432/db for PostgreSQL (several replicas)\n"
                "      --log-level L     overrides log_level of the config\n"
                "      --routes          print the routes served and exit\n"
                "      --version         print the version and exit\n"
                "  backup DEST           copy the database to DEST with sqlite's online backup, also while a\n"
                "                        pathway-control serves from it (restore: stop it, put DEST in its place)\n");
}

static void print_errors(const char *what, const cfg_errors_t *errs)
{
    for (size_t i = 0; i < errs->size; i++)
        fprintf(stderr, "pathway-control: %s: %s\n", what, errs->entries[i]);
}

/* `backup DEST`: the database named by --database, else by the config. */
static int backup(const char *config_path, const char *database, int nargs, char **args)
{
    if (nargs != 1 || args[0][0] == '\0') {
        fprintf(stderr, "pathway-control: backup: give the file to write (pathway-control -c CONFIG backup FILE)\n");
        return 2;
    }
    cp_config_t *conf = NULL;
    if (database == NULL) {
        if (config_path == NULL) {
            fprintf(stderr, "pathway-control: backup: which database? give -c CONFIG or --database FILE\n");
            return 2;
        }
        cfg_errors_t errs;
        cfg_errors_init(&errs);
        conf = cp_config_load(config_path, &errs);
        if (conf == NULL) {
            print_errors(config_path, &errs);
            cfg_errors_dispose(&errs);
            return 1;
        }
        cfg_errors_dispose(&errs);
        database = conf->database;
    }
    char err[512];
    int rc = cp_store_backup(database, args[0], err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "pathway-control: backup: %s\n", err);
    else
        printf("pathway-control: %s backed up to %s\n", database, args[0]);
    cp_config_destroy(conf);
    return rc == 0 ? 0 : 1;
}

/* The store; a PostgreSQL that cannot be reached yet (a replica starting while the database fails
 * over, or before it is up) is tried again every second until it answers or a signal stops us,
 * saying so every 10 s: the replica starts serving as soon as the database does. Any other error
 * (a bad URL, a database written by a newer binary, a sqlite file that cannot be opened) ends the
 * start at once. */
static cp_store_t *open_store(const char *database, char *err, size_t errlen)
{
    static const char unavailable[] = "database unavailable: ";
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned tries = 0;; tries++) {
        cp_store_t *store = cp_store_open(database, err, errlen);
        if (store != NULL || !cp_store_is_url(database) || strncmp(err, unavailable, sizeof(unavailable) - 1) != 0)
            return store;
        if (tries % 10 == 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            PW_WARN("%s; trying again every second (%lld s so far)", err, (long long)(now.tv_sec - start.tv_sec));
        }
        struct timespec second = {1, 0};
        while (!stop_requested && nanosleep(&second, &second) != 0)
            ;
        if (stop_requested)
            return NULL;
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"log-level", required_argument, NULL, 'l'},
                                             {"routes", no_argument, NULL, 'r'},
                                             {"listen", required_argument, NULL, 'L'},
                                             {"database", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *seed_path = NULL, *log_level = NULL, *listen = NULL, *database = NULL;
    int opt;
    pw_log_set_ident("pathway-control");
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            seed_path = optarg;
            break;
        case 'l':
            log_level = optarg;
            break;
        case 'L':
            listen = optarg;
            break;
        case 'd':
            database = optarg;
            break;
        case 'r':
            for (size_t i = 0; i < cp_route_count(); i++)
                printf("%s %s\n", cp_route_method(i), cp_route_path(i));
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("pathway-control %s\n", PW_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc && strcmp(argv[optind], "backup") == 0)
        return backup(config_path, database, argc - optind - 1, argv + optind + 1);
    if (config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    cfg_errors_t errs;
    cfg_errors_init(&errs);
    cp_config_t *conf = cp_config_load(config_path, &errs);
    if (conf == NULL) {
        print_errors(config_path, &errs);
        cfg_errors_dispose(&errs);
        return 1;
    }
    pw_log_set_level((pw_log_level_t)conf->log_level);
    if (log_level != NULL) {
        int l = pw_log_level_from_name(log_level);
        if (l < 0) {
            fprintf(stderr, "pathway-control: --log-level: must be one of debug, info, warn, error, off\n");
            cp_config_destroy(conf);
            return 2;
        }
        pw_log_set_level((pw_log_level_t)l);
    }

    if (listen != NULL) {
        char *host;
        uint16_t port;
        const char *why = NULL;
        if (cp_parse_hostport(listen, &host, &port, &why) != 0) {
            fprintf(stderr, "pathway-control: --listen: %s\n", why);
            cp_config_destroy(conf);
            return 2;
        }
        free(conf->listen_host);
        conf->listen_host = host;
        conf->listen_port = port;
    }
    if (database != NULL) {
        char why[256];
        if (cp_store_is_url(database) && cp_store_check_url(database, why, sizeof(why)) != 0) {
            fprintf(stderr, "pathway-control: --database: %s\n", why);
            cp_config_destroy(conf);
            return 2;
        }
        char *copy = strdup(database);
        if (copy == NULL) {
            cp_config_destroy(conf);
            return 1;
        }
        free(conf->database);
        conf->database = copy;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    cp_store_t *store = open_store(conf->database, err, sizeof(err));
    if (store == NULL) {
        if (!stop_requested)
            fprintf(stderr, "pathway-control: database: %s\n", err);
        cp_config_destroy(conf);
        return stop_requested ? 0 : 1;
    }
    char shown[512];
    cp_store_describe(conf->database, shown, sizeof(shown));
    PW_INFO("database %s (%s): schema %d, active version %lld", shown, cp_store_kind(store), cp_store_schema_version(store),
            (long long)cp_store_active_version(store));

    if (seed_path != NULL) {
        int stored = 0;
        if (cp_seed(store, seed_path, &stored, &errs) != 0) {
            print_errors(seed_path, &errs);
            cfg_errors_dispose(&errs);
            cp_store_close(store);
            cp_config_destroy(conf);
            return 1;
        }
        if (stored)
            PW_INFO("seeded version 1 from %s", seed_path);
        else
            PW_INFO("--seed %s ignored: the database already has version %lld", seed_path,
                    (long long)cp_store_active_version(store));
    }
    cfg_errors_dispose(&errs);

    cp_server_t *srv = cp_server_create(conf, store, err, sizeof(err));
    if (srv == NULL) {
        fprintf(stderr, "pathway-control: %s\n", err);
        cp_store_close(store);
        cp_config_destroy(conf);
        return 1;
    }
    int rc = cp_server_run(srv, &stop_requested);
    cp_server_destroy(srv);
    cp_store_close(store);
    cp_config_destroy(conf);
    PW_INFO("stopped");
    return rc == 0 ? 0 : 1;
}
