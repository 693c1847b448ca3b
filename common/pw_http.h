/*
 * pw_http: small HTTP facts every binary needs, with no HTTP library behind them.
 */
#ifndef PATHWAY_PW_HTTP_H
#define PATHWAY_PW_HTTP_H

/* The reason phrase of `status` as RFC 9110 names it (499 is nginx's "Client Closed Request", which
 * the gateway logs and counts for clients that left), for every status a Pathway binary sends and
 * the common ones an upstream answers with (the dataplane writes them when an upstream's own phrase
 * cannot be relayed).
 * Returns a static string; "" for a status not in the table, which libh2o writes as an empty
 * reason ("HTTP/1.1 599 \r\n", allowed by RFC 9112) and HTTP/2 never sends. */
const char *pw_http_reason(int status);

#endif
