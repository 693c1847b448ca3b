/*
 * cfg_redact and cfg_redact_url for a schema/ that does not have them yet. controlplane/CMakeLists.txt
 * compiles this file only while schema/cfg.h lacks cfg_redact; the schema's own implementation
 * replaces it as soon as it is there. Same contract as declared in cfg.h there.
 */
#include "cp_redact_fallback.h"

#include <stdlib.h>
#include <string.h>

#define REDACTED "<redacted>"

char *cfg_redact_url(const char *url)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL)
        return strdup(REDACTED); /* not a URL we know how to take apart: all of it */
    const char *auth = sep + 3, *auth_end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth_end; p++)
        if (*p == '@')
            at = p;
    const char *host = at != NULL ? at + 1 : auth;
    const char *path = auth_end, *path_end = path + strcspn(path, "?#");
    size_t cap = strlen(url) + 4 * sizeof(REDACTED) + 8;
    char *out = malloc(cap), *o = out;
    if (out == NULL)
        return NULL;
    memcpy(o, url, (size_t)(auth - url));
    o += auth - url;
    if (at != NULL) {
        memcpy(o, REDACTED "@", sizeof(REDACTED));
        o += sizeof(REDACTED);
    }
    memcpy(o, host, (size_t)(auth_end - host));
    o += auth_end - host;
    if (path_end - path == 1) { /* a bare "/" says nothing */
        *o++ = '/';
    } else if (path_end > path) {
        memcpy(o, "/" REDACTED, sizeof(REDACTED));
        o += sizeof(REDACTED);
    }
    if (*path_end == '?') {
        memcpy(o, "?" REDACTED, sizeof(REDACTED));
        o += sizeof(REDACTED);
        path_end += 1 + strcspn(path_end + 1, "#");
    }
    if (*path_end == '#') {
        memcpy(o, "#" REDACTED, sizeof(REDACTED));
        o += sizeof(REDACTED);
    }
    *o = '\0';
    return out;
}

static int redact_endpoint(json_t *ep)
{
    json_t *url = json_object_get(ep, "url");
    if (json_is_string(url)) {
        char *r = cfg_redact_url(json_string_value(url));
        if (r == NULL || json_object_set_new(ep, "url", json_string(r)) != 0) {
            free(r);
            return -1;
        }
        free(r);
    }
    json_t *headers = json_object_get(ep, "headers");
    const char *name;
    json_t *value;
    if (json_is_object(headers)) {
        json_object_foreach(headers, name, value)
        {
            if (json_object_set_new(headers, name, json_string(REDACTED)) != 0)
                return -1;
        }
    }
    return 0;
}

json_t *cfg_redact(const json_t *doc)
{
    json_t *copy = json_deep_copy(doc);
    json_t *services = json_object_get(copy, "services");
    size_t i, j;
    json_t *svc, *ep;
    if (json_is_array(services)) {
        json_array_foreach(services, i, svc)
        {
            json_t *eps = json_object_get(svc, "endpoints");
            if (!json_is_array(eps))
                continue;
            json_array_foreach(eps, j, ep)
            {
                if (json_is_object(ep) && redact_endpoint(ep) != 0) {
                    json_decref(copy);
                    return NULL;
                }
            }
        }
    }
    return copy;
}
