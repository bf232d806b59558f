#!/usr/bin/env bash
# Bulk goodput of Net's segmented unary calls through a 100 Mbit/s tbf
# bottleneck between two network namespaces (scripts/netns.sh), and how it
# shares that bottleneck with itself and with a TCP flow (iperf3). Needs root.
#
#   scripts/bulk-tbf.sh
#
# Steps (the sender is always in netB, the receiver in netA, so the
# bottleneck is the tbf on what netA receives: netns.sh puts it on an ifb
# device fed by the veth's ingress, like a router between the hosts):
#   1. netns.sh up (netns.sh down on exit, whatever happens), impair --rate 100mbit
#   2. one flow of 256 MiB (16 MiB calls, 2 in flight): goodput as % of the
#      link rate, tbf drops as % of the packets offered to it
#   3. two flows of 128 MiB each, started together: each flow's share
#   4. iperf3 (installed with apt-get if missing): one TCP CUBIC flow alone
#      for 10 s, then one TCP flow and one Net flow at once for 20 s each
#      (Net in 2 MiB calls, so the calls still in flight at the 20-s mark
#      end soon after it): each one's share of the sum, with TCP CUBIC and
#      then TCP BBR (if the kernel has it)
#
# Environment: BULK (a built `bulk` binary; default: built here with cargo
# into CARGO_TARGET_DIR or target/), NETNS_A, NETNS_B, NETNS_ADDR_A,
# NETNS_ADDR_B, NETNS_VETH (as for netns.sh). Every run has a timeout; the
# background processes (iperf3) are killed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
NETNS_SH=$HERE/netns.sh
NS_A=${NETNS_A:-netA}
NS_B=${NETNS_B:-netB}
ADDR_A=${NETNS_ADDR_A:-10.77.0.1}
ADDR_B=${NETNS_ADDR_B:-10.77.0.2}
VETH=${NETNS_VETH:-veth0}
RATE_MBIT=100
IPERF_PORT=5201

say() { echo "bulk-tbf.sh: $*"; }
die() { echo "bulk-tbf.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"

WORK=$(mktemp -d)
BG_PIDS=()

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    bash "$NETNS_SH" down >/dev/null || echo "bulk-tbf.sh: netns.sh down failed" >&2
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bulk binary: $BULK, or a release build made now.
find_bulk() {
    if [ -n "${BULK:-}" ]; then
        [ -x "$BULK" ] || die "BULK=$BULK is not an executable"
        return
    fi
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    say "building bulk (cargo build --release -p net-bench --bin bulk)"
    (cd "$ROOT" && timeout 1200 cargo build --release -q -p net-bench --bin bulk)
    BULK=$target/release/bulk
}

# tbf_counters: "PKTS DROPPED" of the bottleneck tbf on the receiver's
# ingress (netA's ifb device).
tbf_counters() {
    ip netns exec "$NS_A" tc -s qdisc show dev "${NETNS_IFB:-ifb0}" | awk '
        /^qdisc tbf/ { tbf = 1; next }
        /^qdisc/ { tbf = 0 }
        tbf && $1 == "Sent" {
            for (i = 1; i <= NF; i++) {
                if ($i == "pkt") pkts = $(i - 1)
                if ($i == "(dropped") { d = $(i + 1); sub(",", "", d) }
            }
            print pkts, d; exit
        }'
}

# calc EXPR: awk arithmetic, one decimal.
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }

# drops BEFORE AFTER: the tbf's packets and drops between two tbf_counters.
drops() {
    local p0 d0 p1 d1 p d
    read -r p0 d0 <<<"$1"
    read -r p1 d1 <<<"$2"
    p=$((p1 - p0)) d=$((d1 - d0))
    echo "tbf on $NS_A ingress: $p packets sent, $d dropped = $(calc "100 * $d / ($p + $d > 0 ? $p + $d : 1)") % of the packets offered"
}

# run_bulk NAME LIMIT_S ARGS...: one bulk run (client in netB, sink server
# in netA); its output is shown and kept in $WORK/NAME.out.
run_bulk() {
    local name=$1 limit=$2
    shift 2
    ip netns exec "$NS_B" timeout "$limit" "$BULK" --server-netns "$NS_A" \
        --bind "$ADDR_B" --server-bind "$ADDR_A" "$@" | tee "$WORK/$name.out"
}

# goodput NAME ROW: the goodput (Mbit/s) of table row ROW (a flow number
# or "total") of run NAME.
goodput() {
    awk -F'|' -v row="$2" '{ gsub(/ /, "", $2) } $2 == row { gsub(/ /, "", $5); print $5; exit }' \
        "$WORK/$1.out"
}

single_flow() {
    say "== one Net flow, 256 MiB in 16 MiB calls, 2 in flight"
    local before after g
    before=$(tbf_counters)
    run_bulk single 120 --total-mib 256 --chunk-mib 16 --conc 2 --flows 1
    after=$(tbf_counters)
    g=$(goodput single total)
    say "one flow: goodput $g Mbit/s = $(calc "100 * $g / $RATE_MBIT") % of $RATE_MBIT Mbit/s"
    say "one flow: $(drops "$before" "$after")"
}

two_flows() {
    say "== two Net flows at once, 128 MiB each in 16 MiB calls, 2 in flight each"
    local before after g1 g2 gt
    before=$(tbf_counters)
    run_bulk two 120 --total-mib 128 --chunk-mib 16 --conc 2 --flows 2
    after=$(tbf_counters)
    g1=$(goodput two 1) g2=$(goodput two 2) gt=$(goodput two total)
    say "two flows: flow 1 $g1 Mbit/s ($(calc "100 * $g1 / ($g1 + $g2)") % of the sum), flow 2 $g2 Mbit/s ($(calc "100 * $g2 / ($g1 + $g2)") %)"
    say "two flows: total $gt Mbit/s = $(calc "100 * $gt / $RATE_MBIT") % of $RATE_MBIT Mbit/s; $(drops "$before" "$after")"
}

# iperf_mbps FILE: the receiver's Mbit/s from `iperf3 -f m` output.
iperf_mbps() {
    awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) } END { print v }' "$1"
}

start_iperf_server() {
    if ! command -v iperf3 >/dev/null 2>&1; then
        say "installing iperf3"
        timeout 300 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq iperf3 >/dev/null
    fi
    ip netns exec "$NS_A" timeout 300 iperf3 -s -B "$ADDR_A" -p "$IPERF_PORT" \
        >"$WORK/iperf-server.log" 2>&1 &
    BG_PIDS+=($!)
    local i
    for i in $(seq 50); do
        ip netns exec "$NS_A" ss -ltn | grep -q ":$IPERF_PORT " && return 0
        sleep 0.1
    done
    die "the iperf3 server did not start: $(cat "$WORK/iperf-server.log")"
}

# iperf_client SECONDS FILE CC: one TCP flow netB -> netA with congestion
# control CC (`ip netns exec` and `timeout` exec, so with `&` the pid is
# that of `timeout`, which passes a kill on to iperf3).
iperf_client() {
    exec ip netns exec "$NS_B" timeout $(($1 + 30)) iperf3 -c "$ADDR_A" -B "$ADDR_B" \
        -p "$IPERF_PORT" -t "$1" -C "$3" -f m >"$2" 2>&1
}

# shared CC: one TCP flow with congestion control CC and one Net flow at
# once for 20 s; prints each one's share of the sum.
shared() {
    local cc=$1 before after pid net tcp
    say "== TCP $cc (iperf3 -C $cc -t 20) and one Net flow (--duration-s 20, 2 MiB calls, 2 in flight) at once"
    before=$(tbf_counters)
    (iperf_client 20 "$WORK/tcp-$cc.txt" "$cc") &
    pid=$!
    BG_PIDS+=("$pid")
    run_bulk "shared-$cc" 90 --duration-s 20 --chunk-mib 2 --conc 2 --flows 1
    wait "$pid" || die "iperf3 failed: $(cat "$WORK/tcp-$cc.txt")"
    unset 'BG_PIDS[-1]'
    after=$(tbf_counters)
    net=$(goodput "shared-$cc" total) tcp=$(iperf_mbps "$WORK/tcp-$cc.txt")
    say "shared with TCP $cc: Net $net Mbit/s ($(calc "100 * $net / ($net + $tcp)") % of the sum), TCP $tcp Mbit/s ($(calc "100 * $tcp / ($net + $tcp)") %), sum $(calc "$net + $tcp") Mbit/s = $(calc "100 * ($net + $tcp) / $RATE_MBIT") % of $RATE_MBIT Mbit/s"
    say "shared with TCP $cc: $(drops "$before" "$after")"
}

# TCP alone, then beside Net: with CUBIC (Linux's default and Net's, the
# like-for-like comparison) and, when the kernel has it, BBR (the default
# sysctl of some hosts, this VM's included: it ignores loss up to a point,
# so it is reported but is not what the 30-70 % target is about).
with_tcp() {
    say "== TCP cubic (iperf3) alone, 10 s"
    start_iperf_server
    (iperf_client 10 "$WORK/tcp-alone.txt" cubic) || die "iperf3 failed: $(cat "$WORK/tcp-alone.txt")"
    local alone
    alone=$(iperf_mbps "$WORK/tcp-alone.txt")
    say "TCP alone: $alone Mbit/s = $(calc "100 * $alone / $RATE_MBIT") % of $RATE_MBIT Mbit/s"
    shared cubic
    if ip netns exec "$NS_B" sysctl -n net.ipv4.tcp_available_congestion_control | grep -qw bbr; then
        shared bbr
    else
        say "TCP bbr: not available in this kernel; skipped"
    fi
}

find_bulk
bash "$NETNS_SH" up >/dev/null
bash "$NETNS_SH" impair --rate "${RATE_MBIT}mbit" >/dev/null
say "$NS_B ($ADDR_B) -> $NS_A ($ADDR_A), tbf $RATE_MBIT Mbit/s on what each namespace receives (ifb)"
single_flow
two_flows
with_tcp
