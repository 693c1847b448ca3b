/*
 * Safe rollouts from the command line (docs/pathwayctl.md, "Safe rollouts"): the rollout flags of
 * apply, set and rollback turned into the `rollout` object the control plane takes beside a write
 * (checked before any request), and `pathwayctl rollout`: status (a table, or a live one with
 * --watch), list, pause, resume, promote, abort.
 */
#include "ctl.h"
#include "cfg.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS 16 /* the API's bound */
#define WATCH_PERIOD_MS 1000

/* --- the rollout object ------------------------------------------------------------------------- */

/* An integer in [min, max] written in full. 0, or -1. */
static int parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_real(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* A duration as the config documents write them (30s, 2m), more than 0. */
static int check_duration(const char *flag, const char *s, char *err, size_t errlen)
{
    uint64_t ms;
    const char *why = NULL;
    if (cfg_parse_duration(s, &ms, &why) != 0 || ms == 0) {
        if (why != NULL)
            snprintf(err, errlen, "%s '%s': %s", flag, s, why);
        else
            snprintf(err, errlen, "%s: a duration above 0 such as 30s or 2m, not '%s'", flag, s);
        return -1;
    }
    return 0;
}

/* The control plane's rule for label names: letters, digits, '_', '-', '.'; 1 to 63 of them. */
static int label_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i != n; ++i)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return 0;
    return 1;
}

/* --canary (each given): {"percent": N} or {"labels": {...}}. NULL with err. */
static json_t *canary_object(const ctl_rollout_args_t *ra, long long *percent, char *err, size_t errlen)
{
    json_t *labels = json_object();
    *percent = 0;
    for (size_t i = 0; i != ra->ncanary; ++i) {
        const char *c = ra->canary[i];
        if (strncmp(c, "percent=", 8) == 0) {
            if (parse_int(c + 8, 1, 100, percent) != 0) {
                snprintf(err, errlen, "--canary percent=N: N must be a whole number from 1 to 100, not '%s'", c + 8);
                goto Error;
            }
            if (ra->ncanary > 1) {
                snprintf(err, errlen, "--canary: percent=N stands alone (not with another --canary)");
                goto Error;
            }
            json_decref(labels);
            return json_pack("{s:I}", "percent", (json_int_t)*percent);
        }
        const char *eq = strncmp(c, "label=", 6) == 0 ? strchr(c + 6, '=') : NULL;
        if (eq == NULL) {
            snprintf(err, errlen, "--canary: expected percent=N or label=NAME=VALUE, not '%s'", c);
            goto Error;
        }
        const char *name = c + 6, *value = eq + 1;
        if (!label_name_ok(name, (size_t)(eq - name))) {
            snprintf(err, errlen, "--canary %s: a label name is 1 to 63 letters, digits, '_', '-' or '.'", c);
            goto Error;
        }
        if (strlen(value) > 63) {
            snprintf(err, errlen, "--canary %s: a label value is at most 63 characters", c);
            goto Error;
        }
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - name), name);
        if (json_object_get(labels, key) != NULL) {
            snprintf(err, errlen, "--canary: label %s given twice", key);
            goto Error;
        }
        json_t *v = json_string(value);
        if (v == NULL) {
            snprintf(err, errlen, "--canary %s: the value is not UTF-8", c);
            goto Error;
        }
        json_object_set_new(labels, key, v);
    }
    return json_pack("{s:o}", "labels", labels);
Error:
    json_decref(labels);
    return NULL;
}

/* --steps P1,P2,... with --hold: [{"percent": P, "hold": H}...]. 0 is a first step only after a
 * label canary (the labelled dataplanes alone). NULL with err. */
static json_t *steps_array(const ctl_rollout_args_t *ra, int label_canary, char *err, size_t errlen)
{
    json_t *steps = json_array();
    const char *p = ra->steps;
    long long prev = -1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char item[32];
        long long pct;
        snprintf(item, sizeof(item), "%.*s", (int)(n < sizeof(item) ? n : sizeof(item) - 1), p);
        if (n == 0 || n >= sizeof(item) || parse_int(item, 0, 100, &pct) != 0) {
            snprintf(err, errlen, "--steps: each step is a percentage from 1 to 100, comma-separated (10,50), not '%.*s'",
                     (int)(n < 32 ? n : 32), p);
            goto Error;
        }
        if (pct == 0 && (prev >= 0 || !label_canary)) {
            snprintf(err, errlen, "--steps: 0 is only a first step after --canary label=...: the labelled dataplanes alone");
            goto Error;
        }
        if (pct <= prev) {
            snprintf(err, errlen, "--steps: steps must increase (%lld after %lld)", pct, prev);
            goto Error;
        }
        if (json_array_size(steps) == MAX_STEPS) {
            snprintf(err, errlen, "--steps: at most %d steps", MAX_STEPS);
            goto Error;
        }
        json_array_append_new(steps, json_pack("{s:I, s:s}", "percent", (json_int_t)pct, "hold", ra->hold));
        prev = pct;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return steps;
Error:
    json_decref(steps);
    return NULL;
}

/* The gate flags given: {"interval": ..., ...}, empty when none. NULL with err. */
static json_t *gate_object(const ctl_rollout_args_t *ra, char *err, size_t errlen)
{
    json_t *gate = json_object();
    long long n;
    double f;
    if (ra->gate_interval != NULL) {
        if (check_duration("--gate-interval", ra->gate_interval, err, errlen) != 0)
            goto Error;
        json_object_set_new(gate, "interval", json_string(ra->gate_interval));
    }
    if (ra->min_requests != NULL) {
        if (parse_int(ra->min_requests, 0, 1000000000, &n) != 0) {
            snprintf(err, errlen, "--min-requests: a whole number from 0, not '%s'", ra->min_requests);
            goto Error;
        }
        json_object_set_new(gate, "min_requests", json_integer((json_int_t)n));
    }
    if (ra->failures_allowed != NULL) {
        if (parse_int(ra->failures_allowed, 0, 1000, &n) != 0) {
            snprintf(err, errlen, "--failures-allowed: a whole number from 0 to 1000, not '%s'", ra->failures_allowed);
            goto Error;
        }
        json_object_set_new(gate, "failures_allowed", json_integer((json_int_t)n));
    }
    if (ra->max_error_rate_increase != NULL) {
        if (parse_real(ra->max_error_rate_increase, &f) != 0 || f < 0 || f > 1) {
            snprintf(err, errlen, "--max-error-rate-increase: a fraction from 0 to 1 (0.01 is one point), not '%s'",
                     ra->max_error_rate_increase);
            goto Error;
        }
        json_object_set_new(gate, "max_error_rate_increase", json_real(f));
    }
    if (ra->max_p99_ratio != NULL) {
        if (parse_real(ra->max_p99_ratio, &f) != 0 || f <= 0) {
            snprintf(err, errlen, "--max-p99-ratio: a number above 0 (1.5: half as slow again), not '%s'", ra->max_p99_ratio);
            goto Error;
        }
        json_object_set_new(gate, "max_p99_ratio", json_real(f));
    }
    return gate;
Error:
    json_decref(gate);
    return NULL;
}

json_t *ctl_rollout_object(const ctl_rollout_args_t *ra, char *err, size_t errlen)
{
    err[0] = '\0';
    int any = ra->ncanary != 0 || ra->steps != NULL || ra->hold != NULL || ra->gate_interval != NULL || ra->min_requests != NULL ||
              ra->max_error_rate_increase != NULL || ra->max_p99_ratio != NULL || ra->failures_allowed != NULL;
    if (!any)
        return NULL;
    if (ra->steps == NULL) {
        snprintf(err, errlen, "a rollout needs --steps P1,P2,... (the share of the dataplanes at each step: 10,50)");
        return NULL;
    }
    if (ra->hold == NULL) {
        snprintf(err, errlen, "a rollout needs --hold DURATION (how long each step lasts at least: 2m)");
        return NULL;
    }
    if (check_duration("--hold", ra->hold, err, errlen) != 0)
        return NULL;
    json_t *out = json_object();
    if (ra->ncanary != 0) {
        long long percent;
        json_t *canary = canary_object(ra, &percent, err, errlen);
        if (canary == NULL) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, "canary", canary);
    }
    json_t *steps = steps_array(ra, json_object_get(json_object_get(out, "canary"), "labels") != NULL, err, errlen);
    if (steps == NULL) {
        json_decref(out);
        return NULL;
    }
    json_object_set_new(out, "steps", steps);
    json_t *gate = gate_object(ra, err, errlen);
    if (gate == NULL) {
        json_decref(out);
        return NULL;
    }
    if (json_object_size(gate) != 0)
        json_object_set_new(out, "gate", gate);
    else
        json_decref(gate);
    return out;
}

/* --- writes that may start a rollout ------------------------------------------------------------ */

/* `body` with `extra`'s keys beside its own, as compact JSON (caller frees); NULL after printing
 * why (the body is not an object). */
static char *body_with(ctl_t *ctl, const char *body, size_t len, const json_t *extra, size_t *outlen)
{
    cfg_errors_t errs;
    cfg_errors_init(&errs);
    json_t *tree = cfg_tree_parse(body, len, CFG_FORMAT_AUTO, &errs);
    char *out = NULL;
    if (tree == NULL) {
        for (size_t i = 0; i != errs.size; ++i)
            fprintf(ctl->err, "pathwayctl: %s\n", errs.entries[i]);
    } else if (!json_is_object(tree)) {
        fprintf(ctl->err, "pathwayctl: the document must be a mapping to carry a rollout\n");
    } else {
        json_object_update(tree, (json_t *)extra);
        out = json_dumps(tree, JSON_COMPACT | JSON_SORT_KEYS);
        *outlen = out != NULL ? strlen(out) : 0;
    }
    json_decref(tree);
    cfg_errors_dispose(&errs);
    return out;
}

/* Sends body (with `extra`'s keys when not NULL). */
static int send_with(ctl_t *ctl, const char *method, const char *path, const char *const *headers, const char *body, size_t len,
                     const json_t *extra, ctl_response_t *res, int *rc)
{
    if (extra == NULL) {
        if (ctl_request(ctl, method, path, headers, body, len, res) != 0) {
            *rc = CTL_EXIT_UNREACHABLE;
            return -1;
        }
        return 0;
    }
    size_t n;
    char *joined = body_with(ctl, body, len, extra, &n);
    if (joined == NULL) {
        *rc = CTL_EXIT_USAGE;
        return -1;
    }
    /* a YAML document goes as JSON now; a merge patch stays one */
    const char *hdrs[8];
    size_t k = 0;
    for (size_t i = 0; headers != NULL && headers[i] != NULL && k + 2 < sizeof(hdrs) / sizeof(hdrs[0]); ++i)
        if (strncasecmp(headers[i], "Content-Type:", 13) != 0 || strstr(headers[i], "merge-patch") != NULL)
            hdrs[k++] = headers[i];
    int merge = 0;
    for (size_t i = 0; i != k; ++i)
        merge |= strncasecmp(hdrs[i], "Content-Type:", 13) == 0;
    if (!merge)
        hdrs[k++] = "Content-Type: application/json";
    hdrs[k] = NULL;
    int sent = ctl_request(ctl, method, path, hdrs, joined, n, res);
    free(joined);
    if (sent != 0) {
        *rc = CTL_EXIT_UNREACHABLE;
        return -1;
    }
    return 0;
}

int ctl_write(ctl_t *ctl, const ctl_args_t *args, const char *method, const char *path, const char *const *headers,
              const char *body, size_t len, ctl_response_t *res, int *rc)
{
    char err[512];
    json_t *rollout = ctl_rollout_object(&args->rollout, err, sizeof(err)), *extra = NULL;
    int force = (args->given & CTL_OPT_FORCE) != 0;
    if (rollout == NULL && err[0] != '\0') { /* checked at parse time: only a caller that skipped it */
        fprintf(ctl->err, "pathwayctl %s: %s\n", args->cmd->name, err);
        *rc = CTL_EXIT_USAGE;
        return -1;
    }
    if (rollout != NULL) {
        extra = json_pack("{s:o}", "rollout", rollout);
        if (force)
            json_object_set_new(extra, "force", json_true());
    }
    int r = send_with(ctl, method, path, headers, body, len, extra, res, rc);
    if (r == 0 && res->status == 409 && force && extra == NULL) {
        /* a rollout in progress refuses other writes; --force supersedes it. Asked only now, so a
         * control plane without rollouts never sees the key. */
        json_t *b = json_loadb(res->body, res->len, 0, NULL);
        const char *msg = json_string_value(json_object_get(b, "error"));
        fprintf(ctl->err, "pathwayctl: refused (409): %s; sending again with force (--force)\n",
                msg != NULL ? msg : "a rollout is in progress");
        json_decref(b);
        ctl_response_dispose(res);
        extra = json_pack("{s:b}", "force", 1);
        r = send_with(ctl, method, path, headers, body, len, extra, res, rc);
    }
    json_decref(extra);
    return r;
}

void ctl_rollout_started(ctl_t *ctl, const json_t *answer)
{
    json_t *ro = json_object_get(answer, "rollout");
    if (!json_is_object(ro))
        return;
    char *id = json_dumps(json_object_get(ro, "id"), JSON_ENCODE_ANY);
    const char *state = json_string_value(json_object_get(ro, "state"));
    fprintf(ctl->out, "rollout %s %s: the canary first; follow it: pathwayctl rollout status --watch\n", id != NULL ? id : "?",
            state != NULL ? state : "started");
    free(id);
}

/* --- pathwayctl rollout ------------------------------------------------------------------------- */

static void print_json(ctl_t *ctl, const json_t *v, size_t flags)
{
    char *s = json_dumps(v, flags | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s != NULL)
        fprintf(ctl->out, "%s\n", s);
    free(s);
}

/* Prints why a call failed ({"error": ...} when the body has one); returns the exit code. */
static int failed(ctl_t *ctl, const char *what, const ctl_response_t *res)
{
    json_t *body = json_loadb(res->body, res->len, 0, NULL);
    const char *msg = json_string_value(json_object_get(body, "error"));
    fprintf(ctl->err, "pathwayctl: %s: %s (%ld): %s\n", what,
            ctl_status_exit(res->status) == CTL_EXIT_UNREACHABLE ? "control plane unavailable" : "rejected", res->status,
            msg != NULL    ? msg
            : res->len > 0 ? res->body
                           : "(no body)");
    if (res->status == 404 && strstr(what, "/v1/rollouts") != NULL && (msg == NULL || strstr(msg, "no such route") != NULL))
        fprintf(ctl->err, "  this control plane has no rollouts (a version older than them)\n");
    json_decref(body);
    return ctl_status_exit(res->status);
}

/* A call whose answer must be 2xx JSON: the body (new reference), or NULL with *rc. */
static json_t *call_json(ctl_t *ctl, const char *method, const char *path, int *rc)
{
    ctl_response_t res;
    static const char *const json_type[] = {"Content-Type: application/json", NULL};
    int post = strcmp(method, "POST") == 0;
    if (ctl_request(ctl, method, path, post ? json_type : NULL, post ? "{}" : NULL, post ? 2 : 0, &res) != 0) {
        *rc = CTL_EXIT_UNREACHABLE;
        return NULL;
    }
    json_t *v = NULL;
    char what[160];
    snprintf(what, sizeof(what), "%s %s", method, path);
    if (res.status / 100 != 2) {
        *rc = failed(ctl, what, &res);
    } else if ((v = json_loadb(res.body, res.len, JSON_DECODE_ANY, NULL)) == NULL) {
        fprintf(ctl->err, "pathwayctl: %s answered %ld with something that is not JSON: %.200s\n", what, res.status, res.body);
        *rc = CTL_EXIT_UNREACHABLE;
    }
    ctl_response_dispose(&res);
    return v;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

/* A rollout id as the API spells it (an integer or a string) into out. */
static void id_text(const json_t *v, char *out, size_t len)
{
    if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, len, "%s", json_is_string(v) ? json_string_value(v) : "?");
}

static int ended(const char *state)
{
    return strcmp(state, "promoted") == 0 || strcmp(state, "aborted") == 0 || strcmp(state, "rolled_back") == 0;
}

/* GET /v1/rollouts as an array (the API's {"rollouts": [...]} or a bare array), newest first. */
static json_t *list_rollouts(ctl_t *ctl, json_t **raw, int *rc)
{
    *raw = call_json(ctl, "GET", "/v1/rollouts", rc);
    if (*raw == NULL)
        return NULL;
    json_t *list = json_is_array(*raw) ? *raw : json_object_get(*raw, "rollouts");
    if (!json_is_array(list)) {
        fprintf(ctl->err, "pathwayctl: GET /v1/rollouts answered without a list of rollouts\n");
        json_decref(*raw);
        *raw = NULL;
        *rc = CTL_EXIT_UNREACHABLE;
        return NULL;
    }
    return list;
}

/* The rollout a command without ID is about: the one progressing or paused, else (when `any`)
 * the newest. Its id into out; -1 with *rc after printing why there is none. */
static int current_id(ctl_t *ctl, int any, char *out, size_t len, int *rc)
{
    json_t *raw, *list = list_rollouts(ctl, &raw, rc), *r, *newest = NULL;
    if (list == NULL)
        return -1;
    size_t i;
    json_t *found = NULL;
    json_array_foreach(list, i, r)
    {
        const char *st = str(r, "state");
        if (found == NULL && (strcmp(st, "progressing") == 0 || strcmp(st, "paused") == 0))
            found = r;
        /* newest: the largest created_at (RFC 3339 sorts as text), else the first listed */
        if (newest == NULL || strcmp(str(r, "created_at"), str(newest, "created_at")) > 0)
            newest = r;
    }
    if (found == NULL && any)
        found = newest;
    if (found == NULL) {
        fprintf(ctl->err, "pathwayctl: no rollout in progress%s\n", json_array_size(list) > 0 ? " (pathwayctl rollout list)" : "");
        json_decref(raw);
        *rc = CTL_EXIT_REJECTED;
        return -1;
    }
    id_text(json_object_get(found, "id"), out, len);
    json_decref(raw);
    return 0;
}

/* "12.50%" of a fraction, "-" when absent. */
static void rate_text(const json_t *v, char *out, size_t len)
{
    if (json_is_number(v))
        snprintf(out, len, "%.2f%%", json_number_value(v) * 100);
    else
        snprintf(out, len, "-");
}

static void num_text(const json_t *v, const char *unit, char *out, size_t len)
{
    if (json_is_integer(v))
        snprintf(out, len, "%lld%s", (long long)json_integer_value(v), unit);
    else if (json_is_number(v))
        snprintf(out, len, "%g%s", json_number_value(v), unit);
    else
        snprintf(out, len, "-");
}

/* A time of the API (RFC 3339, milliseconds) to the second, as the other commands show times. */
static const char *when(const json_t *o, const char *key, char *out, size_t len)
{
    const char *t = str(o, key), *dot = strchr(t, '.');
    if (dot != NULL && t[strlen(t) - 1] == 'Z')
        snprintf(out, len, "%.*sZ", (int)(dot - t), t);
    else
        snprintf(out, len, "%s", t);
    return out;
}

/* The canary: "10% of the dataplanes", "labels canary=true", or the first step's share. */
static void canary_text(const json_t *c, char *out, size_t len)
{
    if (!json_is_object(c)) {
        snprintf(out, len, "none: the first step's share");
        return;
    }
    json_t *labels = json_object_get(c, "labels");
    if (json_is_object(labels)) {
        size_t used = (size_t)snprintf(out, len, "labels");
        const char *k;
        json_t *v;
        json_object_foreach(labels, k, v)
        {
            if (used < len)
                used += (size_t)snprintf(out + used, len - used, " %s=%s", k, json_is_string(v) ? json_string_value(v) : "?");
        }
    } else {
        num_text(json_object_get(c, "percent"), "% of the dataplanes", out, len);
    }
}

/* The status table of one rollout. */
static void print_status(ctl_t *ctl, const json_t *r)
{
    const char *bold = ctl->color ? "\033[1m" : "", *reset = ctl->color ? "\033[0m" : "";
    char id[64], from[32], ver[32], canary[256];
    id_text(json_object_get(r, "id"), id, sizeof(id));
    num_text(json_object_get(r, "version"), "", ver, sizeof(ver));
    num_text(json_object_get(r, "from_version"), "", from, sizeof(from));
    canary_text(json_object_get(r, "canary"), canary, sizeof(canary));
    fprintf(ctl->out, "%srollout %s: %s%s, version %s (from %s)\n", bold, id, str(r, "state"), reset, ver, from);
    json_t *steps = json_object_get(r, "steps"), *step = json_object_get(r, "step");
    size_t nsteps = json_array_size(steps);
    fprintf(ctl->out, "canary     %s\n", canary);
    if (json_is_integer(step)) {
        json_int_t k = json_integer_value(step);
        /* `step` is an index into `steps` */
        json_t *cur = json_array_get(steps, (size_t)k);
        char pct[32] = "", hold[64] = "";
        if (cur != NULL) {
            num_text(json_object_get(cur, "percent"), "%", pct, sizeof(pct));
            if (json_is_string(json_object_get(cur, "hold")))
                snprintf(hold, sizeof(hold), ", hold %s", str(cur, "hold"));
        }
        fprintf(ctl->out, "step       %lld of %zu%s%s%s%s\n", (long long)k + 1, nsteps, cur != NULL ? " (" : "", pct, hold,
                cur != NULL ? ")" : "");
    }
    json_t *dps = json_object_get(r, "dataplanes"), *d;
    size_t i;
    fprintf(ctl->out, "dataplanes %zu in the step", json_array_size(dps));
    json_array_foreach(dps, i, d)
    {
        char t[128];
        id_text(d, t, sizeof(t));
        fprintf(ctl->out, "%s%s", i == 0 ? ": " : ", ", t);
    }
    char t1[40], t2[40];
    fprintf(ctl->out, "\nupdated    %s (created %s)\n", when(r, "updated_at", t1, sizeof(t1)),
            when(r, "created_at", t2, sizeof(t2)));
    json_t *verdicts = json_object_get(r, "verdicts"), *v;
    if (json_array_size(verdicts) == 0) {
        fprintf(ctl->out, "\nno verdict yet\n");
        return;
    }
    fprintf(ctl->out, "\n%-22s %-12s %10s %10s %10s %10s %10s %10s  %s\n", "AT", "RESULT", "CANARY ERR", "BASE ERR", "CANARY P99",
            "BASE P99", "CANARY N", "BASE N", "REASON");
    json_array_foreach(verdicts, i, v)
    {
        json_t *c = json_object_get(v, "canary"), *b = json_object_get(v, "baseline");
        char ce[32], be[32], cp[32], bp[32], cn[32], bn[32];
        rate_text(json_object_get(c, "error_rate"), ce, sizeof(ce));
        rate_text(json_object_get(b, "error_rate"), be, sizeof(be));
        num_text(json_object_get(c, "p99_ms"), "ms", cp, sizeof(cp));
        num_text(json_object_get(b, "p99_ms"), "ms", bp, sizeof(bp));
        num_text(json_object_get(c, "requests"), "", cn, sizeof(cn));
        num_text(json_object_get(b, "requests"), "", bn, sizeof(bn));
        const char *res = str(v, "result");
        const char *color = !ctl->color ? "" : strcmp(res, "fail") == 0 ? "\033[31m" : strcmp(res, "pass") == 0 ? "\033[32m" : "";
        fprintf(ctl->out, "%-22s %s%-12s%s %10s %10s %10s %10s %10s %10s  %s\n", when(v, "at", t1, sizeof(t1)), color, res, reset,
                ce, be, cp, bp, cn, bn, str(v, "reason"));
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* `rollout status [ID] [--watch]`. */
static int rollout_status(ctl_t *ctl, const ctl_args_t *args, const char *given_id)
{
    char id[128], path[256];
    int rc = CTL_EXIT_OK, watch = (args->given & CTL_OPT_WATCH) != 0, json = (args->given & CTL_OPT_JSON) != 0;
    if (given_id != NULL)
        snprintf(id, sizeof(id), "%s", given_id);
    else if (current_id(ctl, 1, id, sizeof(id), &rc) != 0)
        return rc;
    char *e = ctl_escape(ctl, id);
    snprintf(path, sizeof(path), "/v1/rollouts/%s", e != NULL ? e : id);
    free(e);
    int tty = isatty(fileno(ctl->out));
    char *shown = NULL; /* the last frame drawn (its JSON), so a pipe gets a frame only when it changes */
    for (;;) {
        uint64_t started = now_ms();
        json_t *r = call_json(ctl, "GET", path, &rc);
        if (r == NULL)
            break;
        char *text = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
        if (!watch || tty || shown == NULL || text == NULL || strcmp(text, shown) != 0) {
            if (json) {
                print_json(ctl, r, watch ? JSON_COMPACT : JSON_INDENT(2));
            } else {
                if (watch && tty)
                    fputs("\033[H\033[2J", ctl->out); /* redraw in place */
                else if (watch && shown != NULL)
                    fputc('\n', ctl->out);
                print_status(ctl, r);
            }
            fflush(ctl->out);
        }
        free(shown);
        shown = text;
        const char *state = str(r, "state");
        int over = ended(state);
        if (watch && over)
            rc = strcmp(state, "promoted") == 0 ? CTL_EXIT_OK : CTL_EXIT_REJECTED;
        json_decref(r);
        if (!watch || over)
            break;
        uint64_t spent = now_ms() - started;
        if (spent < WATCH_PERIOD_MS)
            usleep((useconds_t)(WATCH_PERIOD_MS - spent) * 1000);
    }
    free(shown);
    return rc;
}

/* `rollout list`. */
static int rollout_list(ctl_t *ctl, const ctl_args_t *args)
{
    int rc = CTL_EXIT_OK;
    json_t *raw, *list = list_rollouts(ctl, &raw, &rc), *r;
    if (list == NULL)
        return rc;
    if (args->given & CTL_OPT_JSON) {
        print_json(ctl, raw, JSON_INDENT(2));
    } else if (json_array_size(list) == 0) {
        fprintf(ctl->out, "no rollout yet\n");
    } else {
        fprintf(ctl->out, "%-8s %-12s %-8s %-6s %-10s %-22s %s\n", "ID", "STATE", "VERSION", "FROM", "STEP", "CREATED", "CANARY");
        size_t i;
        json_array_foreach(list, i, r)
        {
            char id[64], ver[32], from[32], step[32], canary[256], created[40];
            id_text(json_object_get(r, "id"), id, sizeof(id));
            num_text(json_object_get(r, "version"), "", ver, sizeof(ver));
            num_text(json_object_get(r, "from_version"), "", from, sizeof(from));
            json_t *k = json_object_get(r, "step");
            if (json_is_integer(k))
                snprintf(step, sizeof(step), "%lld/%zu", (long long)json_integer_value(k) + 1,
                         json_array_size(json_object_get(r, "steps")));
            else
                snprintf(step, sizeof(step), "-");
            canary_text(json_object_get(r, "canary"), canary, sizeof(canary));
            fprintf(ctl->out, "%-8s %-12s %-8s %-6s %-10s %-22s %s\n", id, str(r, "state"), ver, from, step,
                    when(r, "created_at", created, sizeof(created)), canary);
        }
    }
    json_decref(raw);
    return CTL_EXIT_OK;
}

/* `rollout pause|resume|promote|abort [ID]`. */
static int rollout_act(ctl_t *ctl, const ctl_args_t *args, const char *action, const char *given_id)
{
    char id[128], path[300];
    int rc = CTL_EXIT_OK;
    if (given_id != NULL)
        snprintf(id, sizeof(id), "%s", given_id);
    else if (current_id(ctl, 0, id, sizeof(id), &rc) != 0)
        return rc;
    char *e = ctl_escape(ctl, id);
    snprintf(path, sizeof(path), "/v1/rollouts/%s/%s", e != NULL ? e : id, action);
    free(e);
    json_t *r = call_json(ctl, "POST", path, &rc);
    if (r == NULL)
        return rc;
    if (args->given & CTL_OPT_JSON) {
        print_json(ctl, r, JSON_INDENT(2));
    } else {
        const char *state = str(r, "state");
        fprintf(ctl->out, "rollout %s: %s%s\n", id, state[0] != '\0' ? state : action, state[0] != '\0' ? "" : " asked");
    }
    json_decref(r);
    return CTL_EXIT_OK;
}

int ctl_cmd_rollout(ctl_t *ctl, const ctl_args_t *args)
{
    static const char *const subs[] = {"status", "list", "pause", "resume", "promote", "abort"};
    const char *sub = args->positional[0], *id = args->npositional > 1 ? args->positional[1] : NULL;
    size_t nsubs = sizeof(subs) / sizeof(subs[0]), k;
    for (k = 0; k != nsubs && strcmp(subs[k], sub) != 0; ++k)
        ;
    if (k == nsubs) {
        const char *near = ctl_suggest(sub, subs, nsubs);
        fprintf(ctl->err,
                "pathwayctl rollout: unknown subcommand \"%s\"%s%s%s; one of status, list, pause, resume, promote, abort\n", sub,
                near != NULL ? " (did you mean \"" : "", near != NULL ? near : "", near != NULL ? "\"?)" : "");
        return CTL_EXIT_USAGE;
    }
    if ((args->given & CTL_OPT_WATCH) && k != 0) {
        fprintf(ctl->err, "pathwayctl rollout %s: --watch is for `rollout status`\n", sub);
        return CTL_EXIT_USAGE;
    }
    if (k == 1 && id != NULL) {
        fprintf(ctl->err, "pathwayctl rollout list: takes no ID\n");
        return CTL_EXIT_USAGE;
    }
    if (k == 0)
        return rollout_status(ctl, args, id);
    if (k == 1)
        return rollout_list(ctl, args);
    return rollout_act(ctl, args, sub, id);
}
