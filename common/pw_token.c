#include "pw_token.h"
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *pw_token_read(const char *path, const char *what, char **err)
{
    char *out = NULL;
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        if (asprintf(err, "%s %s: cannot open: %s", what, path, strerror(errno)) < 0)
            *err = NULL;
        return NULL;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    int too_long = !feof(fp) && fgetc(fp) != EOF;
    fclose(fp);
    buf[n] = '\0';
    char *p = buf;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    n = strlen(p);
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        p[--n] = '\0';
    if (too_long || n == 0 || strpbrk(p, "\r\n") != NULL || strlen(p) != n) {
        if (asprintf(err, "%s %s: must hold one token on one line (at most %zu bytes)", what, path, sizeof(buf) - 1) < 0)
            *err = NULL;
        OPENSSL_cleanse(buf, sizeof(buf));
        return NULL;
    }
    if ((out = strdup(p)) == NULL && asprintf(err, "out of memory") < 0)
        *err = NULL;
    OPENSSL_cleanse(buf, sizeof(buf));
    return out;
}

int pw_token_equal(const char *token, const char *given, size_t len)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), a);
    SHA256((const unsigned char *)given, len, b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}
