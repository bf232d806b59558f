#!/usr/bin/env bash
# Runs every cargo-fuzz target (or the ones named) for SECONDS each
# (default 60): with AddressSanitizer where the toolchain allows it
# (RUSTC_BOOTSTRAP=1 on stable), else with --sanitizer none. Debug
# assertions are on (integer overflow traps). New inputs go to a scratch
# directory, so the committed seed corpora stay small; a crash is saved in
# fuzz/artifacts/<target>/ — commit it after fixing the bug, and
# `cargo test` replays it forever after.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600 frames # 10 minutes of one target
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:-60}
[ $# -gt 0 ] && shift
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

mode=(--sanitizer none)
env_prefix=()
if RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a "${targets[0]}" >/dev/null 2>&1; then
    mode=()
    env_prefix=(env RUSTC_BOOTSTRAP=1)
    echo "fuzz: AddressSanitizer build"
else
    echo "fuzz: AddressSanitizer unavailable here; --sanitizer none"
fi

status=0
for t in "${targets[@]}"; do
    work=$(mktemp -d)
    log=$(mktemp)
    if "${env_prefix[@]}" cargo fuzz run -O -a "${mode[@]}" "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -o 'Done [0-9]* runs' "$log" | awk '{print $2}' | tail -n 1)
        cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
        echo "fuzz: $t ok — ${runs:-?} runs in ${secs}s, ${cov:-coverage n/a}"
    else
        echo "fuzz: $t FAILED — see below; crash input saved under fuzz/artifacts/$t/" >&2
        tail -n 40 "$log" >&2
        status=1
    fi
    rm -rf "$work" "$log"
done
exit $status
