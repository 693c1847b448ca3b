#!/usr/bin/env bash
# Builds every libFuzzer target with clang + ASan/UBSan and runs each for FUZZ_SECONDS (default 60)
# over its seed corpus, keeping what it finds in build-fuzz/corpus/<target>.
# Usage: scripts/fuzz.sh [target...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
declare -A seeds=([fuzz_cfg]=cfg [fuzz_cp_body]=controlplane [fuzz_dp_rpc]=dataplane [fuzz_dp_h1parse]=h1parse [fuzz_dp_classify]=classify [fuzz_ctl_set]=tools)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${!seeds[@]}")
CC=clang cmake -S . -B build-fuzz -DFUZZ=ON -DSANITIZE=address,undefined >/dev/null
for t in "${targets[@]}"; do
    [ -n "${seeds[$t]:-}" ] || { echo "fuzz.sh: unknown target $t" >&2; exit 2; }
    cmake --build build-fuzz -j "$(nproc)" --target "$t" >/dev/null
    mkdir -p "build-fuzz/corpus/$t"
    echo "== $t: ${secs}s"
    "build-fuzz/tests/fuzz/$t" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 \
        "build-fuzz/corpus/$t" "tests/fuzz/seeds/${seeds[$t]}" 2>&1 | grep -E '^stat::number_of_executed_units|ERROR|SUMMARY' || true
done
