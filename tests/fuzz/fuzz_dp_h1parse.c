/*
 * fuzz_dp_h1parse: the upstream's HTTP/1.1 response, as dp_h1parse reads it. The oracle: cutting
 * the bytes anywhere (as TCP may) never changes what the parser decides. The first byte picks the
 * cuts (a seed for a small generator) and whether the upstream closes at the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include "h1_drive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = data[0] * 2654435761u + 1;
    int eof = data[0] & 1;
    data++, size--;
    h1_outcome_t whole, cut;
    if (h1_drive(data, size, NULL, 0, eof, &whole) != 0)
        return 0;
    size_t cuts[64], ncuts = 0, at = 0;
    while (ncuts < sizeof(cuts) / sizeof(cuts[0]) && size != 0) {
        seed = seed * 1103515245u + 12345u;
        size_t step = (seed >> 16) % (size / 8 + 2);
        if ((at += step) > size)
            break;
        cuts[ncuts++] = at;
    }
    if (h1_drive(data, size, cuts, ncuts, eof, &cut) != 0) {
        h1_outcome_free(&whole);
        return 0;
    }
    if (!h1_outcome_equal(&whole, &cut))
        abort(); /* the cuts changed the verdict */
    if (whole.result == DP_H1_DONE && whole.head_done &&
        (whole.status < 200 || whole.status > 599 || whole.body_len > size ||
         (whole.mode == DP_H1_BODY_LENGTH && whole.body_len != whole.content_length)))
        abort();
    h1_outcome_free(&whole);
    h1_outcome_free(&cut);
    return 0;
}
