#!/bin/sh
# make bench: Pathway vs nginx vs haproxy side by side (see bench.py and docs/benchmarks.md).
#   usage: tools/bench/run.sh <builddir> [--rounds N] [--seconds S] [--no-valgrind]
set -eu
here=$(dirname "$0")
build=${1:-build}
[ $# -gt 0 ] && shift
exec python3 "$here/bench.py" "$build" "$@"
