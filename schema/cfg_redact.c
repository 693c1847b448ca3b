/*
 * Secrets in a document: hosted node providers put the API key in the endpoint URL (path, query
 * or user:pass) or in a header. Every surface a viewer, a metric or a log line reaches shows the
 * document through these two calls.
 */
#include "cfg.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *cfg_redact_url(const char *url)
{
    const char *scheme_end = strstr(url, "://");
    if (scheme_end == NULL || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0 &&
                               strncmp(url, "ws://", 5) != 0 && strncmp(url, "wss://", 6) != 0))
        return strdup(CFG_REDACTED);
    const char *auth = scheme_end + 3;
    size_t auth_len = strcspn(auth, "/?#");
    const char *rest = auth + auth_len;
    /* the host starts after the last '@' of the authority */
    const char *host = auth;
    for (const char *c = auth; c < rest; c++)
        if (*c == '@')
            host = c + 1;
    size_t path_len = strcspn(rest, "?#");
    int has_query = rest[path_len] == '?';
    int keep_path = path_len == 0 || (path_len == 1 && rest[0] == '/');
    char *out = NULL;
    if (asprintf(&out, "%.*s%s%.*s%s%s%s", (int)(auth - url), url, host != auth ? CFG_REDACTED "@" : "", (int)(rest - host), host,
                 keep_path ? (path_len == 1 ? "/" : "") : "/" CFG_REDACTED, has_query ? "?" : "",
                 has_query ? CFG_REDACTED : "") < 0)
        return NULL;
    return out;
}

static void redact_endpoint(json_t *ep)
{
    static const char *const urls[] = {"url", "ws_url"};
    for (size_t i = 0; i != sizeof(urls) / sizeof(urls[0]); ++i) {
        json_t *url = json_object_get(ep, urls[i]);
        if (json_is_string(url)) {
            char *r = cfg_redact_url(json_string_value(url));
            json_object_set_new(ep, urls[i], r != NULL ? json_string(r) : json_string(CFG_REDACTED));
            free(r);
        }
    }
    json_t *headers = json_object_get(ep, "headers");
    const char *name;
    json_t *value;
    json_object_foreach(headers, name, value)
    {
        json_object_set_new(headers, name, json_string(CFG_REDACTED));
    }
}

json_t *cfg_redact(const json_t *doc)
{
    json_t *copy = json_deep_copy(doc);
    if (copy == NULL)
        return NULL;
    size_t i, j;
    json_t *svc, *ep;
    json_array_foreach(json_object_get(copy, "services"), i, svc)
    {
        json_array_foreach(json_object_get(svc, "endpoints"), j, ep)
        {
            if (json_is_object(ep))
                redact_endpoint(ep);
        }
    }
    return copy;
}
