/*
 * pw_process: the standard process_* figures (as Prometheus client libraries name them) of the
 * calling process, read from /proc, and their Prometheus text. Linux only.
 */
#ifndef PATHWAY_PW_PROCESS_H
#define PATHWAY_PW_PROCESS_H

#include <stdint.h>
#include "pw_buf.h"

typedef struct st_pw_process_t {
    int have_stat;             /* /proc/self/stat was read: the next four figures are set (else 0) */
    double cpu_seconds;        /* user + system CPU time, in seconds */
    uint64_t resident_bytes;   /* resident set size */
    uint64_t virtual_bytes;    /* virtual memory size */
    double start_time_seconds; /* unix time the process started; 0 when unknown (no btime in /proc/stat) */
    int have_open_fds;         /* /proc/self/fd could be listed (it cannot when the fd limit is reached) */
    unsigned open_fds;         /* file descriptors open, not counting the one used to count them */
    int have_max_fds;          /* getrlimit(RLIMIT_NOFILE) answered */
    uint64_t max_fds;          /* the soft limit on open file descriptors */
} pw_process_t;

/* Fills *out (every field; the ones that could not be read are 0 with their have_ flag 0). Returns
 * 0, or -1 when /proc/self/stat could not be read (have_stat is 0; the fd figures may still be set).
 * Costs a few small reads of /proc: for scrapes and admin calls, not the relay path. */
int pw_process_read(pw_process_t *out);

/* Appends the process_* families that *p has, each with its HELP and TYPE:
 * process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_start_time_seconds (only when known), process_open_fds, process_max_fds. */
void pw_process_metrics(pw_buf_t *b, const pw_process_t *p);

#endif
