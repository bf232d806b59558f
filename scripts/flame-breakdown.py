#!/usr/bin/env python3
"""Share of samples per category in a folded-stacks file (inferno/Brendan Gregg format).

Usage: scripts/flame-breakdown.py [--top N] [--min-thread-share PCT] FOLDED[.gz]

Input: one stack per line, ``root;...;leaf COUNT``, as written by
``inferno-collapse-perf --all`` (the first frame is the thread name; kernel
frames carry an ``_[k]`` suffix). ``scripts/flamegraph.sh`` writes such files to
``flamegraphs/NAME.folded`` (or ``NAME.folded.gz``, read transparently).

Output: a markdown table with one row per category: samples and share of all
samples, plus one share column per thread (first frame) holding at least
--min-thread-share percent of the samples (in nrpc_qps profiles these are
``server:net-core-0`` and ``client:net-core-0``). With --top N it also prints the
N hottest leaf frames (self samples).

Classification rule (one category per sample):

1. The first frame (thread name) is skipped. The remaining frames are walked
   from the leaf towards the root; the first frame that matches a category's
   patterns decides the sample. Within a single frame the categories are tried
   in the order of CATEGORIES below (so ``__x64_sys_futex`` is wake/park, not
   syscalls, and ``<std::time::Instant>::now`` is clock, not other).
2. Kernel frames that match no specific pattern (spin locks, memcpy, RCU...)
   are skipped by that walk, so they count towards whatever encloses them:
   ``try_to_wake_up; _raw_spin_unlock_irqrestore`` is wake/park,
   ``udp_sendmsg; ...; _raw_spin_unlock_irqrestore`` is syscalls.
3. If no frame matches but the stack has kernel frames (an interrupt or page
   fault taken in user code, say), the sample is syscalls (kernel); otherwise
   it is other.

So kernel time under a syscall counts as syscalls unless it is inside the
scheduler/futex/wake-up machinery (wake/park); a malloc that ends in an mmap
syscall counts as syscalls; memcpy or hashing called from session code counts
as framing/dispatch; the echo handler's own memcpy counts as handler.

Categories (first match per frame, in this order):

- AEAD: ring::aead, net_crypto::aead, chacha20/poly1305 (incl. ring's
  assembly: ring_core_*chacha20_poly1305*, poly_hash_ad_internal, ...).
- wake/park: futex, schedule/__schedule/finish_task_switch, wake-ups
  (try_to_wake_up, __wake_up*, *_wake*), eventfd, epoll/poll,
  io_cqring_wait, nanosleep/hrtimeout, idle, std::thread::park and
  contended std locks.
- clock: clock_gettime and the vDSO, std::time::Instant / Timespec
  (reading and comparing the clock: the loop's spin/deadline checks).
- allocator: malloc/free/realloc/calloc family (incl. _int_malloc, cfree,
  tcache), __rust_alloc/__rust_dealloc/__rust_realloc, alloc::alloc::.
- syscalls (kernel): entry_SYSCALL*, do_syscall_64, __x64_sys_*,
  __do_sys_*, __sys_*, io_uring_enter and io_uring internals (io_*),
  task_work, the UDP/IP/socket/skb/netdev stack (udp_*, ip_*, sock_*,
  skb_*, __dev_queue_xmit, net_rx_action, ...), the glibc ``syscall`` wrapper;
  plus rule 3 above.
- handler: the echo closure (net_bench::nrpc::server::{{closure}}, whose
  frames name net_bench::nrpc::server).
- load generator: net_engine::loadgen (the client's closed-loop app that issues
  calls and records latencies on its core).
- net_io driver: the user-space side of the UDP drivers (net_io::, the
  io_uring crate's ring handling).
- framing/dispatch: net_proto:: (wire, session, endpoint, keys, recovery...),
  net_engine:: (core_loop, dispatch, inbox, node...), crossbeam queues.
- other: everything else (std/core glue outside the above, [unknown] frames,
  process start-up).

Python 3 standard library only.
"""

import argparse
import gzip
import re
import sys
from collections import Counter, OrderedDict

# Each category: a list of regexes matched (re.search) against the frame name
# with inferno's annotation suffix (_[k], _[j], _[i]) removed.
CATEGORIES = OrderedDict(
    [
        (
            "AEAD",
            [
                r"ring::aead",
                r"net_crypto::aead",
                r"chacha",
                r"poly1305",
                r"^ring_core_.*(chacha|poly)",
                r"^poly_hash_ad_internal$",
                r"^process_extra_in_trailer$",
                r"^(open|seal)_(sse41|avx2)_",
            ],
        ),
        (
            "wake/park",
            [
                r"futex",
                r"^(__)?schedule",
                r"^finish_task_switch",
                r"^pick_next_task",
                r"^context_switch",
                r"^__switch_to",
                r"try_to_wake_up",
                r"^ttwu_",
                r"wake_up",
                r"_wake(_|$)",
                r"eventfd",
                r"epoll",
                r"^ep_poll",
                r"^(__x64_sys_|__se_sys_|__do_sys_)?(ppoll|poll)$",
                r"^do_(sys_)?poll",
                r"^io_cqring_wait",
                r"^io_cqring_schedule",
                r"nanosleep",
                r"^schedule_hrtimeout",
                r"^(do|cpu)_idle",
                r"^cpuidle",
                r"^default_idle",
                r"safe_halt",
                r"sched_yield",
                r"std::thread::park",
                r"std::thread::.*::park",
                r"std::sys::sync::.*(wait|park|contended)",
            ],
        ),
        (
            "clock",
            [
                r"clock_gettime",
                r"^__vdso_",
                r"^\[vdso\]$",
                r"std::time::Instant",
                r"std::sys::time::",
                r"std::sys::pal::unix::time::",
                r"^<std::time::Instant",
            ],
        ),
        (
            "allocator",
            [
                r"^(__libc_|__GI___libc_)?(malloc|calloc|realloc|free|cfree|memalign|posix_memalign|aligned_alloc)$",
                r"^_int_(malloc|free|realloc|memalign)",
                r"^malloc_",
                r"^sysmalloc",
                r"^tcache_",
                r"^__rust_(alloc|dealloc|realloc|alloc_zeroed)",
                r"^__rd?[lg]_(alloc|dealloc|realloc|alloc_zeroed)",
                r"^alloc::alloc::",
                r"^<alloc::alloc::Global",
            ],
        ),
        (
            "syscalls (kernel)",
            [
                r"^entry_SYSCALL",
                r"^do_syscall_64",
                r"^(__x64_sys_|__ia32_sys_|__se_sys_|__do_sys_|_{1,4}sys_|ksys_)",
                r"io_uring_enter",
                r"^(__)?io_",
                r"task_work",
                r"^(__)?udp",
                r"^(__)?ip_",
                r"^(__)?ip6?_",
                r"^(__)?inet_",
                r"^(__)?sock_",
                r"^(__)?sk_",
                r"^(__)?skb_",
                r"^(__)?(kfree|consume|alloc|napi)_skb",
                r"^(__)?dev_",
                r"^(__)?netif_",
                r"^(__)?napi_",
                r"^net_rx_action",
                r"^process_backlog",
                r"^loopback_xmit",
                r"^(__)?(import|copy)_(iovec|msghdr)",
                r"^_copy_(to|from)_(iter|user)",
                r"^syscall$",
            ],
        ),
        ("handler", [r"net_bench::nrpc::server"]),
        ("load generator", [r"net_engine::loadgen"]),
        ("net_io driver", [r"net_io::", r"^<net_io::", r"io_uring::"]),
        (
            "framing/dispatch",
            [r"net_proto::", r"net_engine::", r"crossbeam_queue::"],
        ),
    ]
)
OTHER = "other"
ROW_ORDER = [
    "syscalls (kernel)",
    "AEAD",
    "wake/park",
    "framing/dispatch",
    "handler",
    "allocator",
    "clock",
    "net_io driver",
    "load generator",
    OTHER,
]

_COMPILED = [(name, [re.compile(p) for p in pats]) for name, pats in CATEGORIES.items()]
_ANNOT = re.compile(r"_\[[kjiw]\]$")
_KERNEL = "_[k]"


def frame_category(frame):
    """Category of one frame (annotation stripped), or None."""
    name = _ANNOT.sub("", frame)
    for cat, pats in _COMPILED:
        for p in pats:
            if p.search(name):
                return cat
    return None


def classify(frames, cache):
    """Category of one stack (frames root→leaf, thread name excluded)."""
    for f in reversed(frames):
        c = cache.get(f, 0)
        if c == 0:
            c = frame_category(f)
            cache[f] = c
        if c is not None:
            return c
    if any(f.endswith(_KERNEL) for f in frames):
        return "syscalls (kernel)"
    return OTHER


def parse(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                sys.exit(f"{path}:{lineno}: not a folded-stacks line (no trailing count)")
            yield stack.split(";"), n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folded", help="folded-stacks file (inferno-collapse-perf --all)")
    ap.add_argument("--top", type=int, default=0, help="also list the N hottest leaf frames")
    ap.add_argument(
        "--min-thread-share",
        type=float,
        default=1.0,
        help="per-thread columns for threads with at least this %% of samples (default 1)",
    )
    a = ap.parse_args()

    total = 0
    by_cat = Counter()
    by_thread = Counter()
    by_thread_cat = Counter()
    leaves = Counter()
    leaf_cat = Counter()
    cache = {}
    for frames, n in parse(a.folded):
        thread, rest = frames[0], frames[1:]
        cat = classify(rest, cache)
        total += n
        by_cat[cat] += n
        by_thread[thread] += n
        by_thread_cat[(thread, cat)] += n
        leaves[frames[-1]] += n
        leaf_cat[(frames[-1], cat)] += n
    if total == 0:
        sys.exit(f"{a.folded}: no samples")

    threads = sorted(t for t, n in by_thread.items() if 100.0 * n / total >= a.min_thread_share)
    head = ["category", "samples", "share"] + [f"{t} ({100.0 * by_thread[t] / total:.0f}% of samples)" for t in threads]
    print(f"{total} samples in {a.folded}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cat in ROW_ORDER:
        row = [cat, str(by_cat[cat]), f"{100.0 * by_cat[cat] / total:.1f}%"]
        for t in threads:
            row.append(f"{100.0 * by_thread_cat[(t, cat)] / by_thread[t]:.1f}%")
        print("| " + " | ".join(row) + " |")
    if a.top > 0:
        print(f"\nTop {a.top} leaf frames (self samples):\n")
        print("| self | frame | category (of most of its samples) |")
        print("|---|---|---|")
        for f, n in leaves.most_common(a.top):
            cat = max((c for c in ROW_ORDER), key=lambda c: leaf_cat[(f, c)])
            name = f.replace("|", "\\|")
            if len(name) > 110:
                name = name[:107] + "..."
            print(f"| {100.0 * n / total:.1f}% | `{name}` | {cat} |")


if __name__ == "__main__":
    main()
