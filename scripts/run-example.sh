#!/bin/sh
# make run: two mock upstreams (eth on 8545, poly on 8547) and the dataplane on the example config,
# in the foreground. Ctrl-C stops the dataplane; the mocks are stopped on the way out.
#   usage: scripts/run-example.sh <builddir> <config>
set -eu
build=${1:-build}
config=${2:-examples/standalone.yaml}
mock="$build/tools/pathway-mock-upstream"
pathway="$build/dataplane/pathway"
for b in "$mock" "$pathway"; do
    [ -x "$b" ] || { echo "run-example: $b is not built (run make build)" >&2; exit 1; }
done
"$pathway" --check -c "$config" >/dev/null

pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$mock" --port 8545 & pids="$pids $!"
"$mock" --port 8547 & pids="$pids $!"
sleep 0.2

# the relay and admin addresses as the config file has them
listen=$(sed -n 's/^ *- address: *\([^ #]*\).*/\1/p' "$config" | head -n 1)
admin=$(awk '/^admin:/{a=1; next} a && /address:/{print $2; exit}' "$config")
"$pathway" -c "$config" &
pw=$!
pids="$pids $pw"
cat <<MSG
pathway: relaying on $listen, admin on $admin (Ctrl-C stops everything)
try:
  curl -s -X POST -H 'Content-Type: application/json' \\
       --data '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' http://$listen/v1/eth
  curl -s -X POST -H 'Target-Service-Id: poly' --data '{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}' http://$listen/v1
  curl -s http://$admin/stats
  kill -HUP $pw   or   curl -X POST -H 'Content-Type: application/json' -d '{}' http://$admin/reload
MSG
wait "$pw"
