/* dp_errors: the table of dp_errors.h, expanded. */
#include "dp_errors.h"

#define DP_RETRY_RETRY 1
#define DP_RETRY_FINAL 0
#define DP_BLAME_EP 1
#define DP_BLAME_NONE 0

const dp_error_info_t dp_errors[DP_ERR__COUNT] = {
#define DP_ERROR_ROW(n, st, code, retry, blame, msg) [DP_ERR_##n] = {#n, st, code, DP_RETRY_##retry, DP_BLAME_##blame, msg},
    DP_ERRORS(DP_ERROR_ROW)
#undef DP_ERROR_ROW
};

dp_error_t dp_framing_error(dp_framing_t f)
{
    switch (f) {
    case DP_FRAMING_CL_AND_TE:
        return DP_ERR_FRAMING_CL_AND_TE;
    case DP_FRAMING_DUPLICATE_CL:
        return DP_ERR_FRAMING_DUPLICATE_CL;
    case DP_FRAMING_NO_HOST:
        return DP_ERR_FRAMING_NO_HOST;
    case DP_FRAMING_DUPLICATE_HOST:
        return DP_ERR_FRAMING_DUPLICATE_HOST;
    default:
        return DP_ERR_FRAMING_UNREADABLE;
    }
}
