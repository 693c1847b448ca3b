/*
 * dp_ws_target: an endpoint's ws_url made ready for the relay, once per endpoint on the main thread
 * (names resolved here, so workers never block on DNS). The endpoint's headers and the URL's
 * user:pass go into a fixed request head like its HTTP requests' (dp_rpc_head_prefix), and a wss
 * URL gets a TLS context of its own from the endpoint's tls settings: the endpoint's HTTP context
 * may offer h2 by ALPN, and a WebSocket upgrade is HTTP/1.1 only.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_internal.h"
#include "dp_rpc.h"
#include "pw_log.h"

/* RFC 6066 section 3: a literal IP address is not sent as SNI (libh2o sends any name it is given). */
static void drop_sni(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_START) != 0 && !SSL_is_server(ssl))
        SSL_set_tlsext_host_name((SSL *)ssl, NULL);
}

static int setup_tls(dp_wstarget_t *t, const cfg_endpoint_t *e, const char *field, cfg_errors_t *errs)
{
    const cfg_upstream_tls_t *tls = &e->tls;
    int verify = e->has_tls ? tls->verify : 1;
    t->server_name = strdup(e->has_tls && tls->server_name != NULL ? tls->server_name : e->ws_host);
    if (t->server_name == NULL || (t->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        cfg_errors_add(errs, "%s: out of memory", field);
        return -1;
    }
    SSL_CTX_set_min_proto_version(t->ssl_ctx, TLS1_2_VERSION);
    unsigned char ipbuf[16];
    int is_ip = inet_pton(AF_INET, t->server_name, ipbuf) == 1 || inet_pton(AF_INET6, t->server_name, ipbuf) == 1;
    if (is_ip)
        SSL_CTX_set_info_callback(t->ssl_ctx, drop_sni);
    if (!verify) {
        SSL_CTX_set_verify(t->ssl_ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    SSL_CTX_set_verify(t->ssl_ctx, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(t->ssl_ctx);
    if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, t->server_name) : X509_VERIFY_PARAM_set1_host(param, t->server_name, 0)) !=
        1) {
        cfg_errors_add(errs, "%s.ws_url: cannot verify the name %s", field, t->server_name);
        return -1;
    }
    if (e->has_tls && tls->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(t->ssl_ctx, tls->ca_file, NULL) != 1) {
            cfg_errors_add(errs, "%s.tls.ca_file: cannot read CA bundle %s", field, tls->ca_file);
            return -1;
        }
    } else if (SSL_CTX_set_default_verify_paths(t->ssl_ctx) != 1) {
        cfg_errors_add(errs, "%s: cannot load the system CA store", field);
        return -1;
    }
    return 0;
}

int dp_ws_target_create(dp_endpoint_t *ep, const cfg_endpoint_t *e, const char *field, cfg_errors_t *errs)
{
    if (e->ws_url == NULL)
        return 0;
    dp_wstarget_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        cfg_errors_add(errs, "%s: out of memory", field);
        return -1;
    }
    t->is_tls = e->ws_is_tls;
    int v6 = strchr(e->ws_host, ':') != NULL;
    char hh[300];
    int n = snprintf(hh, sizeof(hh), "%s%s%s", v6 ? "[" : "", e->ws_host, v6 ? "]" : "");
    if (e->ws_port != (e->ws_is_tls ? 443 : 80) && n > 0 && (size_t)n < sizeof(hh))
        snprintf(hh + n, sizeof(hh) - (size_t)n, ":%u", (unsigned)e->ws_port);
    /* the endpoint's POST prefix made into a GET one: the same headers and credentials, one writer */
    const char *herr = NULL;
    size_t pl = 0;
    char *prefix = dp_rpc_head_prefix(e->ws_path != NULL ? e->ws_path : "/", hh, e->headers.entries, e->headers.size,
                                      e->ws_userinfo, &pl, &herr);
    if (herr != NULL) {
        cfg_errors_add(errs, "%s.headers: %s", field, herr);
        goto Error;
    }
    static const char cl[] = "content-length: ";
    if (prefix == NULL || pl < 5 + sizeof(cl) - 1 || memcmp(prefix, "POST ", 5) != 0) {
        free(prefix);
        cfg_errors_add(errs, "%s: out of memory", field);
        goto Error;
    }
    pl -= sizeof(cl) - 1;
    memcpy(prefix, "GET", 3);
    memmove(prefix + 3, prefix + 4, pl - 4);
    pl -= 1;
    prefix[pl] = '\0';
    t->head_prefix = h2o_iovec_init(prefix, pl);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)e->ws_port);
    int gai = getaddrinfo(e->ws_host, portstr, &hints, &res);
    if (gai == 0 && res != NULL && res->ai_addrlen <= sizeof(t->addr)) {
        memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
        t->addrlen = res->ai_addrlen;
    } else {
        PW_WARN("%s.ws_url: cannot resolve %s (%s); WebSocket handshakes to it fail over until a reload", field, e->ws_host,
                gai != 0 ? gai_strerror(gai) : "no address");
    }
    if (res != NULL)
        freeaddrinfo(res);
    if (t->is_tls && setup_tls(t, e, field, errs) != 0)
        goto Error;
    ep->ws = t;
    return 0;
Error:
    dp_ws_target_destroy(t);
    return -1;
}

void dp_ws_target_destroy(dp_wstarget_t *t)
{
    if (t == NULL)
        return;
    if (t->ssl_ctx != NULL)
        SSL_CTX_free(t->ssl_ctx);
    free(t->server_name);
    free(t->head_prefix.base);
    free(t);
}
