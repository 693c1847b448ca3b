#!/bin/sh
# make bench: Pathway vs nginx vs haproxy side by side (bench.py: throughput, latency, CPU, memory),
# then instructions per relay from callgrind (callgrind.py), with a row for an answer from the response
# cache and one for an HTTP/2 upstream. See docs/benchmarks.md.
#   usage: tools/bench/run.sh <builddir> [--rounds N] [--seconds S] [--no-valgrind]
set -eu
here=$(dirname "$0")
build=${1:-build}
[ $# -gt 0 ] && shift
python3 "$here/bench.py" "$build" "$@"
case " $* " in
*" --no-valgrind "*) ;;
*) python3 "$here/callgrind.py" "$build" --peers --h2 --variant 'cache hit=cache: {enabled: true, ttl: {realtime: 1h}}' ;;
esac
