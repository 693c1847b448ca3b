/*
 * YAML (libyaml events) and JSON (jansson) into one jansson tree, bounded in size, depth and
 * node count (aliases count every time they are used, so a billion-laughs document stops at
 * CFG_MAX_NODES instead of growing).
 */
#include "cfg.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct st_anchor_t {
    char *name;    /* anchor name */
    json_t *value; /* the anchored node (a reference held) */
    size_t nodes;  /* nodes in it, charged again at every alias */
} anchor_t;

typedef struct st_yaml_ctx_t {
    yaml_parser_t parser;
    cfg_errors_t *errs;
    anchor_t *anchors; /* finished anchors */
    size_t num_anchors;
    size_t nodes; /* nodes produced so far, aliases expanded */
    int failed;   /* an error was reported; unwind */
} yaml_ctx_t;

static void yaml_fail(yaml_ctx_t *ctx, const yaml_mark_t *mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void yaml_fail(yaml_ctx_t *ctx, const yaml_mark_t *mark, const char *fmt, ...)
{
    if (ctx->failed)
        return;
    ctx->failed = 1;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cfg_errors_add(ctx->errs, "line %zu, column %zu: %s", mark->line + 1, mark->column + 1, msg);
}

static int next_event(yaml_ctx_t *ctx, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&ctx->parser, ev)) {
        if (!ctx->failed) {
            ctx->failed = 1;
            cfg_errors_add(ctx->errs, "line %zu, column %zu: %s%s%s", ctx->parser.problem_mark.line + 1,
                           ctx->parser.problem_mark.column + 1, ctx->parser.problem ? ctx->parser.problem : "invalid YAML",
                           ctx->parser.context ? " " : "", ctx->parser.context ? ctx->parser.context : "");
        }
        return -1;
    }
    return 0;
}

static int matches_any(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* YAML 1.2 core schema resolution of a plain scalar. */
static json_t *resolve_plain(yaml_ctx_t *ctx, const yaml_event_t *ev)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;

    if (strlen(s) != len)
        return json_stringn(s, len); /* embedded NUL: a string, and the decoder rejects it */
    if (matches_any(s, nulls))
        return json_null();
    if (matches_any(s, trues))
        return json_true();
    if (matches_any(s, falses))
        return json_false();

    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int base = 10;
    if (p == s && p[0] == '0' && (p[1] == 'x' || p[1] == 'o') && p[2] != '\0') {
        base = p[1] == 'x' ? 16 : 8;
        p += 2;
    }
    if (*p != '\0') {
        const char *q = p;
        while (*q != '\0' && (base == 16 ? isxdigit((unsigned char)*q) : (*q >= '0' && *q <= (base == 8 ? '7' : '9'))))
            q++;
        if (*q == '\0') {
            errno = 0;
            long long v = strtoll(base == 10 ? s : p, NULL, base);
            if (errno == ERANGE) {
                yaml_fail(ctx, &ev->start_mark, "integer %s is out of range", s);
                return NULL;
            }
            return json_integer(v);
        }
    }
    /* floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? and .inf/.nan */
    p = s;
    if (*p == '-' || *p == '+')
        p++;
    const char *digits = p;
    while (isdigit((unsigned char)*p))
        p++;
    int intpart = p > digits, frac = 0;
    if (*p == '.') {
        p++;
        const char *f = p;
        while (isdigit((unsigned char)*p))
            p++;
        frac = p > f;
    }
    if ((intpart || frac) && (*p == 'e' || *p == 'E')) {
        const char *e = ++p;
        if (*p == '-' || *p == '+')
            p++;
        e = p;
        while (isdigit((unsigned char)*p))
            p++;
        if (p == e)
            return json_stringn(s, len);
    }
    if ((intpart || frac) && *p == '\0' && (frac || strpbrk(s, ".eE") != NULL)) {
        double d = strtod(s, NULL);
        if (!isfinite(d)) {
            yaml_fail(ctx, &ev->start_mark, "number %s is out of range", s);
            return NULL;
        }
        return json_real(d);
    }
    return json_stringn(s, len);
}

static int register_anchor(yaml_ctx_t *ctx, const yaml_char_t *name, json_t *value, size_t nodes)
{
    if (name == NULL)
        return 0;
    anchor_t *n = realloc(ctx->anchors, (ctx->num_anchors + 1) * sizeof(*n));
    if (n == NULL)
        return -1;
    ctx->anchors = n;
    anchor_t *a = &ctx->anchors[ctx->num_anchors++];
    a->name = strdup((const char *)name);
    a->value = json_incref(value);
    a->nodes = nodes;
    return a->name == NULL ? -1 : 0;
}

static int charge(yaml_ctx_t *ctx, const yaml_mark_t *mark, size_t n)
{
    ctx->nodes += n;
    if (ctx->nodes > CFG_MAX_NODES) {
        yaml_fail(ctx, mark, "document has more than %d nodes (aliases counted where used)", CFG_MAX_NODES);
        return -1;
    }
    return 0;
}

static json_t *parse_node(yaml_ctx_t *ctx, yaml_event_t *ev, int depth);

/* Parses the items of a sequence or mapping whose start event was `start`; consumes its end. */
static json_t *parse_collection(yaml_ctx_t *ctx, yaml_event_t *start, int depth)
{
    int is_map = start->type == YAML_MAPPING_START_EVENT;
    yaml_mark_t start_mark = start->start_mark;
    const yaml_char_t *anchor = is_map ? start->data.mapping_start.anchor : start->data.sequence_start.anchor;
    char *anchor_name = anchor != NULL ? strdup((const char *)anchor) : NULL;
    size_t nodes_before = ctx->nodes;
    json_t *out = is_map ? json_object() : json_array();
    if (out == NULL || (anchor != NULL && anchor_name == NULL))
        goto fail;
    if (depth > CFG_MAX_DEPTH) {
        yaml_fail(ctx, &start_mark, "nesting deeper than %d levels", CFG_MAX_DEPTH);
        goto fail;
    }
    for (;;) {
        yaml_event_t ev;
        if (next_event(ctx, &ev) != 0)
            goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (!is_map) {
            json_t *item = parse_node(ctx, &ev, depth + 1);
            if (item == NULL || json_array_append_new(out, item) != 0)
                goto fail;
            continue;
        }
        /* mapping: a scalar key, then its value */
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_fail(ctx, &ev.start_mark, "%s", "mapping keys must be plain strings");
            yaml_event_delete(&ev);
            goto fail;
        }
        yaml_mark_t key_mark = ev.start_mark;
        char *key = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        int key_has_nul = strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length;
        yaml_event_delete(&ev);
        if (key == NULL)
            goto fail;
        if (key_has_nul) {
            yaml_fail(ctx, &key_mark, "%s", "a key contains a NUL character");
            free(key);
            goto fail;
        }
        if (json_object_get(out, key) != NULL) {
            yaml_fail(ctx, &key_mark, "duplicate key '%s'", key);
            free(key);
            goto fail;
        }
        yaml_event_t vev;
        if (next_event(ctx, &vev) != 0) {
            free(key);
            goto fail;
        }
        json_t *value = parse_node(ctx, &vev, depth + 1);
        if (value == NULL || json_object_set_new(out, key, value) != 0) {
            free(key);
            goto fail;
        }
        free(key);
    }
    if (anchor_name != NULL && register_anchor(ctx, (yaml_char_t *)anchor_name, out, ctx->nodes - nodes_before + 1) != 0)
        goto fail;
    free(anchor_name);
    return out;
fail:
    free(anchor_name);
    json_decref(out);
    return NULL;
}

/* Turns the event `ev` (and for collections, what follows) into a value; deletes `ev`. */
static json_t *parse_node(yaml_ctx_t *ctx, yaml_event_t *ev, int depth)
{
    json_t *out = NULL;
    if (charge(ctx, &ev->start_mark, 1) != 0)
        goto done;
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        const char *tag = (const char *)ev->data.scalar.tag;
        if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || (tag != NULL && strcmp(tag, YAML_STR_TAG) == 0))
            out = json_stringn((const char *)ev->data.scalar.value, ev->data.scalar.length);
        else
            out = resolve_plain(ctx, ev);
        if (out != NULL && ev->data.scalar.anchor != NULL && register_anchor(ctx, ev->data.scalar.anchor, out, 1) != 0) {
            json_decref(out);
            out = NULL;
        }
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        out = parse_collection(ctx, ev, depth);
        break;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (size_t i = ctx->num_anchors; i-- > 0;) {
            if (strcmp(ctx->anchors[i].name, name) == 0) {
                if (charge(ctx, &ev->start_mark, ctx->anchors[i].nodes) == 0)
                    out = json_incref(ctx->anchors[i].value);
                goto done;
            }
        }
        yaml_fail(ctx, &ev->start_mark, "unknown alias '*%s'", name);
        break;
    }
    default:
        yaml_fail(ctx, &ev->start_mark, "%s", "unexpected YAML event");
        break;
    }
done:
    yaml_event_delete(ev);
    return out;
}

static json_t *parse_yaml(const char *text, size_t len, cfg_errors_t *errs)
{
    yaml_ctx_t ctx = {.errs = errs};
    json_t *root = NULL;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&ctx.parser)) {
        cfg_errors_add(errs, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&ctx.parser, (const unsigned char *)text, len);
    int docs = 0;
    for (;;) {
        if (next_event(&ctx, &ev) != 0)
            goto fail;
        yaml_event_type_t type = ev.type;
        yaml_mark_t mark = ev.start_mark;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            if (++docs > 1) {
                yaml_fail(&ctx, &mark, "%s", "only one document is allowed (found a second '---')");
                goto fail;
            }
            continue;
        }
        if (type == YAML_STREAM_START_EVENT || type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if ((root = parse_node(&ctx, &ev, 1)) == NULL)
            goto fail;
    }
    if (root == NULL) {
        cfg_errors_add(errs, "document is empty");
        goto fail;
    }
    goto done;
fail:
    if (!ctx.failed && errs->size == 0)
        cfg_errors_add(errs, "out of memory");
    json_decref(root);
    root = NULL;
done:
    for (size_t i = 0; i < ctx.num_anchors; i++) {
        free(ctx.anchors[i].name);
        json_decref(ctx.anchors[i].value);
    }
    free(ctx.anchors);
    yaml_parser_delete(&ctx.parser);
    return root;
}

/* Depth and node count of a JSON tree (jansson's own depth limit is far larger than ours). */
static int check_json_bounds(const json_t *v, int depth, size_t *nodes)
{
    if (++*nodes > CFG_MAX_NODES || depth > CFG_MAX_DEPTH)
        return -1;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c)
        {
            if (check_json_bounds(c, depth + 1, nodes) != 0)
                return -1;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            if (check_json_bounds(c, depth + 1, nodes) != 0)
                return -1;
        }
    }
    return 0;
}

json_t *cfg_tree_parse(const char *text, size_t len, cfg_format_t format, cfg_errors_t *errs)
{
    if (len > CFG_MAX_DOCUMENT_SIZE) {
        cfg_errors_add(errs, "document is %zu bytes; at most %u are allowed", len, CFG_MAX_DOCUMENT_SIZE);
        return NULL;
    }
    if (format == CFG_FORMAT_AUTO) {
        size_t i = 0;
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
            i++;
        format = i < len && text[i] == '{' ? CFG_FORMAT_JSON : CFG_FORMAT_YAML;
    }
    if (format == CFG_FORMAT_YAML)
        return parse_yaml(text, len, errs);

    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        cfg_errors_add(errs, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    size_t nodes = 0;
    if (check_json_bounds(root, 1, &nodes) != 0) {
        cfg_errors_add(errs, "document nests deeper than %d levels or has more than %d nodes", CFG_MAX_DEPTH, CFG_MAX_NODES);
        json_decref(root);
        return NULL;
    }
    return root;
}
