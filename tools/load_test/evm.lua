-- wrk script for Pathway's load test (docs/load_test.md): PATH's nine common EVM methods plus a
-- batch, round robin, to one service, and an optional request rate.
--
--   PW_LOAD_RATE=200 PW_LOAD_THREADS=1 wrk -t1 -c16 -d10s -s evm.lua http://127.0.0.1:3069/v1 -- SERVICE
--
-- SERVICE goes in the Target-Service-Id header (PATH's way of naming it). PW_LOAD_RATE is requests
-- per second for this wrk process (absent or 0 = as fast as the connections go); PW_LOAD_THREADS
-- must equal wrk's -t so that the rate is split between its threads.
--
-- Pacing (wrk itself cannot limit its rate): each wrk thread keeps a schedule of send slots,
-- 1/rate_per_thread apart. Before each request, wrk's delay() hook lets the connection claim the
-- next free slot and wait until it comes. A slot that has passed is not made up for later: when
-- the gateway is slower than the schedule, the achieved rate is lower and is what the report shows
-- (no burst follows a stall). Latency is timed by wrk from the moment the request is sent, so the
-- wait for a slot is not counted. The clock is CLOCK_MONOTONIC through LuaJIT's FFI.
--
-- done() prints one line "PWLOADTEST {json}" that tools/load_test/load_test.py reads: counters of
-- every thread, wrk's socket errors and latency percentiles (microseconds). wrk's "timeout" errors
-- are responses that came after --timeout: counted in "responses" (and, if 2xx, "http_ok") but not
-- in the latency percentiles; load_test.py counts them as failures.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pw_timespec_t;
int clock_gettime(int clk, pw_timespec_t *ts);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("pw_timespec_t")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local ADDRESS = "0x00000000219ab540356cBB839Cbe05303d7705Fa"
local TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
local TX = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"

-- the nine methods of PATH's load test, then a batch of four of them
local calls = {
  '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}',
  '{"jsonrpc":"2.0","id":2,"method":"eth_chainId","params":[]}',
  '{"jsonrpc":"2.0","id":3,"method":"eth_gasPrice","params":[]}',
  '{"jsonrpc":"2.0","id":4,"method":"eth_getBalance","params":["' .. ADDRESS .. '","latest"]}',
  '{"jsonrpc":"2.0","id":5,"method":"eth_getBlockByNumber","params":["latest",false]}',
  '{"jsonrpc":"2.0","id":6,"method":"eth_getTransactionCount","params":["' .. ADDRESS .. '","latest"]}',
  '{"jsonrpc":"2.0","id":7,"method":"eth_getTransactionReceipt","params":["' .. TX .. '"]}',
  '{"jsonrpc":"2.0","id":8,"method":"eth_getTransactionByHash","params":["' .. TX .. '"]}',
  '{"jsonrpc":"2.0","id":9,"method":"eth_call","params":[{"to":"' .. TOKEN ..
      '","data":"0x70a08231000000000000000000000000' .. ADDRESS:sub(3) .. '"},"latest"]}',
}
calls[#calls + 1] = "[" .. calls[1] .. "," .. calls[3] .. "," .. calls[4] .. "," .. calls[9] .. "]"

-- per thread (each wrk thread runs its own copy of this script)
local requests = {}
local next_req = 0
RATE = tonumber(os.getenv("PW_LOAD_RATE") or "0") or 0       -- requests/s of this wrk process
THREADS = tonumber(os.getenv("PW_LOAD_THREADS") or "1") or 1 -- its -t, to split the rate
local interval_ms = 0 -- between this thread's send slots
local next_slot = 0
started = 0      -- requests written (request() runs once per request): the unanswered ones tell a
                 -- lost request from an idle keep-alive close, both read errors to wrk
http_ok = 0      -- responses with a 2xx status (a late one, wrk's "timeout", is still here)
http_other = 0   -- responses with any other status
rpc_results = 0  -- JSON-RPC response objects with "result"
rpc_errors = 0   -- JSON-RPC response objects with "error" (or a body with neither)
status_counts = "" -- "status=count,..." of non-2xx statuses, for the report
local statuses = {}

-- the main state: collects the threads for done()
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local service = args[1] or "eth"
  local headers = {
    ["Content-Type"] = "application/json",
    ["Target-Service-Id"] = service,
  }
  for i, body in ipairs(calls) do
    requests[i] = wrk.format("POST", nil, headers, body)
  end
  if RATE > 0 then
    interval_ms = 1000 * THREADS / RATE
    next_slot = now_ms()
  end
end

function request()
  started = started + 1
  next_req = next_req % #requests + 1
  return requests[next_req]
end

-- delay() exists only when pacing: with it defined wrk waits on a timer before every request,
-- which would cost throughput at full speed. wrk checks for it in its main Lua state, before any
-- init(), so the rate comes from the environment.
if RATE > 0 then
  function delay()
    local now = now_ms()
    local slot = next_slot
    if slot < now then
      slot = now -- passed slots are dropped, not made up in a burst
    end
    next_slot = slot + interval_ms
    return math.floor(slot - now)
  end
end

local function count(body, pattern)
  local _, n = string.gsub(body, pattern, "")
  return n
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    http_ok = http_ok + 1
  else
    http_other = http_other + 1
    statuses[status] = (statuses[status] or 0) + 1
    local parts = {}
    for s, n in pairs(statuses) do
      parts[#parts + 1] = s .. "=" .. n
    end
    status_counts = table.concat(parts, ",")
  end
  local results = count(body, '"result"%s*:')
  local errors = count(body, '"error"%s*:')
  if results + errors == 0 then
    errors = 1 -- no JSON-RPC answer at all (an empty or foreign body) is a failed call
  end
  rpc_results = rpc_results + results
  rpc_errors = rpc_errors + errors
end

function done(summary, latency, requests_stats)
  local out = {
    started = 0, http_ok = 0, http_other = 0, rpc_results = 0, rpc_errors = 0,
  }
  local statuses_all = {}
  for _, t in ipairs(threads) do
    out.started = out.started + (t:get("started") or 0)
    out.http_ok = out.http_ok + (t:get("http_ok") or 0)
    out.http_other = out.http_other + (t:get("http_other") or 0)
    out.rpc_results = out.rpc_results + (t:get("rpc_results") or 0)
    out.rpc_errors = out.rpc_errors + (t:get("rpc_errors") or 0)
    local sc = t:get("status_counts") or ""
    for s, n in string.gmatch(sc, "(%d+)=(%d+)") do
      statuses_all[s] = (statuses_all[s] or 0) + tonumber(n)
    end
  end
  local st = {}
  for s, n in pairs(statuses_all) do
    st[#st + 1] = string.format('"%s":%d', s, n)
  end
  local e = summary.errors
  io.write(string.format(
    'PWLOADTEST {"duration_us":%d,"responses":%d,"started":%d,"bytes":%d,"http_ok":%d,"http_other":%d,' ..
    '"rpc_results":%d,"rpc_errors":%d,"statuses":{%s},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, out.started, summary.bytes, out.http_ok, out.http_other,
    out.rpc_results, out.rpc_errors, table.concat(st, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
