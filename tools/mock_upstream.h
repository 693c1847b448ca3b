/*
 * pathway-mock-upstream's parts as its files see them: mock_upstream.c (the relay listener, faults,
 * the capacity model, the command line), mock_chain.c (the chain head and what each method
 * answers) and mock_control.c (the control listener that changes the settings while the mock
 * runs). Not for other programs.
 */
#ifndef PATHWAY_MOCK_UPSTREAM_H
#define PATHWAY_MOCK_UPSTREAM_H

#include <stdint.h>
#include <jansson.h>
#include "h2o.h"

#define MOCK_MAX_METHOD_TIMES 16

/* FAULT_REFUSE: the relay listener is closed (connects are refused) and its connections reset */
typedef enum { FAULT_NONE = 0, FAULT_RESET, FAULT_HANG, FAULT_GARBAGE, FAULT_SLOW_BODY, FAULT_CLOSE_AFTER, FAULT_REFUSE } fault_t;

/* what the command line sets; the control listener changes some of them while the mock runs */
typedef struct st_mopt_t {
    const char *host;
    uint16_t port;
    uint64_t latency_ms, jitter_ms;
    double error_rate;
    uint64_t response_size; /* 0 = natural results */
    int chunked;            /* no content-length: the response is chunked */
    fault_t fault;
    double fault_rate;
    uint64_t close_after;           /* FAULT_CLOSE_AFTER: requests per connection */
    const char *tls_cert, *tls_key; /* both set: serve https (HTTP/1.1) */
    int error_code;                 /* JSON-RPC code of --error-rate's errors */
    int status;                     /* HTTP status of JSON-RPC answers (0 = 200) */
    double status_rate;             /* fraction of JSON-RPC answers that get `status` (the others 200) */
    const char *fault_method;       /* faults only for requests calling this method (NULL = all) */
    uint64_t start_block;           /* the head at start */
    uint64_t block_time_ms;         /* the head advances by one every block_time_ms (0 = it stays) */
    uint64_t lag;                   /* eth_blockNumber answers this many blocks behind the head */
    uint16_t control_port;          /* 0 = no control listener */
    int ws_refuse_status;           /* WebSocket upgrades answered with this HTTP status; 0 = accepted */
    /* the capacity model: K parallel workers, each request holds one for its service time; requests
     * beyond K wait in a FIFO inside the mock (so latency grows with concurrency) */
    uint32_t capacity;        /* K; 0 = as many as there are requests */
    uint64_t service_time_ms; /* a request's service time (its method's, when listed in method_time) */
    size_t nmethod_time;
    struct {
        char *method;
        uint64_t ms;
    } method_time[MOCK_MAX_METHOD_TIMES]; /* --method-time NAME=MS: service time by method */
} mopt_t;

extern mopt_t opt;

/* GET /control's counters (POST /control/reset-counters zeroes them; /reset-stats does not) */
typedef struct st_mock_counters_t {
    uint64_t requests; /* JSON-RPC requests received on the relay listener */
    json_t *by_method; /* {"method": calls}: each call of a batch counts */
} mock_counters_t;
extern mock_counters_t ctl;

/* --- mock_chain.c --- */
/* The head eth_blockNumber answers now (the chain's head less opt.lag). */
uint64_t answered_head(void);
/* Changes the block time without making the head jump. */
void set_block_time(uint64_t ms);
/* The chain starts at `head` now. */
void chain_start(uint64_t head);
/* The answer to one call of a request (a new reference): its result, an injected error
 * (--error-rate, counted in ctl_errors) or "method not found". */
json_t *answer_one(json_t *call);
/* Counts a request received on the relay listener, and its calls by method (ctl). */
void count_request(json_t *body);
/* JSON-RPC errors injected so far (GET /stats "errors"). */
extern uint64_t ctl_errors;
/* A uniform random number in [0, 1); the monotonic clock in ms. */
double rnd(void);
uint64_t now_ms(void);

/* --- mock_upstream.c, for the control listener --- */
/* Sends doc (taken) as the JSON body of a response. */
void send_doc(h2o_req_t *req, int status, json_t *doc, int chunked);
/* Closes the relay listener and resets its connections (fault "refuse"). */
void refuse_relay(void);
/* Listens on the relay port again; -1 with *err when it cannot. */
int reopen_relay(const char **err);
/* After opt.capacity changed: a raised K starts queued requests at once. */
void capacity_changed(void);
/* The capacity model's state for GET /control: busy workers, queued requests. */
void capacity_state(uint64_t *busy, uint64_t *queued);
/* Parses "NAME=MS" into o->method_time (replacing NAME's entry); -1 when malformed or full. */
int parse_method_time(const char *s, mopt_t *o);

/* --- mock_ws.c --- */
/* Takes a WebSocket upgrade request (1), or leaves req alone (0). */
int mock_ws_on_req(h2o_req_t *req);
/* WebSockets open, and their subscriptions (GET /stats). */
extern uint64_t mock_ws_open, mock_ws_subscriptions;
/* The code and reason of the last close a client sent (0 = none yet). */
extern int mock_ws_last_close;
extern char mock_ws_last_close_reason[124];
/* "<path> authorization=<value> x-api-key=<value>" of the last upgrade request. */
extern char mock_ws_last_upgrade[512];

/* --- mock_control.c --- */
/* Parses a --fault / "fault" kind into o; -1 when it is none of them. */
int parse_fault(const char *s, mopt_t *o);
/* A request on the control listener: GET/POST /control, POST /control/reset-counters. */
int on_control(h2o_req_t *req);

#endif
