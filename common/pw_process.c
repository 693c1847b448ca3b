#include "pw_process.h"
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* utime, stime, starttime, vsize and rss of /proc/self/stat, and btime of /proc/stat. */
static int read_stat(pw_process_t *out)
{
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[2048];
    FILE *fp = fopen("/proc/self/stat", "r");
    if (fp == NULL || ticks <= 0 || page <= 0) {
        if (fp != NULL)
            fclose(fp);
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* the command name (field 2) may hold spaces and parentheses: fields count from its last ')' */
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;
    if (p == NULL || p[1] == '\0' ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld", &utime,
               &stime, &start, &vsize, &rss) != 5)
        return -1;
    out->have_stat = 1;
    out->cpu_seconds = (double)(utime + stime) / (double)ticks;
    out->resident_bytes = (uint64_t)(rss > 0 ? rss : 0) * (uint64_t)page;
    out->virtual_bytes = vsize;
    if ((fp = fopen("/proc/stat", "r")) != NULL) {
        char line[256];
        unsigned long long btime;
        while (fgets(line, sizeof(line), fp) != NULL) {
            if (sscanf(line, "btime %llu", &btime) == 1) {
                out->start_time_seconds = (double)btime + (double)start / (double)ticks;
                break;
            }
        }
        fclose(fp);
    }
    return 0;
}

int pw_process_read(pw_process_t *out)
{
    memset(out, 0, sizeof(*out));
    int ret = read_stat(out);
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        unsigned n = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            n += e->d_name[0] != '.';
        closedir(d);
        out->have_open_fds = 1;
        out->open_fds = n > 0 ? n - 1 : 0; /* not the one opendir holds */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        out->have_max_fds = 1;
        out->max_fds = (uint64_t)rl.rlim_cur;
    }
    return ret;
}

#define FAMILY(b, name, type, help) pw_buf_printf(b, "# HELP " name " " help "\n# TYPE " name " " type "\n")

void pw_process_metrics(pw_buf_t *b, const pw_process_t *p)
{
    if (p->have_stat) {
        FAMILY(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        pw_buf_printf(b, "process_cpu_seconds_total %.15g\n", p->cpu_seconds);
        FAMILY(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        pw_buf_printf(b, "process_resident_memory_bytes %" PRIu64 "\n", p->resident_bytes);
        FAMILY(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        pw_buf_printf(b, "process_virtual_memory_bytes %" PRIu64 "\n", p->virtual_bytes);
        if (p->start_time_seconds != 0) {
            FAMILY(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
            pw_buf_printf(b, "process_start_time_seconds %.15g\n", p->start_time_seconds);
        }
    }
    if (p->have_open_fds) {
        FAMILY(b, "process_open_fds", "gauge", "Number of open file descriptors.");
        pw_buf_printf(b, "process_open_fds %u\n", p->open_fds);
    }
    if (p->have_max_fds) {
        FAMILY(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        pw_buf_printf(b, "process_max_fds %" PRIu64 "\n", p->max_fds);
    }
}
