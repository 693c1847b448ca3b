/*
 * The one place pathwayctl talks HTTP: libcurl's easy interface, one handle per run so the
 * commands that make several calls (apply reads the ETag first) reuse one connection.
 */
#include "ctl.h"
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESPONSE (64u * 1024 * 1024) /* a history page or a document is far smaller */

int ctl_http_init(ctl_t *ctl)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    ctl->_curl = curl_easy_init();
    return ctl->_curl != NULL ? 0 : -1;
}

void ctl_http_dispose(ctl_t *ctl)
{
    if (ctl->_curl != NULL)
        curl_easy_cleanup(ctl->_curl);
    ctl->_curl = NULL;
    curl_global_cleanup();
}

void ctl_response_dispose(ctl_response_t *res)
{
    free(res->body);
    memset(res, 0, sizeof(*res));
}

char *ctl_escape(ctl_t *ctl, const char *s)
{
    char *e = curl_easy_escape(ctl->_curl, s, 0);
    char *out = e != NULL ? strdup(e) : NULL; /* so that the caller frees with free() */
    curl_free(e);
    return out;
}

int ctl_status_exit(long status)
{
    if (status >= 200 && status < 300)
        return CTL_EXIT_OK;
    if (status == 401 || status == 403 || (status >= 502 && status <= 504))
        return CTL_EXIT_UNREACHABLE;
    return CTL_EXIT_REJECTED;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    ctl_response_t *res = user;
    size_t n = size * nmemb;
    if (res->len + n + 1 > MAX_RESPONSE)
        return 0; /* curl reports CURLE_WRITE_ERROR */
    char *b = realloc(res->body, res->len + n + 1);
    if (b == NULL)
        return 0;
    memcpy(b + res->len, data, n);
    res->len += n;
    b[res->len] = '\0';
    res->body = b;
    return n;
}

/* Copies a header's value (trimmed, without the quotes of an entity tag) when the line is `name`;
 * "" when it is longer than outlen - 1. */
static void take_header(const char *line, size_t n, const char *name, char *out, size_t outlen, int unquote)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
        e--;
    if (unquote) {
        if (e - v >= 2 && v[0] == 'W' && v[1] == '/')
            v += 2;
        if (e - v >= 2 && *v == '"' && e[-1] == '"') {
            v++;
            e--;
        }
    }
    /* a value that does not fit is dropped, not cut: a cut ETag could read as another version */
    if ((size_t)(e - v) >= outlen)
        out[0] = '\0';
    else
        snprintf(out, outlen, "%.*s", (int)(e - v), v);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
    ctl_response_t *res = user;
    size_t n = size * nmemb;
    take_header(data, n, "ETag", res->etag, sizeof(res->etag), 1);
    take_header(data, n, "Content-Type", res->content_type, sizeof(res->content_type), 0);
    return n;
}

int ctl_request(ctl_t *ctl, const char *method, const char *path, const char *const *headers, const char *body, size_t len,
                ctl_response_t *res)
{
    CURL *c = ctl->_curl;
    memset(res, 0, sizeof(*res));
    size_t ulen = strlen(ctl->conn.url) + strlen(path) + 1;
    char *url = malloc(ulen);
    if (url == NULL)
        return -1;
    snprintf(url, ulen, "%s%s", ctl->conn.url, path);

    struct curl_slist *hl = NULL;
    char auth[4096];
    if (ctl->conn.token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ctl->conn.token);
        hl = curl_slist_append(hl, auth);
    }
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip for bodies */
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        hl = curl_slist_append(hl, headers[i]);

    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ctl->conn.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(ctl->conn.timeout_ms < 5000 ? ctl->conn.timeout_ms : 5000));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, res);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, res);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "pathwayctl");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hl);
    free(url);
    if (rc != CURLE_OK) {
        fprintf(ctl->err, "pathwayctl: cannot reach the control plane at %s: %s\n", ctl->conn.url,
                errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
        ctl_response_dispose(res);
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
    if (res->body == NULL) {
        res->body = strdup("");
        if (res->body == NULL)
            return -1;
    }
    return 0;
}
