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

/* The standard reason phrase of a status (RFC 9110 section 15), for the gateway's own answers. */
const char *dp_status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 499:
        return "Client Closed Request"; /* nginx's, for the log: the client never sees it */
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}
