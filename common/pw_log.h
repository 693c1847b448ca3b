/*
 * pw_log: leveled logging shared by both binaries.
 *
 * The level is one global atomic read; PW_LOG checks it before evaluating any argument, so a
 * level that is off costs one load and one branch, and no formatting happens.
 */
#ifndef PATHWAY_PW_LOG_H
#define PATHWAY_PW_LOG_H

#include <stdatomic.h>

typedef enum en_pw_log_level_t {
    PW_LOG_DEBUG = 0,
    PW_LOG_INFO,
    PW_LOG_WARN,
    PW_LOG_ERROR,
    PW_LOG_OFF,
} pw_log_level_t;

/* The current level; messages below it are dropped. Relaxed: a level change may take a few
 * events to reach every thread, which is fine for logging. */
extern _Atomic int pw_log_level_;

static inline void pw_log_set_level(pw_log_level_t level)
{
    atomic_store_explicit(&pw_log_level_, (int)level, memory_order_relaxed);
}

static inline pw_log_level_t pw_log_get_level(void)
{
    return (pw_log_level_t)atomic_load_explicit(&pw_log_level_, memory_order_relaxed);
}

static inline int pw_log_enabled(pw_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&pw_log_level_, memory_order_relaxed);
}

/* Parses "debug" / "info" / "warn" / "error" / "off". Returns -1 for anything else. */
int pw_log_level_from_name(const char *name);
const char *pw_log_level_name(pw_log_level_t level);

/* Sets the program name written before every line ("pathway", "pathway-control"). Borrowed. */
void pw_log_set_ident(const char *ident);

/* Writes one line to stderr: time, ident, level, message. Thread-safe (one write(2) per line). */
void pw_log_write(pw_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define PW_LOG(level, ...)                                                                                                         \
    do {                                                                                                                           \
        if (__builtin_expect(pw_log_enabled(level), 0))                                                                            \
            pw_log_write(level, __VA_ARGS__);                                                                                      \
    } while (0)
#define PW_DEBUG(...) PW_LOG(PW_LOG_DEBUG, __VA_ARGS__)
#define PW_INFO(...) PW_LOG(PW_LOG_INFO, __VA_ARGS__)
#define PW_WARN(...) PW_LOG(PW_LOG_WARN, __VA_ARGS__)
#define PW_ERROR(...) PW_LOG(PW_LOG_ERROR, __VA_ARGS__)

#endif
