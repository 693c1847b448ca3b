/*
 * fuzz_dp_h2: an upstream's HTTP/2 bytes (after the client preface: the server's SETTINGS, then
 * anything), read by a client session set up as dp_h2 sets its own up, its response head through
 * dp_h2_resp_header / dp_h2_resp_done (h2_drive.h). Oracles: cutting the bytes anywhere never
 * changes the outcome; a head that is accepted has a final status and at most DP_H1_MAX_HEADERS
 * headers; a stream that ended with a content-length got exactly that many bytes. The first byte
 * picks the cuts.
 */
#include <stdint.h>
#include <stdlib.h>
#include "h2_drive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = data[0] * 2654435761u + 1;
    data++, size--;
    h2_outcome_t whole, cut;
    if (h2_drive(data, size, NULL, 0, &whole) != 0)
        return 0;
    size_t cuts[32], ncuts = 0, at = 0;
    while (ncuts < sizeof(cuts) / sizeof(cuts[0]) && size != 0) {
        seed = seed * 1103515245u + 12345u;
        size_t step = (seed >> 16) % (size / 4 + 2);
        if ((at += step) > size)
            break;
        cuts[ncuts++] = at;
    }
    if (h2_drive(data, size, cuts, ncuts, &cut) != 0)
        return 0;
    if (!h2_outcome_equal(&whole, &cut))
        abort(); /* the cuts changed the verdict */
    if (whole.head == 1 && (whole.status < 200 || whole.status > 599 || whole.nheaders > DP_H1_MAX_HEADERS))
        abort();
    if (whole.ended && !whole.session_error && whole.mode == DP_H1_BODY_LENGTH && whole.body_len != whole.content_length &&
        whole.close_code == 0)
        abort();
    return 0;
}
