/* Durations ("250ms", "90s", "1m30s"), sizes ("64KiB") and thousandths ("1.5"), read and written. */
#include "cfg_internal.h"
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int read_number(const char **p, uint64_t *out)
{
    if (!isdigit((unsigned char)**p))
        return -1;
    uint64_t v = 0;
    while (isdigit((unsigned char)**p)) {
        unsigned d = (unsigned)(**p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        ++*p;
    }
    *out = v;
    return 0;
}

int cfg_parse_duration(const char *s, uint64_t *ms, const char **err)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    const char *p = s;
    uint64_t total = 0;
    *err = "must be a duration such as 250ms, 5s, 2m or 1h";
    if (*p == '\0')
        return -1;
    while (*p != '\0') {
        uint64_t n;
        if (read_number(&p, &n) != 0)
            return -1;
        size_t i;
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t len = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, len) == 0 && !isalpha((unsigned char)p[len]))
                break;
        }
        if (i == sizeof(units) / sizeof(units[0]))
            return -1;
        if (n > (UINT64_MAX - total) / units[i].ms) {
            *err = "duration is too large";
            return -1;
        }
        total += n * units[i].ms;
        p += strlen(units[i].unit);
    }
    *ms = total;
    *err = NULL;
    return 0;
}

void cfg_format_duration(uint64_t ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%" PRIu64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, len, "%" PRIu64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static const struct {
    const char *unit;
    uint64_t bytes;
} size_units_[] = {{"B", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};

int cfg_parse_size(const char *s, uint64_t *bytes, const char **err)
{
    const char *p = s;
    uint64_t n;
    *err = "must be a size such as 512B, 64KiB, 1MiB or 1GiB";
    if (read_number(&p, &n) != 0)
        return -1;
    uint64_t mul = 1;
    if (*p != '\0') {
        size_t i;
        for (i = 0; i < sizeof(size_units_) / sizeof(size_units_[0]); i++)
            if (strcmp(p, size_units_[i].unit) == 0)
                break;
        if (i == sizeof(size_units_) / sizeof(size_units_[0]))
            return -1;
        mul = size_units_[i].bytes;
    }
    if (n > UINT64_MAX / mul) {
        *err = "size is too large";
        return -1;
    }
    *bytes = n * mul;
    *err = NULL;
    return 0;
}

void cfg_format_size(uint64_t bytes, char *buf, size_t len)
{
    size_t i = sizeof(size_units_) / sizeof(size_units_[0]);
    while (--i > 0)
        if (bytes != 0 && bytes % size_units_[i].bytes == 0)
            break;
    snprintf(buf, len, "%" PRIu64 "%s", bytes / size_units_[i].bytes, size_units_[i].unit);
}

void cfg_format_milli(uint64_t milli, char *buf, size_t len)
{
    char frac[8];
    snprintf(frac, sizeof(frac), "%03u", (unsigned)(milli % 1000));
    for (size_t n = strlen(frac); n > 0 && frac[n - 1] == '0'; n--)
        frac[n - 1] = '\0';
    snprintf(buf, len, "%" PRIu64 "%s%s", milli / 1000, frac[0] != '\0' ? "." : "", frac);
}
