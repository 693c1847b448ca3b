/*
 * The table behind cfg.h: one row per field of the document. Parsing, defaults, validation,
 * emission, copying, freeing, the restart-only check and docs/config.md all walk these rows;
 * no key has a hand-written parser of its own.
 */
#ifndef PATHWAY_CFG_INTERNAL_H
#define PATHWAY_CFG_INTERNAL_H

#include "cfg.h"

typedef enum en_cfg_type_t {
    CFG_T_BOOL,      /* int, JSON true/false */
    CFG_T_UINT32,    /* uint32_t, JSON integer in [min, max] */
    CFG_T_DURATION,  /* uint64_t milliseconds, "250ms" / "5s" / "2m" in [min, max] ms */
    CFG_T_SIZE,      /* uint64_t bytes, integer or "64KiB" in [min, max] bytes */
    CFG_T_STRING,    /* char *, non-empty, checked by `check` when set */
    CFG_T_ENUM,      /* int, index into `names` */
    CFG_T_STRUCT,    /* a nested struct described by `sub` */
    CFG_T_LIST,      /* cfg_vec_t of `sub` structs, [min, max] entries */
    CFG_T_STRLIST,   /* CFG_VEC(char *), a JSON list of strings, [min, max] entries, each checked by `check` */
    CFG_T_STRMAP,    /* CFG_VEC(cfg_header_t), a JSON mapping of string to string, [min, max] entries; keys checked
                      * by `check`, values by `check_value`; kept in document order */
    CFG_T_INT32,     /* int32_t, any JSON integer in the int32 range (JSON-RPC error codes are negative) */
    CFG_T_ENUMSET,   /* uint32_t, bit i for `names`[i]: a JSON list of names, each at most once; emitted in the
                      * order of `names`, so the same set has one canonical form */
    CFG_T_MILLI,     /* uint32_t thousandths, a JSON number (integer or real, rounded to the nearest thousandth) in
                      * [min, max] thousandths; emitted as a JSON real (1.5, 0.2) */
    CFG_T_STRUCTMAP, /* cfg_vec_t of `sub` structs, a JSON mapping of name to section, [min, max] entries, kept in
                      * document order; each key is checked by `check` and stored in the sub struct's CFG_F_KEY row,
                      * each value decoded by `sub` (a non-mapping value through sub's `shorthand`).
                      * Taken whole, never merged key by key. */
} cfg_type_t;

enum {
    CFG_F_RESTART = 1,  /* a change needs a restart */
    CFG_F_LOCAL = 2,    /* node-local: only in a dataplane's own file (root fields only) */
    CFG_F_REQUIRED = 4, /* no default: must be given */
    CFG_F_OPTIONAL = 8, /* struct that may be absent; presence in the int at `has_offset` */
    CFG_F_INHERIT = 16, /* (service rows) struct inheriting unset keys from defaults.<name>, nested structs key by
                         * key too; or a list taken whole from defaults.<name> when absent; only set keys emitted */
    CFG_F_PATH = 32,    /* STRING naming a file or directory: relative to the config file's directory */
    CFG_F_KEY = 64,     /* STRING, one row (the last, so the value's rows keep their `_set` bits from 0) of a
                         * STRUCTMAP's sub struct: holds the entry's key; never a key of the value itself (decoding
                         * refuses it, emission and the docs leave it out) */
};

/* `_set` of every struct: bit i = row i was given in the document (so it is emitted, as a service's
 * override). Bit CFG_SET_INHERITED + i = row i, an optional scalar (no default), was not given here
 * but taken from `defaults`, where it was given: its presence is inherited with its value, without
 * making it an override. Hence at most 32 rows per struct (test_cfg checks). */
#define CFG_SET_INHERITED 32
#define CFG_MAX_FIELDS 32

/* whether row i of obj has a value: given, or (optional scalar) inherited from where it was given */
static inline int cfg_has(const void *obj, size_t i)
{
    uint64_t set = *(const uint64_t *)obj;
    return (int)(((set >> i) | (set >> (CFG_SET_INHERITED + i))) & 1);
}

struct st_cfg_struct_t;

typedef struct st_cfg_field_t {
    const char *name;                  /* key in the document */
    cfg_type_t type;                   /* how the value is stored and read */
    size_t offset;                     /* where in the parent struct */
    unsigned flags;                    /* CFG_F_* */
    const char *def;                   /* default as JSON text; NULL: none (a scalar without one is optional:
                                        * absent stays absent, `_set` tells, and it is emitted only when set) */
    uint64_t min, max;                 /* bounds: value (numbers), ms, bytes, entries (lists) */
    const struct st_cfg_struct_t *sub; /* STRUCT / LIST element */
    const char *const *names;          /* ENUM, ENUMSET: NULL-terminated (ENUMSET: at most 32) */
    /* STRING: returns NULL when the value is fine, else the rule broken */
    const char *(*check)(const char *value); /* STRING, STRLIST entries, STRMAP keys */
    /* STRMAP: the same for each value */
    const char *(*check_value)(const char *value);
    size_t has_offset; /* OPTIONAL: offset of the int presence flag */
    const char *doc;   /* one line for docs/config.md */
} cfg_field_t;

typedef struct st_cfg_struct_t {
    size_t size;               /* sizeof the C struct */
    const cfg_field_t *fields; /* rows */
    size_t num_fields;
    /* cross-field rules and derived members, after the fields are decoded (may be NULL) */
    void (*finish)(void *obj, const char *path, cfg_scope_t scope, cfg_errors_t *errs);
    /* copies derived members (dst is a shallow copy of src), frees them (may be NULL) */
    int (*dup_derived)(void *dst, const void *src);
    void (*dispose_derived)(void *obj);
    /* recomputes scalar derived members from the fields (may be NULL); cannot fail, reports nothing
     * (the fields' own checks did). Runs after decoding, after defaults are filled, and again after a
     * service inherits keys from `defaults`, which `finish` (run once, at decode) would miss. */
    void (*derive)(void *obj);
    /* a value that is not a mapping but stands for one ("off" for {enabled: false}): the mapping
     * (new reference), or NULL when it stands for none (may be NULL: only mappings) */
    json_t *(*shorthand)(const json_t *value);
    const char *shorthand_doc; /* what the value may be, for errors and docs: "\"off\", \"on\" or a mapping" */
} cfg_struct_t;

extern const cfg_struct_t cfg_root_struct;
extern const cfg_struct_t cfg_policy_struct;

#define CFG_MEMBER(obj, field, T) ((T *)((char *)(obj) + (field)->offset))
#define CFG_CMEMBER(obj, field, T) ((const T *)((const char *)(obj) + (field)->offset))

/* cfg_table.c */
const cfg_field_t *cfg_struct_find(const cfg_struct_t *st, const char *name, size_t len);
/* the CFG_F_KEY row of a STRUCTMAP's sub struct (the table guarantees there is one) */
const cfg_field_t *cfg_struct_key(const cfg_struct_t *st);
void cfg_struct_dispose(const cfg_struct_t *st, void *obj);
int cfg_struct_dup(const cfg_struct_t *st, void *dst, const void *src);
void cfg_struct_fill_defaults(const cfg_struct_t *st, void *obj);
/* makes every relative CFG_F_PATH string absolute against `dir` */
void cfg_struct_resolve_paths(const cfg_struct_t *st, void *obj, const char *dir);

/* STRLIST / STRMAP members: free, copy (dst uninitialized; 0 or -1 leaving dst disposable) */
void cfg_strvec_dispose(const cfg_field_t *f, void *obj);
int cfg_strvec_dup(const cfg_field_t *f, void *dst, const void *src);

/* bytes a scalar member takes (BOOL, ENUM, UINT32, DURATION, SIZE, INT32, ENUMSET) */
size_t cfg_scalar_size(const cfg_field_t *f);
/* whether a row is a scalar (one of the types above) */
int cfg_is_scalar(const cfg_field_t *f);

/* cfg_units.c: thousandths as the shortest decimal ("1.5", "0.001", "10") */
void cfg_format_milli(uint64_t milli, char *buf, size_t len);

/* cfg_decode.c: decode one value into obj's member `f`; `path` names the value in errors */
void cfg_decode_field(const cfg_field_t *f, void *obj, json_t *value, const char *path, cfg_scope_t scope, cfg_errors_t *errs);
void cfg_decode_struct(const cfg_struct_t *st, void *obj, json_t *value, const char *path, cfg_scope_t scope, int is_root,
                       cfg_errors_t *errs);

/* joins a parent path and a key: "services[1]" + "pool" -> "services[1].pool" */
void cfg_path_join(char *buf, size_t len, const char *parent, const char *key);

/* cfg_values.c: the checks the rows name (each returns the rule broken, or NULL) */
const char *cfg_check_address(const char *s);
const char *cfg_check_service_id(const char *s);
const char *cfg_check_base_url(const char *s);
const char *cfg_check_endpoint_name(const char *s);
const char *cfg_check_header_name(const char *s);
const char *cfg_check_header_value(const char *s);
const char *cfg_check_origin(const char *s);
const char *cfg_check_method(const char *s);
const char *cfg_check_rpc_message(const char *s);
const char *cfg_check_hedge_delay(const char *s);
const char *cfg_check_probe_request(const char *s);
const char *cfg_check_label_name(const char *s);
const char *cfg_check_label_value(const char *s);
/* "0s" / a duration -> *ms; "p50".."p99" -> *pct. Returns 0, or -1 when it is neither. */
int cfg_parse_hedge_delay(const char *s, uint64_t *ms, uint32_t *pct);
/* Splits ep->url into the derived members (host, port, path, userinfo, is_https); the rule broken,
 * or NULL. */
const char *cfg_parse_endpoint_url(cfg_endpoint_t *ep);
/* The same for ep->ws_url (ws:// or wss://) into the ws_ members. */
const char *cfg_parse_endpoint_ws_url(cfg_endpoint_t *ep);

#endif
