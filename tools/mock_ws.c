/*
 * pathway-mock-upstream's WebSocket endpoint: any request with Upgrade: websocket on the relay
 * listener. JSON-RPC over text messages:
 *   eth_subscribe ["newHeads"]  a subscription id; then an eth_subscription notification with a
 *                               newHeads object (the head the chain has) every --block-time
 *   eth_unsubscribe [id]        true when it was a subscription of this connection
 *   mock_close [code, reason]   the mock closes the connection with that code and reason
 *   mock_flood [count, bytes]   pushes `count` text messages of `bytes` bytes as fast as the
 *                               connection takes them (at most 4 MiB queued in the mock)
 *   anything else               answered as over HTTP (answer_one)
 * A close from the client is echoed with its code (wslay does); GET /stats shows the last one
 * (ws_last_close, ws_last_close_reason), and what the last upgrade request carried (ws_last_upgrade:
 * its path, authorization and x-api-key). --ws-refuse STATUS (or the
 * control key ws_refuse_status) answers upgrades with that HTTP status instead.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>
#include "h2o/websocket.h"
#include "mock_upstream.h"

#define FLOOD_QUEUE_MAX (4u << 20)

typedef struct st_mws_t {
    h2o_websocket_conn_t *conn;
    h2o_linklist_t link;      /* in conns_ */
    uint64_t subs[8];         /* subscription ids; 0 = free slot */
    uint64_t flood_left;      /* mock_flood messages still to push */
    size_t flood_bytes;       /* their size */
    h2o_timeout_entry_t pump; /* pushes the flood */
} mws_t;

static h2o_linklist_t conns_ = {&conns_, &conns_};
static h2o_timeout_entry_t heads_timer_;
static h2o_timeout_t heads_timeout_;
static uint64_t heads_timeout_ms_;
static h2o_timeout_t pump_timeout_;
static int pump_timeout_init_;
static uint64_t next_sub_ = 0x1000;
static h2o_loop_t *loop_;
uint64_t mock_ws_open, mock_ws_subscriptions;
char mock_ws_last_upgrade[512];      /* the path, authorization and x-api-key of the last upgrade request */
int mock_ws_last_close;              /* the code of the last close a client sent (0 = none yet) */
char mock_ws_last_close_reason[124]; /* and its reason */

static void send_text(mws_t *m, const char *s, size_t len)
{
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)s, len};
    wslay_event_queue_msg(m->conn->ws_ctx, &msg);
}

static void send_json_msg(mws_t *m, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (s != NULL) {
        send_text(m, s, strlen(s));
        free(s);
    }
}

static void push_heads(h2o_timeout_entry_t *entry);

static void arm_heads(void)
{
    if (opt.block_time_ms == 0 || h2o_linklist_is_empty(&conns_) || h2o_timeout_is_linked(&heads_timer_))
        return;
    if (heads_timeout_ms_ != opt.block_time_ms) {
        if (heads_timeout_ms_ != 0)
            h2o_timeout_dispose(loop_, &heads_timeout_);
        h2o_timeout_init(loop_, &heads_timeout_, opt.block_time_ms);
        heads_timeout_ms_ = opt.block_time_ms;
    }
    heads_timer_.cb = push_heads;
    h2o_timeout_link(loop_, &heads_timeout_, &heads_timer_);
}

static void push_heads(h2o_timeout_entry_t *entry)
{
    (void)entry;
    uint64_t head = answered_head();
    char num[32], hash[80], parent[80];
    snprintf(num, sizeof(num), "0x%" PRIx64, head);
    snprintf(hash, sizeof(hash), "0x%064" PRIx64, head);
    snprintf(parent, sizeof(parent), "0x%064" PRIx64, head != 0 ? head - 1 : 0);
    for (h2o_linklist_t *l = conns_.next, *next; l != &conns_; l = next) {
        next = l->next; /* proceeding may close (and free) m */
        mws_t *m = H2O_STRUCT_FROM_MEMBER(mws_t, link, l);
        int any = 0;
        for (size_t i = 0; i != sizeof(m->subs) / sizeof(m->subs[0]); ++i) {
            if (m->subs[i] == 0)
                continue;
            char id[32];
            snprintf(id, sizeof(id), "0x%" PRIx64, m->subs[i]);
            send_json_msg(m, json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s, s:s, s:s}}}", "jsonrpc", "2.0", "method",
                                       "eth_subscription", "params", "subscription", id, "result", "number", num, "hash", hash,
                                       "parentHash", parent, "miner", "0x0000000000000000000000000000000000000000"));
            any = 1;
        }
        if (any)
            h2o_websocket_proceed(m->conn);
    }
    arm_heads();
}

static void flood_more(h2o_timeout_entry_t *entry)
{
    mws_t *m = H2O_STRUCT_FROM_MEMBER(mws_t, pump, entry);
    char *buf = malloc(m->flood_bytes);
    if (buf == NULL)
        return;
    memset(buf, 'x', m->flood_bytes);
    while (m->flood_left != 0 && wslay_event_get_queued_msg_length(m->conn->ws_ctx) < FLOOD_QUEUE_MAX) {
        send_text(m, buf, m->flood_bytes);
        m->flood_left--;
    }
    free(buf);
    if (m->flood_left != 0)
        h2o_timeout_link(loop_, &pump_timeout_, &m->pump);
    h2o_websocket_proceed(m->conn);
}

static void on_ws_msg(h2o_websocket_conn_t *conn, const struct wslay_event_on_msg_recv_arg *arg)
{
    mws_t *m = conn->data;
    if (arg == NULL) {
        h2o_linklist_unlink(&m->link);
        if (h2o_timeout_is_linked(&m->pump))
            h2o_timeout_unlink(&m->pump);
        for (size_t i = 0; i != sizeof(m->subs) / sizeof(m->subs[0]); ++i)
            if (m->subs[i] != 0)
                mock_ws_subscriptions--;
        mock_ws_open--;
        h2o_websocket_close(conn);
        free(m);
        return;
    }
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        mock_ws_last_close = arg->status_code;
        size_t n = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        if (n >= sizeof(mock_ws_last_close_reason))
            n = sizeof(mock_ws_last_close_reason) - 1;
        memcpy(mock_ws_last_close_reason, arg->msg + 2, n);
        mock_ws_last_close_reason[n] = '\0';
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return;
    json_t *call = json_loadb((const char *)arg->msg, arg->msg_length, 0, NULL);
    const char *method = json_is_object(call) ? json_string_value(json_object_get(call, "method")) : NULL;
    json_t *id = json_is_object(call) ? json_object_get(call, "id") : NULL;
    json_t *params = json_is_object(call) ? json_object_get(call, "params") : NULL;
    json_t *result = NULL;
    if (method != NULL && strcmp(method, "eth_subscribe") == 0) {
        const char *kind = json_string_value(json_array_get(params, 0));
        size_t slot = 0;
        while (slot != sizeof(m->subs) / sizeof(m->subs[0]) && m->subs[slot] != 0)
            slot++;
        if (kind == NULL || strcmp(kind, "newHeads") != 0 || slot == sizeof(m->subs) / sizeof(m->subs[0])) {
            send_json_msg(m, json_pack("{s:s, s:O?, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", -32602, "message",
                                       "the mock subscribes only to newHeads, at most 8 per connection"));
        } else {
            char sid[32];
            m->subs[slot] = next_sub_++;
            mock_ws_subscriptions++;
            snprintf(sid, sizeof(sid), "0x%" PRIx64, m->subs[slot]);
            result = json_string(sid);
            arm_heads();
        }
    } else if (method != NULL && strcmp(method, "eth_unsubscribe") == 0) {
        const char *sid = json_string_value(json_array_get(params, 0));
        uint64_t v = sid != NULL ? strtoull(sid, NULL, 16) : 0;
        int found = 0;
        for (size_t i = 0; v != 0 && i != sizeof(m->subs) / sizeof(m->subs[0]); ++i)
            if (m->subs[i] == v) {
                m->subs[i] = 0;
                mock_ws_subscriptions--;
                found = 1;
            }
        result = json_boolean(found);
    } else if (method != NULL && strcmp(method, "mock_close") == 0) {
        json_int_t code = json_integer_value(json_array_get(params, 0));
        const char *reason = json_string_value(json_array_get(params, 1));
        wslay_event_queue_close(conn->ws_ctx, (uint16_t)code, (const uint8_t *)reason, reason != NULL ? strlen(reason) : 0);
    } else if (method != NULL && strcmp(method, "mock_flood") == 0) {
        m->flood_left = (uint64_t)json_integer_value(json_array_get(params, 0));
        m->flood_bytes = (size_t)json_integer_value(json_array_get(params, 1));
        if (m->flood_bytes == 0 || m->flood_bytes > (64u << 20))
            m->flood_left = 0;
        result = json_true();
        if (m->flood_left != 0) {
            m->pump.cb = flood_more;
            h2o_timeout_link(loop_, &pump_timeout_, &m->pump);
        }
    } else if (call != NULL) {
        count_request(call);
        json_t *answer = answer_one(call);
        if (answer != NULL)
            send_json_msg(m, answer);
    }
    if (result != NULL)
        send_json_msg(m, json_pack("{s:s, s:O?, s:o}", "jsonrpc", "2.0", "id", id, "result", result));
    json_decref(call);
    /* no h2o_websocket_proceed here: this runs inside wslay_event_recv, which must not be entered
     * again; h2o sends what was queued when the read that called us is done */
}

int mock_ws_on_req(h2o_req_t *req)
{
    const char *key = NULL;
    if (h2o_is_websocket_handshake(req, &key) != 0 || key == NULL)
        return 0;
    loop_ = req->conn->ctx->loop;
    ssize_t ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    ssize_t ki = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-api-key"), -1);
    snprintf(mock_ws_last_upgrade, sizeof(mock_ws_last_upgrade), "%.*s authorization=%.*s x-api-key=%.*s", (int)req->path.len,
             req->path.base, ai != -1 ? (int)req->headers.entries[ai].value.len : 0,
             ai != -1 ? req->headers.entries[ai].value.base : "", ki != -1 ? (int)req->headers.entries[ki].value.len : 0,
             ki != -1 ? req->headers.entries[ki].value.base : "");
    if (!pump_timeout_init_) {
        h2o_timeout_init(loop_, &pump_timeout_, 1);
        pump_timeout_init_ = 1;
    }
    if (opt.ws_refuse_status != 0) {
        req->res.status = opt.ws_refuse_status;
        req->res.reason = "Refused";
        h2o_send_inline(req, H2O_STRLIT("websocket refused by the mock\n"));
        return 1;
    }
    mws_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return 0;
    m->conn = h2o_upgrade_to_websocket(req, key, m, on_ws_msg);
    h2o_linklist_insert(&conns_, &m->link);
    mock_ws_open++;
    return 1;
}
