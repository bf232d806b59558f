#!/usr/bin/env bash
# Two "hosts" on one machine: two network namespaces joined by a veth pair
# with MTU 1500, for running Net across a real link instead of loopback
# (docs/BENCHMARKS.md, "Two hosts: network namespaces"). Needs root.
#
#   scripts/netns.sh up                       # create (idempotent)
#   scripts/netns.sh impair --rate 100mbit    # tbf bottleneck, each direction
#   scripts/netns.sh impair --loss 0.01       # random drop on arrival, both ways
#   scripts/netns.sh impair --clear           # remove every impairment
#   scripts/netns.sh status                   # what is there now
#   scripts/netns.sh down                     # remove everything `up` created
#
# Layout (environment overrides in brackets):
#   namespace A [NETNS_A=netA]  veth [NETNS_VETH=veth0]  10.77.0.1/24 [NETNS_ADDR_A]
#   namespace B [NETNS_B=netB]  veth [NETNS_VETH=veth0]  10.77.0.2/24 [NETNS_ADDR_B]
#   MTU [NETNS_MTU=1500]; loopback up in each. Each end of the pair is created
#   directly inside its namespace, so the root namespace gets no interface.
#
# impair options (each changes only its own aspect; combine freely):
#   --rate R      tbf of rate R on what each namespace RECEIVES (each
#                 direction gets R): the veth's ingress is redirected to an
#                 ifb device (ifb0) holding the tbf. R is
#                 <N>bit|kbit|mbit|gbit. `--rate none` removes it. Ingress,
#                 not the sender's egress, so the bottleneck drops packets
#                 the way a router between two hosts would: a drop in the
#                 sender's own qdisc is "local congestion", which TCP
#                 answers at once (CWR) and a UDP sender never sees — with
#                 an egress tbf a Net flow took 92 % of the link from an
#                 iperf3 TCP flow, 62-64 % with this one.
#   --burst B     tbf bucket in bytes. Default: max(R/8 * 4 ms, 15000) — one
#                 4-ms tick at HZ=250 (tbf needs burst >= rate/HZ or it cannot
#                 reach the rate) and never less than ten 1500-B packets.
#   --limit L     tbf queue in bytes (what may wait behind the bucket; more is
#                 dropped). Default 65536: a 64 KB queue, ≈ 5 ms at 100 Mbit/s.
#   --loss P      drop each packet crossing the veth with probability P, as
#                 it arrives in the receiving namespace (iptables `statistic
#                 --mode random` in the raw table's PREROUTING, -i veth).
#                 Not on egress: a packet dropped in the sender's OUTPUT
#                 chain fails its sendmsg with EPERM, so the sender sees an
#                 error instead of a silent loss (iperf3 -u aborts on it).
#                 Direction by --loss-dir; `--loss 0` removes it.
#   --loss-dir D  both (default: A->B and B->A each lose P, so a round trip
#                 loses about 2P), a2b (packets from A to B, dropped on
#                 arrival in B), b2a (from B to A, dropped in A).
#   --clear       remove the tbf qdiscs and the loss rules first.
# Delay, jitter, duplication and reordering: this kernel has no sch_netem; put
# bench/src/bin/udp_relay.rs between the two nodes instead.
#
# `up` marks each namespace it creates (/run/net-netns/<name>); `down` deletes
# only marked namespaces (deleting a namespace removes its veth end, the
# peer end, its qdiscs and its iptables rules), so a namespace of the same
# name that this script did not create is left alone.
set -euo pipefail

NS_A=${NETNS_A:-netA}
NS_B=${NETNS_B:-netB}
VETH=${NETNS_VETH:-veth0}
ADDR_A=${NETNS_ADDR_A:-10.77.0.1}
ADDR_B=${NETNS_ADDR_B:-10.77.0.2}
PREFIX=24
MTU=${NETNS_MTU:-1500}
MARKS=/run/net-netns
CHAIN=NETNS-IMPAIR
IFB=${NETNS_IFB:-ifb0}

say() { echo "netns.sh: $*"; }
die() { echo "netns.sh: $*" >&2; exit 1; }
# Prints a command, then runs it.
run() { echo "+ $*"; "$@"; }

# need TOOL PACKAGE: fails, naming the Debian package, if TOOL is missing.
need() {
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found; it comes with the Debian package $2 (apt-get install $2)"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (creates namespaces and interfaces)"
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

# configure_end NS ADDR: the namespace with its loopback up and its veth end addressed.
configure_end() {
    local ns=$1 addr=$2
    run ip -n "$ns" link set lo up
    run ip -n "$ns" link set "$VETH" mtu "$MTU"
    run ip -n "$ns" addr replace "$addr/$PREFIX" dev "$VETH"
    run ip -n "$ns" link set "$VETH" up
}

cmd_up() {
    need_root
    need ip iproute2
    [ "$NS_A" != "$NS_B" ] || die "NETNS_A and NETNS_B must differ"
    mkdir -p "$MARKS"
    for ns in "$NS_A" "$NS_B"; do
        if ns_exists "$ns"; then
            say "namespace $ns exists"
        else
            run ip netns add "$ns"
            touch "$MARKS/$ns"
        fi
    done
    if ip -n "$NS_A" link show "$VETH" >/dev/null 2>&1; then
        say "$NS_A/$VETH exists"
        ip -n "$NS_B" link show "$VETH" >/dev/null 2>&1 ||
            die "$NS_A has $VETH but $NS_B has none: run '$0 down' and '$0 up'"
    else
        run ip link add "$VETH" netns "$NS_A" type veth peer name "$VETH" netns "$NS_B"
    fi
    configure_end "$NS_A" "$ADDR_A"
    configure_end "$NS_B" "$ADDR_B"
    say "up: $NS_A $ADDR_A/$PREFIX <-> $NS_B $ADDR_B/$PREFIX, $VETH MTU $MTU"
}

cmd_down() {
    need_root
    need ip iproute2
    for ns in "$NS_A" "$NS_B"; do
        if ! ns_exists "$ns"; then
            say "namespace $ns absent"
            rm -f "$MARKS/$ns"
        elif [ -e "$MARKS/$ns" ]; then
            run ip netns del "$ns"
            rm -f "$MARKS/$ns"
        else
            say "namespace $ns was not created by netns.sh (no $MARKS/$ns): left alone"
        fi
    done
}

# rate_bytes R: R (<N>bit|kbit|mbit|gbit) in bytes per second.
rate_bytes() {
    local r=${1,,} n mult
    case $r in
        *gbit) n=${r%gbit}; mult=1000000000 ;;
        *mbit) n=${r%mbit}; mult=1000000 ;;
        *kbit) n=${r%kbit}; mult=1000 ;;
        *bit) n=${r%bit}; mult=1 ;;
        *) die "--rate $1: use <N>bit, <N>kbit, <N>mbit or <N>gbit" ;;
    esac
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "--rate $1: need a positive whole number"
    echo $(( n * mult / 8 ))
}

set_rate() {
    local rate=$1 burst=$2 limit=$3 ns
    need tc iproute2
    for ns in "$NS_A" "$NS_B"; do
        clear_rate "$ns"
        [ "$rate" = none ] && continue
        run ip netns exec "$ns" ip link add "$IFB" type ifb
        run ip netns exec "$ns" ip link set "$IFB" up
        run ip netns exec "$ns" tc qdisc add dev "$VETH" handle ffff: ingress
        run ip netns exec "$ns" tc filter add dev "$VETH" parent ffff: protocol all \
            prio 1 u32 match u32 0 0 action mirred egress redirect dev "$IFB"
        run ip netns exec "$ns" tc qdisc add dev "$IFB" root tbf \
            rate "$rate" burst "$burst" limit "$limit"
    done
}

clear_rate() {
    if ip netns exec "$1" tc qdisc show dev "$VETH" ingress | grep -q '^qdisc ingress'; then
        run ip netns exec "$1" tc qdisc del dev "$VETH" ingress
    fi
    if ip netns exec "$1" ip link show "$IFB" >/dev/null 2>&1; then
        run ip netns exec "$1" ip link del "$IFB"
    fi
    # An egress tbf left by an older version of this script.
    if ip netns exec "$1" tc qdisc show dev "$VETH" root | grep -q '^qdisc tbf'; then
        run ip netns exec "$1" tc qdisc del dev "$VETH" root
    fi
}

# ipt NS ARGS...: iptables on the raw table inside NS (quiet).
ipt() { local ns=$1; shift; ip netns exec "$ns" iptables -t raw "$@"; }

# chain NS: our raw-table chain in NS exists, empty, and PREROUTING jumps to it.
chain() {
    local ns=$1
    ipt "$ns" -n -L "$CHAIN" >/dev/null 2>&1 ||
        run ip netns exec "$ns" iptables -t raw -N "$CHAIN"
    ipt "$ns" -C PREROUTING -j "$CHAIN" 2>/dev/null ||
        run ip netns exec "$ns" iptables -t raw -A PREROUTING -j "$CHAIN"
    run ip netns exec "$ns" iptables -t raw -F "$CHAIN"
}

clear_loss() {
    local ns=$1
    command -v iptables >/dev/null 2>&1 || return 0
    if ipt "$ns" -n -L "$CHAIN" >/dev/null 2>&1; then
        run ip netns exec "$ns" iptables -t raw -F "$CHAIN"
    fi
}

set_loss() {
    local p=$1 dir=$2 ns
    need iptables iptables
    [[ $p =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "--loss $p: need a probability in [0, 1]"
    local on=()
    case $dir in
        both) on=("$NS_A" "$NS_B") ;;
        a2b) on=("$NS_B") ;;
        b2a) on=("$NS_A") ;;
        *) die "--loss-dir $dir: use both, a2b or b2a" ;;
    esac
    for ns in "$NS_A" "$NS_B"; do
        clear_loss "$ns"
    done
    if [[ $p =~ ^0(\.0*)?$ ]]; then
        return 0
    fi
    for ns in "${on[@]}"; do
        chain "$ns"
        run ip netns exec "$ns" iptables -t raw -A "$CHAIN" -i "$VETH" \
            -m statistic --mode random --probability "$p" -j DROP
    done
}

cmd_impair() {
    need_root
    need ip iproute2
    for ns in "$NS_A" "$NS_B"; do
        ns_exists "$ns" || die "namespace $ns absent: run '$0 up' first"
    done
    local rate="" burst="" limit=65536 loss="" dir=both clear=false
    while [ $# -gt 0 ]; do
        case $1 in
            --rate) rate=${2:?--rate needs a value}; shift 2 ;;
            --burst) burst=${2:?--burst needs bytes}; shift 2 ;;
            --limit) limit=${2:?--limit needs bytes}; shift 2 ;;
            --loss) loss=${2:?--loss needs a probability}; shift 2 ;;
            --loss-dir) dir=${2:?--loss-dir needs both, a2b or b2a}; shift 2 ;;
            --clear) clear=true; shift ;;
            *) die "impair: unknown option $1 (see the head of $0)" ;;
        esac
    done
    [ -n "$rate$loss" ] || $clear || die "impair: nothing to do (--rate, --loss or --clear)"
    if $clear; then
        need tc iproute2
        for ns in "$NS_A" "$NS_B"; do
            clear_rate "$ns"
            clear_loss "$ns"
        done
    fi
    if [ -n "$rate" ]; then
        if [ "$rate" != none ] && [ -z "$burst" ]; then
            local bps
            bps=$(rate_bytes "$rate")
            burst=$(( bps / 250 > 15000 ? bps / 250 : 15000 ))
        fi
        set_rate "$rate" "$burst" "$limit"
    fi
    if [ -n "$loss" ]; then
        set_loss "$loss" "$dir"
    fi
    cmd_status
}

cmd_status() {
    need ip iproute2
    local ns
    for ns in "$NS_A" "$NS_B"; do
        if ! ns_exists "$ns"; then
            say "namespace $ns absent"
            continue
        fi
        echo "== $ns$([ -e "$MARKS/$ns" ] && echo ' (created by netns.sh)')"
        ip -n "$ns" -br addr show
        ip -n "$ns" link show "$VETH" 2>/dev/null | awk 'NR == 1 {print "  " $0}'
        ip netns exec "$ns" tc qdisc show dev "$VETH" 2>/dev/null | sed 's/^/  /' || true
        ip netns exec "$ns" tc -s qdisc show dev "$IFB" 2>/dev/null | sed 's/^/  ingress /' || true
        if command -v iptables >/dev/null 2>&1 && ipt "$ns" -n -L "$CHAIN" >/dev/null 2>&1; then
            echo "  loss on arrival (iptables -t raw):"
            ipt "$ns" -n -v -L "$CHAIN" | sed 's/^/  /'
        fi
    done
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    impair) shift; cmd_impair "$@" ;;
    status) cmd_status ;;
    *) die "usage: $0 up|down|impair [--rate R] [--burst B] [--limit L] [--loss P] [--loss-dir both|a2b|b2a] [--clear]|status" ;;
esac
