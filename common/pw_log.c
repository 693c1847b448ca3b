#include "pw_log.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Atomic int pw_log_level_ = PW_LOG_INFO;
static const char *ident_ = "pathway";
static const char *const names_[] = {"debug", "info", "warn", "error", "off"};

int pw_log_level_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(names_) / sizeof(names_[0]); i++)
        if (strcmp(name, names_[i]) == 0)
            return (int)i;
    return -1;
}

const char *pw_log_level_name(pw_log_level_t level)
{
    return (unsigned)level < sizeof(names_) / sizeof(names_[0]) ? names_[level] : "?";
}

void pw_log_set_ident(const char *ident)
{
    ident_ = ident;
}

void pw_log_write(pw_log_level_t level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, ident_, pw_log_level_name(level));
    if (n < 0)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1;
    /* one event, one line: control characters (a newline in a dataplane's NACK text, say) are
     * escaped, so text from outside can never start a line that looks like ours */
    size_t len = (size_t)n;
    for (size_t i = 0; i < mlen && len < sizeof(line) - 5; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '\n') {
            line[len++] = '\\';
            line[len++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            len += (size_t)snprintf(line + len, sizeof(line) - len, "\\x%02x", c);
        } else {
            line[len++] = (char)c;
        }
    }
    line[len++] = '\n';
    /* one write per line keeps lines from threads whole */
    ssize_t r = write(STDERR_FILENO, line, len);
    (void)r;
}
