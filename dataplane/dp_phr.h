/*
 * dp_phr: the picohttpparser calls the dataplane uses. picohttpparser is built into libh2o and its
 * symbols are exported, but its header is not installed; these declarations match libh2o 2.2.5's
 * copy (lib/common/picohttpparser.h there).
 */
#ifndef PATHWAY_DP_PHR_H
#define PATHWAY_DP_PHR_H

#include <stddef.h>
#include <sys/types.h>

struct phr_header {
    const char *name; /* NULL with name_len 0 for an obs-fold continuation line */
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};

/* Each returns the length of the head parsed, -1 on a parse error, -2 when incomplete. */
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path, size_t *path_len,
                      int *minor_version, struct phr_header *headers, size_t *num_headers, size_t last_len);
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers, size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

#endif
