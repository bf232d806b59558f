#!/usr/bin/env bash
# Profile one nrpc_qps point (server + client) with perf and render a flamegraph.
#
#   scripts/flamegraph.sh CONC PAYLOAD DURATION_MS NAME
#   e.g. scripts/flamegraph.sh 1 32 5000 c1_32B
#
# Writes (all small, meant to be checked in):
#   flamegraphs/NAME.svg     inferno flamegraph (server and client threads side by side)
#   flamegraphs/NAME.folded  folded stacks (gzipped to NAME.folded.gz if >= 2 MB)
#   flamegraphs/NAME.txt     the run: command, perf settings, nrpc_qps output, breakdown
#
# One `perf record` covers both sides: nrpc_qps runs with --processes 1, so the
# echo server node is threads of the same process (its loop thread pinned to CPU
# SERVER_CPU, the client's to CLIENT_CPU). Both loop threads are named
# net-core-0, so samples are relabelled by the CPU they were taken on:
# server:net-core-0 / client:net-core-0.
#
# Knobs (environment):
#   FLAME_CALLGRAPH  perf --call-graph mode (default dwarf,24576; "fp" = frame
#                    pointers: far cheaper, but every inlined function collapses
#                    into Core::run and ring's assembly loses its callers)
#   FLAME_FREQ       sampling frequency in Hz (default 1999)
#   FLAME_MINWIDTH   inferno --minwidth in pixels (default 0.1)
#   SERVER_CPU / CLIENT_CPU  (default 0 / 1)
#   FLAME_MODE       engine (default: calls from the client core's own load
#                    generator), sdk (calls through net::Mesh::call from a
#                    tokio worker, whose thread then shows as tokio-rt-worker)
#                    or core (net::Mesh::call from futures on the client's
#                    core, Mesh::spawn_on_core)
#   FLAME_SKIP_BUILD=1  profile the existing target/profiling/nrpc_qps as is
#
# Needs perf (installs Debian's linux-perf if missing and we are root) and
# inferno (cargo install --locked inferno if missing). Builds the `profiling`
# cargo profile (release + debug info; .cargo/config.toml forces frame pointers).
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/flamegraph.sh CONC PAYLOAD DURATION_MS NAME

  CONC         calls in flight (e.g. 1, 128)
  PAYLOAD      payload bytes (>= 16, e.g. 32)
  DURATION_MS  measured time of the nrpc_qps point (warm-up 500 ms on top)
  NAME         output name: flamegraphs/NAME.{svg,folded,txt} ([A-Za-z0-9_.-]+)

example: scripts/flamegraph.sh 128 32 5000 c128_32B
env: FLAME_CALLGRAPH (dwarf,24576 | fp), FLAME_FREQ (1999), FLAME_MINWIDTH (0.1),
     SERVER_CPU (0), CLIENT_CPU (1), FLAME_SKIP_BUILD (0)
EOF
    exit 2
}

die() {
    echo "flamegraph.sh: error: $*" >&2
    exit 1
}
say() { echo "flamegraph.sh: $*" >&2; }

[[ $# -eq 4 ]] || usage
CONC=$1 PAYLOAD=$2 DURATION_MS=$3 NAME=$4
[[ $CONC =~ ^[1-9][0-9]*$ ]] || { echo "CONC must be a positive integer, got '$CONC'" >&2; usage; }
[[ $PAYLOAD =~ ^[1-9][0-9]*$ ]] || { echo "PAYLOAD must be a positive integer, got '$PAYLOAD'" >&2; usage; }
[[ $DURATION_MS =~ ^[1-9][0-9]*$ ]] || { echo "DURATION_MS must be a positive integer, got '$DURATION_MS'" >&2; usage; }
[[ $NAME =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "NAME must match [A-Za-z0-9_.-]+, got '$NAME'" >&2; usage; }

CALLGRAPH=${FLAME_CALLGRAPH:-dwarf,24576}
FREQ=${FLAME_FREQ:-1999}
MINWIDTH=${FLAME_MINWIDTH:-0.1}
MODE=${FLAME_MODE:-engine}
case $MODE in engine | sdk | core) ;; *) echo "flamegraph.sh: FLAME_MODE must be engine, sdk or core, not $MODE" >&2; exit 2 ;; esac
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WARMUP_MS=500

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/flamegraphs
mkdir -p "$OUT"

# --- tools --------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found"
command -v python3 >/dev/null || die "python3 not found (needed for the breakdown and the target dir)"
NCPU=$(nproc)
((SERVER_CPU < NCPU && CLIENT_CPU < NCPU)) ||
    die "need CPUs $SERVER_CPU and $CLIENT_CPU, this machine has $NCPU"

if ! command -v perf >/dev/null; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        say "perf missing: running 'apt-get update && apt-get install -y linux-perf' (Debian's package; 'apt-cache search linux-perf' lists it)"
        apt-get update
        apt-get install -y linux-perf || die "apt-get install linux-perf failed; install perf for this kernel by hand"
    else
        die "perf missing: install it (Debian: apt-get install linux-perf) or run as root to let this script do it"
    fi
fi
perf --version >/dev/null 2>&1 || die "perf is installed but does not run ('perf --version' failed)"

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    say "inferno missing: running 'cargo install --locked inferno' (compiles from crates.io, a few minutes; puts inferno-* in ~/.cargo/bin)"
    cargo install --locked inferno || die "cargo install --locked inferno failed"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/flamegraph.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# --- perf permissions ------------------------------------------------------------
# Root may profile regardless of perf_event_paranoid; others need it lowered for
# kernel stacks. Probe first, lower it only if the probe fails.
PARANOID=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo unknown)
if ! perf record -q -e cpu-clock -F "$FREQ" -g -o "$TMP/probe.data" -- true >/dev/null 2>&1; then
    if [[ $EUID -eq 0 ]] && [[ $PARANOID != -1 ]]; then
        say "perf record refused with kernel.perf_event_paranoid=$PARANOID: setting kernel.perf_event_paranoid=-1 (sysctl)"
        sysctl -w kernel.perf_event_paranoid=-1 >/dev/null ||
            echo -1 >/proc/sys/kernel/perf_event_paranoid ||
            die "could not set kernel.perf_event_paranoid"
        perf record -q -e cpu-clock -F "$FREQ" -g -o "$TMP/probe.data" -- true >/dev/null 2>&1 ||
            die "perf record still fails (cpu-clock software event); see 'perf record -e cpu-clock -- true'"
    else
        die "perf record fails (kernel.perf_event_paranoid=$PARANOID): run as root, or 'sysctl -w kernel.perf_event_paranoid=-1'"
    fi
else
    say "perf record works (kernel.perf_event_paranoid=$PARANOID, uid $EUID): leaving the sysctl alone"
fi
# Kernel frames need readable kallsyms addresses.
if [[ $(awk 'NR==1{print $1; exit}' /proc/kallsyms 2>/dev/null) =~ ^0+$ ]]; then
    if [[ $EUID -eq 0 ]]; then
        say "kernel symbol addresses are hidden: setting kernel.kptr_restrict=0 (sysctl) so kernel frames get names"
        sysctl -w kernel.kptr_restrict=0 >/dev/null || say "warning: could not set kernel.kptr_restrict; kernel frames will be [unknown]"
    else
        say "warning: /proc/kallsyms addresses are hidden; kernel frames will be [unknown] (run as root)"
    fi
fi

# --- build ------------------------------------------------------------------------
if [[ ${FLAME_SKIP_BUILD:-0} == 1 ]]; then
    say "FLAME_SKIP_BUILD=1: profiling the existing profiling build of nrpc_qps"
else
    say "building: cargo build --profile profiling -p net-bench --bin nrpc_qps"
    cargo build --profile profiling -p net-bench --bin nrpc_qps ||
        die "cargo build --profile profiling -p net-bench --bin nrpc_qps failed (see above)"
fi
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/profiling/nrpc_qps
[[ -x $BIN ]] || die "profiling binary not found at $BIN"

# --- record -------------------------------------------------------------------------
case $CALLGRAPH in
    fp) CG_ARGS=(-g) ;;
    *) CG_ARGS=(--call-graph "$CALLGRAPH") ;;
esac
RUN=("$BIN" --conc "$CONC" --payload "$PAYLOAD" --duration-ms "$DURATION_MS" --warmup-ms "$WARMUP_MS"
    --no-baseline --slices 0 --system nrpc --handshake-ms 0 --processes 1 --mode "$MODE" --server-cpu "$SERVER_CPU" --client-cpu "$CLIENT_CPU")
PERF=(perf record -e cpu-clock -F "$FREQ" "${CG_ARGS[@]}" --sample-cpu -o "$TMP/perf.data" --)
say "recording: ${PERF[*]} ${RUN[*]#"$TARGET_DIR/"}"
if ! "${PERF[@]}" "${RUN[@]}" >"$TMP/run.out" 2>"$TMP/perf.err"; then
    cat "$TMP/run.out" "$TMP/perf.err" >&2
    die "profiled run failed"
fi
cat "$TMP/run.out"
grep -h '^\[ perf record' "$TMP/perf.err" >&2 || true

# --- fold and render -------------------------------------------------------------
# perf script without the period field, so the folded counts are samples.
# Loop threads are relabelled by CPU (both sides call theirs net-core-0).
say "folding: perf script | relabel by CPU | inferno-collapse-perf --all"
printf -v SCPU '%03d' "$SERVER_CPU"
printf -v CCPU '%03d' "$CLIENT_CPU"
perf script -i "$TMP/perf.data" -F comm,tid,cpu,time,event,ip,sym,dso 2>"$TMP/script.err" |
    sed -E "s/^(net-core-[0-9]+)( +[0-9]+ +\[$SCPU\] )/server:\1\2/; s/^(net-core-[0-9]+)( +[0-9]+ +\[$CCPU\] )/client:\1\2/" |
    inferno-collapse-perf --all >"$TMP/out.folded" ||
    { cat "$TMP/script.err" >&2; die "perf script / inferno-collapse-perf failed"; }
[[ -s $TMP/out.folded ]] || { cat "$TMP/script.err" >&2; die "no stacks collected"; }

SAMPLES=$(awk '{n += $NF} END {print n}' "$TMP/out.folded")
QPS_LINE=$(grep -E '^\| [0-9]+ \| [0-9]+ B \|' "$TMP/run.out" | head -1 || true)
TITLE="nrpc_qps $MODE c$CONC ${PAYLOAD}B, server cpu$SERVER_CPU + client cpu$CLIENT_CPU (perf cpu-clock $FREQ Hz, $CALLGRAPH)"
SUBTITLE="$(date -u +%Y-%m-%d) — $SAMPLES samples — $(nproc) cores, kernel $(uname -r)"
inferno-flamegraph --title "$TITLE" --subtitle "$SUBTITLE" --colors rust --hash \
    --minwidth "$MINWIDTH" <"$TMP/out.folded" >"$OUT/$NAME.svg" ||
    die "inferno-flamegraph failed"

rm -f "$OUT/$NAME.folded" "$OUT/$NAME.folded.gz"
if (($(stat -c %s "$TMP/out.folded") < 2 * 1024 * 1024)); then
    cp "$TMP/out.folded" "$OUT/$NAME.folded"
    FOLDED=$OUT/$NAME.folded
else
    gzip -9 -c "$TMP/out.folded" >"$OUT/$NAME.folded.gz"
    FOLDED=$OUT/$NAME.folded.gz
fi

# --- notes ----------------------------------------------------------------------------
BREAKDOWN=$(python3 "$ROOT/scripts/flame-breakdown.py" --top 20 "$TMP/out.folded")
{
    echo "# flamegraphs/$NAME"
    echo
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) cores, kernel $(uname -r); $(perf --version)"
    echo "regenerate: FLAME_MODE=$MODE FLAME_CALLGRAPH=$CALLGRAPH scripts/flamegraph.sh $CONC $PAYLOAD $DURATION_MS $NAME"
    echo "perf: perf record -e cpu-clock -F $FREQ ${CG_ARGS[*]} --sample-cpu -- nrpc_qps ${RUN[*]:1}"
    echo
    echo "## nrpc_qps output (under perf)"
    echo
    cat "$TMP/run.out"
    echo
    grep -h '^\[ perf record' "$TMP/perf.err" || true
    echo
    echo "## breakdown (scripts/flame-breakdown.py)"
    echo
    echo "$BREAKDOWN" | sed "s#$TMP/out.folded#flamegraphs/$(basename "$FOLDED")#"
} >"$OUT/$NAME.txt"

say "wrote $OUT/$NAME.svg ($(du -h "$OUT/$NAME.svg" | cut -f1)), $FOLDED, $OUT/$NAME.txt"
say "samples: $SAMPLES; run: ${QPS_LINE:-<no result line>}"
echo "$BREAKDOWN" | sed "s#$TMP/out.folded#$(basename "$FOLDED")#"
