#!/usr/bin/env bash
# CI performance gate. Run by .ci/run; refresh the instruction baseline with
#   scripts/bench-gate.sh --update
# Binaries come from ${CARGO_TARGET_DIR:-target}/release.
#
# (a) Deterministic: instructions per unary call of the protocol core,
#     counted by callgrind on an in-process run (bench/src/bin/gate_calls.rs,
#     c16, 32 B). Fails above +5 % of bench/gate/instructions_per_call.
# (b) Wall clock, c128/32B, raw UDP and nRPC measured in SLICES alternating
#     pairs of SLICE_MS each on sockets and a session kept open
#     (`nrpc_qps --slices`, spin 0: both sides park at once, so CPU time is
#     work, not polling); each nRPC slice is divided by the raw slice just
#     before it, and the gate takes the MEDIAN over the pairs of
#       - the CPU-per-call ratio <= bench/gate/cpu_ratio_bound: the
#         regression detector (CPU time of every bench process per call;
#         time a loaded machine keeps us off the CPU is not in it);
#       - the mean-latency ratio <= bench/gate/mean_ratio_bound and the p99
#         ratio <= bench/gate/p99_ratio_bound: loose guards against added
#         waits and stalls (on a loaded 2-core machine both move with the
#         load by up to 2x, so they cannot be tight).
#     Bounds and the runs they come from: docs/BENCHMARKS.md, "CI gate".
# (c) The SDK point: instructions per unary call through the public API
#     (bench/src/bin/gate_sdk.rs: `Mesh::call` awaited on tokio, c1, 32 B,
#     two meshes in one process on an in-process network), counted per
#     thread by callgrind (--fair-sched: threads take turns in a fixed
#     way). Two figures against bench/gate/sdk_instructions_per_call
#     ("<calling thread> <whole round trip>"): the calling thread's (the
#     SDK's calling side: the future, the hand-off, the wake; repeatable
#     to 2 %) may rise 5 %; the whole round trip (both cores too, whose
#     timers fire by the wall clock, so the count moves with the machine's
#     speed: 37 250-43 618 in eighteen runs of four versions) may rise 15 %.
#     A run over a bound is measured up to twice more; the gate fails only
#     if every measurement is over.
#     Both sides run with `--gro off`: the bounds were set against a raw
#     echo that receives one datagram per message. With UDP GRO (net-io's
#     default since 2026-12-03) the raw echo takes and answers up to 64
#     datagrams per kernel crossing and its CPU per call falls ~5x, while
#     nRPC at c128 already carries ~128 calls per datagram and gains little;
#     the ratio would then move for reasons that are not a regression of
#     nRPC. docs/BENCHMARKS.md ("UDP GRO") has both baselines.
set -euo pipefail
cd "$(dirname "$0")/.."

update=false
[ "${1:-}" = "--update" ] && update=true
SLICES=${GATE_SLICES:-16}
SLICE_MS=${GATE_SLICE_MS:-250}

command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
command -v python3 >/dev/null || { echo "bench-gate: python3 is required" >&2; exit 2; }

cargo build --release -q -p net-bench --bin gate_calls --bin gate_sdk --bin nrpc_qps
bin=${CARGO_TARGET_DIR:-target}/release

instructions() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin/gate_calls" "$1" 2>&1 \
        | awk '/Collected :/ {print $NF}'
}
small=2000 large=12000
i_small=$(instructions $small)
i_large=$(instructions $large)
per_call=$(( (i_large - i_small) / (large - small) ))
base_file=bench/gate/instructions_per_call
if $update; then
    echo "$per_call" > "$base_file"
    echo "bench-gate: instructions per call baseline := $per_call"
else
    base=$(cat "$base_file")
    limit=$(( base * 105 / 100 ))
    echo "bench-gate (a): $per_call instructions per call (baseline $base, limit $limit)"
    if [ "$per_call" -gt "$limit" ]; then
        echo "bench-gate: FAIL — instructions per call rose more than 5 % ($base -> $per_call)" >&2
        exit 1
    fi
fi

# Prints "<calling thread> <all threads>" instructions of `gate_sdk N`.
sdk_instructions() {
    local dir
    dir=$(mktemp -d)
    valgrind --tool=callgrind --fair-sched=yes --separate-threads=yes \
        --callgrind-out-file="$dir/cg.%p" "$bin/gate_sdk" "$1" >/dev/null 2>&1
    # Thread 1 is the main thread: the tokio runtime that awaits the calls.
    awk '/^totals:/ { all += $2; if (FILENAME ~ /-01$/) main = $2 } END { print main, all }' "$dir"/cg.*-*
    rm -rf "$dir"
}
s_small=1000 s_large=6000
read -r m_small a_small <<<"$(sdk_instructions $s_small)"
read -r m_large a_large <<<"$(sdk_instructions $s_large)"
sdk_main=$(( (m_large - m_small) / (s_large - s_small) ))
sdk_all=$(( (a_large - a_small) / (s_large - s_small) ))
sdk_file=bench/gate/sdk_instructions_per_call
if $update; then
    echo "$sdk_main $sdk_all" > "$sdk_file"
    echo "bench-gate: SDK instructions per call baseline := calling thread $sdk_main, round trip $sdk_all"
else
    read -r base_main base_all < "$sdk_file"
    lim_main=$(( base_main * 105 / 100 )) lim_all=$(( base_all * 115 / 100 ))
    echo "bench-gate (c): SDK call: $sdk_main instructions on the calling thread (baseline $base_main, limit $lim_main), $sdk_all per round trip (baseline $base_all, limit $lim_all)"
    if [ "$sdk_main" -gt "$lim_main" ] || [ "$sdk_all" -gt "$lim_all" ]; then
        echo "bench-gate: FAIL — SDK instructions per call rose over a limit" >&2
        exit 1
    fi
fi

cpu_bound=$(cat bench/gate/cpu_ratio_bound)
mean_bound=$(cat bench/gate/mean_ratio_bound)
p99_bound=$(cat bench/gate/p99_ratio_bound)

# One sliced run; prints "<verdict> <cpu median> <mean median> <p99 median>" on stdout
# (verdict: ok or over) and the spreads on stderr; returns 2 if it could
# not measure.
sliced() {
    local json out
    json=$(mktemp)
    if ! "$bin/nrpc_qps" --conc 128 --payload 32 --slices "$SLICES" --slice-ms "$SLICE_MS" \
        --spin-us 0 --warmup-ms 500 --handshake-ms 0 --gro off --system nrpc --mode engine --json "$json" >/dev/null; then
        rm -f "$json"
        echo "bench-gate: nrpc_qps failed" >&2
        return 2
    fi
    out=$(python3 - "$json" "$cpu_bound" "$mean_bound" "$p99_bound" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["slices"][0]
cpu_bound, mean_bound, p99_bound = map(float, sys.argv[2:5])
if s["cpu_ratio"] is None:
    sys.exit("bench-gate: no CPU figures (is /proc/<pid>/task/*/schedstat readable?)")
for k in ("cpu_ratio", "mean_ratio", "p99_ratio", "p50_ratio", "qps_ratio",
          "raw_cpu_ns_per_call", "sys_cpu_ns_per_call"):
    d = s[k]
    p = 0 if k.endswith("_call") else 3
    print(f'bench-gate (b):   {k} median {d["median"]:.{p}f} (min {d["min"]:.{p}f}, '
          f'IQR {d["q1"]:.{p}f}-{d["q3"]:.{p}f}, max {d["max"]:.{p}f}) over '
          f'{len(s["pairs"]) - s["skipped"]} of {len(s["pairs"])} pairs', file=sys.stderr)
cpu, mean, p99 = (s[k]["median"] for k in ("cpu_ratio", "mean_ratio", "p99_ratio"))
over = cpu > cpu_bound or mean > mean_bound or p99 > p99_bound
print(f'{"over" if over else "ok"} {cpu:.3f} {mean:.3f} {p99:.3f}')
PY
    ) || { rm -f "$json"; return 2; }
    rm -f "$json"
    echo "$out"
}

result=$(sliced)
read -r verdict cpu mean p99 <<<"$result"
# A regression is persistent, a burst of machine noise is not: a run over a
# bound is measured up to twice more, and the gate fails only if every
# measurement is over. (One CI run on unchanged code, right after the test
# stage, read 0.967 then 0.725; seven later runs read 0.60-0.62.)
for attempt in 2 3; do
    if $update || [ "$verdict" != over ]; then
        break
    fi
    echo "bench-gate: c128 median ratios cpu $cpu / mean $mean / p99 $p99 over a bound ($cpu_bound / $mean_bound / $p99_bound); measuring again ($attempt of 3)" >&2
    result=$(sliced)
    read -r verdict cpu mean p99 <<<"$result"
done
echo "bench-gate (b): c128/32B median slice ratios nrpc/raw: CPU per call $cpu (bound $cpu_bound), mean latency $mean (bound $mean_bound), p99 $p99 (bound $p99_bound)"
if ! $update && [ "$verdict" = over ]; then
    echo "bench-gate: FAIL — c128 median slice ratio over its bound in all three runs (CPU per call $cpu vs $cpu_bound, mean latency $mean vs $mean_bound, p99 $p99 vs $p99_bound)" >&2
    exit 1
fi
echo "bench-gate: ok"
