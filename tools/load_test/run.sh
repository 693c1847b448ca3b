#!/bin/sh
# Pathway's load test (docs/load_test.md); `make load_test` calls this. The work is in load_test.py
# (Python 3, standard library only) driving wrk with evm.lua.
exec python3 "$(dirname "$0")/load_test.py" "$@"
