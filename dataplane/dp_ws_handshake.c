/*
 * dp_ws_handshake: Pathway's side of the upstream WebSocket handshake (RFC 6455 section 4): the
 * request head it sends and the check of the answer. The answer is outside input (any endpoint may
 * send anything): it is parsed with picohttpparser within DP_WS_MAX_ANSWER bytes, and only a 101
 * that upgrades to websocket with the accept key our own key asks for lets the tunnel start.
 */
#include <string.h>
#include <stdlib.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include "h2o/string_.h"
#include "dp_phr.h"
#include "dp_ws.h"

const char *const dp_ws_failure_names[DP_WS_FAIL__COUNT] = {
#define DP_WS_FAILURE_NAME(n, s) s,
    DP_WS_FAILURES(DP_WS_FAILURE_NAME)
#undef DP_WS_FAILURE_NAME
};

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void dp_ws_accept_key(const char *key, size_t key_len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL || EVP_DigestInit_ex(c, EVP_sha1(), NULL) != 1 || EVP_DigestUpdate(c, key, key_len) != 1 ||
        EVP_DigestUpdate(c, WS_GUID, sizeof(WS_GUID) - 1) != 1 || EVP_DigestFinal_ex(c, md, &mdlen) != 1)
        mdlen = 0; /* out of memory: an accept key that matches nothing */
    EVP_MD_CTX_free(c);
    if (mdlen == 0) {
        memset(out, 0, DP_WS_ACCEPT_LEN + 1);
        return;
    }
    size_t n = h2o_base64_encode(out, md, mdlen, 0);
    out[n] = '\0';
}

void dp_ws_make_key(char *out)
{
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        /* the key only proves the answer is fresh, not a secret: any bytes do */
        for (size_t i = 0; i != sizeof(nonce); ++i)
            nonce[i] = (unsigned char)rand();
    }
    size_t n = h2o_base64_encode(out, nonce, sizeof(nonce), 0);
    out[n] = '\0';
}

static int name_is(const struct phr_header *h, const char *lc)
{
    return h->name != NULL && h2o_lcstris(h->name, h->name_len, lc, strlen(lc));
}

dp_ws_answer_t dp_ws_parse_answer(const char *buf, size_t len, const char *key, size_t *headlen, int *status, const char **protocol,
                                  size_t *protocol_len)
{
    struct phr_header headers[64];
    size_t nheaders = sizeof(headers) / sizeof(headers[0]);
    int minor = 0;
    const char *msg;
    size_t msg_len;
    *status = 0;
    *headlen = 0;
    *protocol = NULL;
    *protocol_len = 0;
    int r = phr_parse_response(buf, len < DP_WS_MAX_ANSWER ? len : DP_WS_MAX_ANSWER, &minor, status, &msg, &msg_len, headers,
                               &nheaders, 0);
    if (r == -2)
        return len < DP_WS_MAX_ANSWER ? DP_WS_ANSWER_INCOMPLETE : DP_WS_ANSWER_BAD;
    if (r < 0) {
        *status = 0;
        return DP_WS_ANSWER_BAD;
    }
    if (*status != 101)
        return *status >= 100 && *status <= 599 ? DP_WS_ANSWER_STATUS : DP_WS_ANSWER_BAD;
    if (minor != 1)
        return DP_WS_ANSWER_BAD;
    int upgrade = 0, connection = 0, accepts = 0;
    const char *accept = NULL;
    size_t accept_len = 0;
    for (size_t i = 0; i != nheaders; ++i) {
        const struct phr_header *h = headers + i;
        if (name_is(h, "upgrade")) {
            upgrade |= h2o_lcstris(h->value, h->value_len, H2O_STRLIT("websocket"));
        } else if (name_is(h, "connection")) {
            connection |= h2o_contains_token(h->value, h->value_len, H2O_STRLIT("upgrade"), ',');
        } else if (name_is(h, "sec-websocket-accept")) {
            accept = h->value;
            accept_len = h->value_len;
            accepts++;
        } else if (name_is(h, "sec-websocket-extensions")) {
            /* none was offered: frames with RSV bits of an extension could not be relayed */
            if (h->value_len != 0)
                return DP_WS_ANSWER_BAD;
        } else if (name_is(h, "sec-websocket-protocol")) {
            *protocol = h->value;
            *protocol_len = h->value_len;
        }
    }
    if (!upgrade || !connection)
        return DP_WS_ANSWER_BAD;
    char expect[DP_WS_ACCEPT_LEN + 1];
    dp_ws_accept_key(key, DP_WS_KEY_LEN, expect);
    if (accepts != 1 || accept_len != DP_WS_ACCEPT_LEN || memcmp(accept, expect, DP_WS_ACCEPT_LEN) != 0)
        return DP_WS_ANSWER_BAD_ACCEPT;
    *headlen = (size_t)r;
    return DP_WS_ANSWER_OK;
}

char *dp_ws_request_head(const char *prefix, size_t prefix_len, const char *key, const char *protocols, size_t protocols_len,
                         size_t *len)
{
    static const char up[] = "upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: ";
    static const char proto[] = "\r\nsec-websocket-protocol: ";
    size_t cap = prefix_len + sizeof(up) + DP_WS_KEY_LEN + sizeof(proto) + protocols_len + sizeof("\r\n\r\n");
    char *out = malloc(cap), *p = out;
    if (out == NULL)
        return NULL;
    memcpy(p, prefix, prefix_len);
    p += prefix_len;
    memcpy(p, up, sizeof(up) - 1);
    p += sizeof(up) - 1;
    memcpy(p, key, DP_WS_KEY_LEN);
    p += DP_WS_KEY_LEN;
    if (protocols != NULL && protocols_len != 0) {
        memcpy(p, proto, sizeof(proto) - 1);
        p += sizeof(proto) - 1;
        memcpy(p, protocols, protocols_len);
        p += protocols_len;
    }
    memcpy(p, "\r\n\r\n", 4);
    p += 4;
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
}
