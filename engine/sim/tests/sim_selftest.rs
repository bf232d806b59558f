//! Self-tests of the simulator itself, using toy nodes (no protocol).
//!
//! Each test asserts a property that would break if the corresponding link
//! behaviour or event-loop rule were missing.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use net_sim::{v4, Fate, LinkConfig, LinkStats, Sim, SimError, SimNode, Transmit};

// ---------------------------------------------------------------- toy nodes

/// Sends `n` numbered 8-byte pings to `peer`, one every `interval`, and
/// records the round-trip time of every echo.
struct Pinger {
    peer: SocketAddr,
    n: u64,
    interval: Duration,
    next_send: Instant,
    pending: VecDeque<u64>,
    sent_at: Vec<Option<Instant>>,
    rtts: BTreeMap<u64, Duration>,
}

impl Pinger {
    fn new(peer: SocketAddr, n: u64, interval: Duration, start: Instant) -> Self {
        Self {
            peer,
            n,
            interval,
            next_send: start,
            pending: VecDeque::new(),
            sent_at: vec![None; n as usize],
            rtts: BTreeMap::new(),
        }
    }
    fn queued(&self) -> u64 {
        self.sent_at.iter().filter(|s| s.is_some()).count() as u64 + self.pending.len() as u64
    }
}

/// Echoes every datagram back to its source.
#[derive(Default)]
struct Echo {
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    received: u64,
}

/// Sends `n` datagrams to `peer`, `per_tick` of them every `interval`;
/// datagram `i` is `payload(i)`.
struct Blaster {
    peer: SocketAddr,
    n: u64,
    per_tick: u64,
    interval: Duration,
    next_tick: Instant,
    sent: u64,
    budget: u64,
    payload: fn(u64) -> Vec<u8>,
}

impl Blaster {
    fn new(peer: SocketAddr, n: u64, per_tick: u64, interval: Duration, start: Instant) -> Self {
        Self {
            peer,
            n,
            per_tick,
            interval,
            next_tick: start,
            sent: 0,
            budget: 0,
            payload: two_copies,
        }
    }
}

/// 16 bytes: the sequence number twice, so a flipped bit is detectable.
fn two_copies(i: u64) -> Vec<u8> {
    let mut v = i.to_le_bytes().to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v
}

/// Records every datagram it receives.
#[derive(Default)]
struct Sink {
    got: Vec<(Instant, SocketAddr, Vec<u8>)>,
}

/// Its timer is fixed at `at` while `remaining > 0`: each `handle_timeout`
/// decrements `remaining` without moving the timer (a buggy node when
/// `remaining` is huge). With a `peer`, every call also queues one
/// datagram to it.
struct Stuck {
    at: Instant,
    remaining: u64,
    calls: u64,
    peer: Option<SocketAddr>,
    unsent: u64,
}

/// Always has another datagram to send.
struct Spammer {
    peer: SocketAddr,
}

/// Logs `'d'` per datagram and `'t'` per timeout; one-shot timer.
struct Logger {
    timer: Option<Instant>,
    log: String,
}

/// A periodic timer forever; never sends.
struct Ticker {
    next: Instant,
    period: Duration,
    ticks: u64,
}

enum Toy {
    Pinger(Pinger),
    Echo(Echo),
    Blaster(Blaster),
    Sink(Sink),
    Stuck(Stuck),
    Spammer(Spammer),
    Ticker(Ticker),
    Logger(Logger),
}

impl Toy {
    fn pinger(&self) -> &Pinger {
        match self {
            Toy::Pinger(p) => p,
            _ => panic!("not a pinger"),
        }
    }
    fn echo(&self) -> &Echo {
        match self {
            Toy::Echo(e) => e,
            _ => panic!("not an echo"),
        }
    }
    fn sink(&self) -> &Sink {
        match self {
            Toy::Sink(s) => s,
            _ => panic!("not a sink"),
        }
    }
    fn stuck(&mut self) -> &mut Stuck {
        match self {
            Toy::Stuck(s) => s,
            _ => panic!("not stuck"),
        }
    }
    fn ticker(&self) -> &Ticker {
        match self {
            Toy::Ticker(t) => t,
            _ => panic!("not a ticker"),
        }
    }
}

impl SimNode for Toy {
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &mut [u8]) {
        match self {
            Toy::Pinger(p) => {
                let Ok(bytes) = <[u8; 8]>::try_from(&*data) else {
                    return;
                };
                let seq = u64::from_le_bytes(bytes);
                if let Some(Some(sent)) = p.sent_at.get(seq as usize) {
                    p.rtts.entry(seq).or_insert(now - *sent);
                }
            }
            Toy::Echo(e) => {
                e.received += 1;
                e.out.push_back((src, data.to_vec()));
            }
            Toy::Sink(s) => s.got.push((now, src, data.to_vec())),
            Toy::Logger(l) => l.log.push('d'),
            _ => {}
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        match self {
            Toy::Pinger(p) => {
                let seq = p.pending.pop_front()?;
                p.sent_at[seq as usize] = Some(now);
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                Some(Transmit {
                    dst: p.peer,
                    len: 8,
                })
            }
            Toy::Echo(e) => {
                let (dst, data) = e.out.pop_front()?;
                buf[..data.len()].copy_from_slice(&data);
                Some(Transmit {
                    dst,
                    len: data.len(),
                })
            }
            Toy::Blaster(b) => {
                if b.budget == 0 {
                    return None;
                }
                b.budget -= 1;
                let data = (b.payload)(b.sent);
                b.sent += 1;
                buf[..data.len()].copy_from_slice(&data);
                Some(Transmit {
                    dst: b.peer,
                    len: data.len(),
                })
            }
            Toy::Stuck(s) => {
                let dst = s.peer.filter(|_| s.unsent > 0)?;
                s.unsent -= 1;
                buf[0] = 1;
                Some(Transmit { dst, len: 1 })
            }
            Toy::Spammer(s) => Some(Transmit {
                dst: s.peer,
                len: 1,
            }),
            _ => None,
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        match self {
            Toy::Pinger(p) => (p.queued() < p.n).then_some(p.next_send),
            Toy::Blaster(b) => (b.sent + b.budget < b.n).then_some(b.next_tick),
            Toy::Stuck(s) => (s.remaining > 0).then_some(s.at),
            Toy::Ticker(t) => Some(t.next),
            Toy::Logger(l) => l.timer,
            _ => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Toy::Pinger(p) => p.on_timeout(now),
            Toy::Blaster(b) => b.on_timeout(now),
            Toy::Stuck(s) => {
                s.calls += 1;
                s.remaining = s.remaining.saturating_sub(1);
                s.unsent += u64::from(s.peer.is_some());
            }
            Toy::Ticker(t) => t.on_timeout(now),
            Toy::Logger(l) => {
                l.log.push('t');
                l.timer = None;
            }
            _ => {}
        }
    }
}

impl Pinger {
    fn on_timeout(&mut self, now: Instant) {
        if now >= self.next_send && self.queued() < self.n {
            let seq = self.queued();
            self.pending.push_back(seq);
            self.next_send += self.interval;
        }
    }
}

impl Blaster {
    fn on_timeout(&mut self, now: Instant) {
        if now >= self.next_tick {
            let left = self.n - self.sent - self.budget;
            self.budget += self.per_tick.min(left);
            self.next_tick += self.interval;
        }
    }
}

impl Ticker {
    fn on_timeout(&mut self, now: Instant) {
        if now >= self.next {
            self.ticks += 1;
            self.next += self.period;
        }
    }
}

// ---------------------------------------------------------------- helpers

const A: fn() -> SocketAddr = || v4(1, 4000);
const B: fn() -> SocketAddr = || v4(2, 4000);

/// (virtual time, src, dst, bytes) of every emission.
type TraceVec = Vec<(Duration, SocketAddr, SocketAddr, Vec<u8>)>;
type Trace = Rc<RefCell<TraceVec>>;

/// Installs a tap recording (virtual time, src, dst, bytes) of every emission.
fn record_tap(sim: &mut Sim<Toy>) -> Trace {
    let trace: Trace = Rc::default();
    let t = trace.clone();
    let epoch = sim.epoch();
    sim.set_tap(Box::new(move |now, src, dst, bytes| {
        t.borrow_mut().push((now - epoch, src, dst, bytes.to_vec()))
    }));
    trace
}

/// A blaster at A sending `n` datagrams to a sink at B over `link`, run to
/// completion. Returns the sim and the emission trace.
fn blast(
    seed: u64,
    link: LinkConfig,
    n: u64,
    per_tick: u64,
    interval: Duration,
) -> (Sim<Toy>, Trace) {
    let mut sim = Sim::new(seed);
    let trace = record_tap(&mut sim);
    sim.set_link(A(), B(), link);
    let start = sim.epoch();
    sim.add_node(
        A(),
        Toy::Blaster(Blaster::new(B(), n, per_tick, interval, start)),
    );
    sim.add_node(B(), Toy::Sink(Sink::default()));
    drain_to_idle(&mut sim);
    assert_eq!(trace.borrow().len() as u64, n, "tap sees every emission");
    (sim, trace)
}

fn drain_to_idle(sim: &mut Sim<Toy>) {
    assert_eq!(
        sim.run_until(Duration::from_secs(3600), |_| false),
        Err(SimError::Idle)
    );
    assert_eq!(sim.in_flight(), 0);
}

fn seq_of(data: &[u8]) -> u64 {
    u64::from_le_bytes(data[..8].try_into().expect("8 bytes"))
}

fn ping_echo(seed: u64, link: LinkConfig, n: u64) -> Sim<Toy> {
    let mut sim = Sim::new(seed);
    sim.set_default_link(link);
    let start = sim.epoch();
    sim.add_node(
        A(),
        Toy::Pinger(Pinger::new(B(), n, Duration::from_millis(1), start)),
    );
    sim.add_node(B(), Toy::Echo(Echo::default()));
    sim
}

// ---------------------------------------------------------------- tests

#[test]
fn clean_echo_rtt_is_twice_the_delay() {
    for delay in [Duration::from_micros(50), Duration::from_millis(3)] {
        let n = 100;
        let mut sim = ping_echo(1, LinkConfig::default().with_delay(delay), n);
        sim.run_until(Duration::from_secs(10), |s| {
            s.node(A()).pinger().rtts.len() as u64 == n
        })
        .expect("all echoes return");
        let rtts = &sim.node(A()).pinger().rtts;
        assert!(rtts.values().all(|&r| r == 2 * delay), "{rtts:?}");
        assert_eq!(sim.node(B()).echo().received, n);
        // Last ping at 99 ms; its echo lands 2 * delay later.
        assert_eq!(sim.elapsed(), Duration::from_millis(99) + 2 * delay);
        let ab = sim.link_stats(A(), B());
        assert_eq!((ab.sent, ab.delivered, ab.lost), (n, n, 0));
        assert_eq!(ab.bytes_sent, 8 * n);
        assert_eq!(sim.total_stats().delivered, 2 * n);
    }
}

#[test]
fn ten_percent_loss_is_observed_within_one_percent() {
    let n = 100_000;
    let (sim, _) = blast(
        42,
        LinkConfig::lossy(0.10),
        n,
        100,
        Duration::from_micros(100),
    );
    let got = sim.node(B()).sink().got.len() as u64;
    let observed = 1.0 - got as f64 / n as f64;
    assert!((observed - 0.10).abs() <= 0.01, "observed loss {observed}");
    let st = sim.link_stats(A(), B());
    assert_eq!(st.sent, n);
    assert_eq!(st.lost + st.delivered, n);
    assert_eq!(st.delivered, got);
    assert_eq!(sim.total_stats(), st, "only one direction used");
}

#[test]
fn duplicates_arrive_twice_and_are_counted() {
    let n = 20_000;
    let link = LinkConfig::default().with_duplicate(0.1);
    let (sim, _) = blast(3, link, n, 10, Duration::from_micros(100));
    let st = sim.link_stats(A(), B());
    let mut per_seq = BTreeMap::<u64, u32>::new();
    for (_, _, d) in &sim.node(B()).sink().got {
        *per_seq.entry(seq_of(d)).or_default() += 1;
    }
    assert_eq!(per_seq.len() as u64, n, "every datagram arrives");
    let twice = per_seq.values().filter(|&&c| c == 2).count() as u64;
    assert!(per_seq.values().all(|&c| c <= 2));
    assert_eq!(twice, st.duplicated);
    assert_eq!(st.delivered, n + st.duplicated);
    let ratio = st.duplicated as f64 / n as f64;
    assert!((ratio - 0.1).abs() < 0.01, "duplicate ratio {ratio}");
}

#[test]
fn corruption_flips_exactly_one_bit_of_the_payload() {
    let n = 20_000;
    let link = LinkConfig::default().with_corrupt(0.1);
    let (sim, trace) = blast(4, link, n, 10, Duration::from_micros(100));
    let got = &sim.node(B()).sink().got;
    let sent = trace.borrow();
    assert_eq!(got.len(), sent.len(), "corruption does not drop");
    let mut differing = 0;
    for ((_, _, _, s), (_, _, r)) in sent.iter().zip(got) {
        let flipped: u32 = s.iter().zip(r).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert!(flipped <= 1);
        differing += u64::from(flipped);
        // The two halves disagree exactly when the payload was hit.
        assert_eq!(flipped == 1, r[..8] != r[8..]);
    }
    let st = sim.link_stats(A(), B());
    assert_eq!(differing, st.corrupted);
    let ratio = differing as f64 / n as f64;
    assert!((ratio - 0.1).abs() < 0.01, "corruption ratio {ratio}");
}

#[test]
fn reorder_lets_later_datagrams_overtake() {
    let n = 10_000;
    let arrival_order = |reorder: f64| {
        let link = LinkConfig::default().with_reorder(reorder, Duration::from_millis(1));
        let (sim, _) = blast(5, link, n, 1, Duration::from_micros(10));
        let got = &sim.node(B()).sink().got;
        assert_eq!(got.len() as u64, n);
        let seqs: Vec<u64> = got.iter().map(|(_, _, d)| seq_of(d)).collect();
        (seqs, sim.link_stats(A(), B()))
    };
    let (clean, st) = arrival_order(0.0);
    assert!(clean.windows(2).all(|w| w[0] < w[1]), "control: in order");
    assert_eq!(st.reordered, 0);
    let (mixed, st) = arrival_order(0.1);
    let inversions = mixed.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 0, "arrival order differs from send order");
    let ratio = st.reordered as f64 / n as f64;
    assert!((ratio - 0.1).abs() < 0.015, "reorder ratio {ratio}");
}

#[test]
fn oversize_datagrams_are_dropped_and_counted() {
    let n = 1000;
    let mut sim = Sim::new(6);
    let trace = record_tap(&mut sim);
    sim.set_default_link(LinkConfig::default().with_mtu(100));
    let mut blaster = Blaster::new(B(), n, 10, Duration::from_micros(100), sim.epoch());
    blaster.payload = |i| vec![i as u8; if i % 2 == 0 { 100 } else { 101 }];
    sim.add_node(A(), Toy::Blaster(blaster));
    sim.add_node(B(), Toy::Sink(Sink::default()));
    drain_to_idle(&mut sim);
    assert_eq!(trace.borrow().len() as u64, n, "tap sees oversize too");
    let got = &sim.node(B()).sink().got;
    assert_eq!(got.len() as u64, n / 2);
    assert!(got.iter().all(|(_, _, d)| d.len() == 100));
    let st = sim.link_stats(A(), B());
    assert_eq!((st.too_big, st.delivered, st.lost), (n / 2, n / 2, 0));
}

#[test]
fn datagrams_to_nobody_are_lost() {
    let nobody = v4(9, 9);
    let mut sim = Sim::new(7);
    sim.add_node(
        A(),
        Toy::Blaster(Blaster::new(
            nobody,
            10,
            10,
            Duration::from_millis(1),
            sim.epoch(),
        )),
    );
    drain_to_idle(&mut sim);
    let st = sim.link_stats(A(), nobody);
    assert_eq!((st.sent, st.lost, st.delivered), (10, 10, 0));
}

#[test]
fn bandwidth_serializes_back_to_back_datagrams() {
    // 1000 bytes at 8 Mbit/s: 1 ms each, then the 50 µs base delay.
    let link = LinkConfig::default().with_bandwidth(8_000_000);
    let mut sim = Sim::new(8);
    sim.set_link(A(), B(), link);
    let mut blaster = Blaster::new(B(), 5, 5, Duration::from_millis(1), sim.epoch());
    blaster.payload = |_| vec![0; 1000];
    sim.add_node(A(), Toy::Blaster(blaster));
    sim.add_node(B(), Toy::Sink(Sink::default()));
    drain_to_idle(&mut sim);
    let epoch = sim.epoch();
    let times: Vec<Duration> = sim
        .node(B())
        .sink()
        .got
        .iter()
        .map(|(t, _, _)| *t - epoch)
        .collect();
    let want: Vec<Duration> = (1..=5)
        .map(|i| Duration::from_millis(i) + Duration::from_micros(50))
        .collect();
    assert_eq!(times, want);
}

#[test]
fn jitter_bounds_delay_and_reorders_naturally() {
    let n = 5000;
    let link = LinkConfig::default()
        .with_delay(Duration::from_micros(100))
        .with_jitter(Duration::from_micros(300));
    let (sim, trace) = blast(9, link, n, 1, Duration::from_micros(10));
    let sent_at: Vec<Duration> = trace.borrow().iter().map(|e| e.0).collect();
    let got = &sim.node(B()).sink().got;
    let mut inversions = 0;
    let mut prev = 0;
    for (t, _, d) in got {
        let seq = seq_of(d);
        let delay = (*t - sim.epoch()) - sent_at[seq as usize];
        assert!(delay >= Duration::from_micros(100) && delay <= Duration::from_micros(400));
        inversions += usize::from(seq < prev);
        prev = seq;
    }
    assert!(inversions > 0);
}

/// A lossy, jittery, duplicating, corrupting, reordering ping/echo run.
fn chaos_trace(seed: u64) -> (TraceVec, Vec<Fate>, LinkStats) {
    let link = LinkConfig::lossy(0.1)
        .with_jitter(Duration::from_micros(400))
        .with_duplicate(0.05)
        .with_corrupt(0.05)
        .with_reorder(0.05, Duration::from_millis(2));
    let mut sim = ping_echo(seed, link, 500);
    let trace = record_tap(&mut sim);
    let fates = Rc::new(RefCell::new(Vec::new()));
    let f = fates.clone();
    sim.set_fate_tap(Box::new(move |_, _, _, fate| f.borrow_mut().push(fate)));
    sim.run_for(Duration::from_secs(1)).expect("runs");
    assert_eq!(sim.elapsed(), Duration::from_secs(1));
    let stats = sim.total_stats();
    let t = trace.borrow().clone();
    let f = fates.borrow().clone();
    (t, f, stats)
}

#[test]
fn same_seed_replays_exactly_and_other_seeds_differ() {
    let (t1, f1, s1) = chaos_trace(11);
    let (t2, f2, s2) = chaos_trace(11);
    assert!(t1.len() > 500, "echoes are in the trace too");
    assert_eq!(t1, t2);
    assert_eq!(f1, f2);
    assert_eq!(s1, s2);
    for fate in [
        Fate::Lost,
        Fate::Duplicated,
        Fate::Corrupted,
        Fate::Reordered,
        Fate::Delivered,
    ] {
        assert!(f1.contains(&fate), "{fate:?} exercised");
    }
    let (t3, f3, _) = chaos_trace(12);
    assert_ne!(t1, t3);
    assert_ne!(f1, f3);
}

#[test]
fn deliveries_due_at_an_instant_precede_timers_due_then() {
    let mut sim = Sim::new(1);
    let start = sim.epoch();
    let arrival = start + LinkConfig::default().delay;
    let blaster = Blaster::new(B(), 1, 1, Duration::from_millis(1), start);
    sim.add_node(A(), Toy::Blaster(blaster));
    let logger = Logger {
        timer: Some(arrival),
        log: String::new(),
    };
    sim.add_node(B(), Toy::Logger(logger));
    drain_to_idle(&mut sim);
    match sim.node(B()) {
        Toy::Logger(l) => assert_eq!(l.log, "dt"),
        _ => unreachable!(),
    }
    assert_eq!(sim.now(), arrival);
}

#[test]
fn run_until_reports_success_time_limit_and_idle() {
    // Done before any step: the clock does not move.
    let mut sim = ping_echo(1, LinkConfig::default(), 10);
    sim.run_until(Duration::from_secs(1), |_| true)
        .expect("done");
    assert_eq!(sim.elapsed(), Duration::ZERO);

    // A ticker never goes idle: the limit stops it exactly at the limit.
    let mut sim = Sim::new(1);
    let next = sim.epoch();
    let period = Duration::from_millis(10);
    sim.add_node(
        A(),
        Toy::Ticker(Ticker {
            next,
            period,
            ticks: 0,
        }),
    );
    let r = sim.run_until(Duration::from_millis(95), |_| false);
    assert_eq!(r, Err(SimError::TimeLimit));
    assert_eq!(sim.elapsed(), Duration::from_millis(95));
    assert_eq!(
        sim.node(A()).ticker().ticks,
        10,
        "ticks at 0, 10, .., 90 ms"
    );

    // Ping/echo finishes all its work and goes idle before a never-true goal.
    let mut sim = ping_echo(1, LinkConfig::default(), 10);
    assert_eq!(
        sim.run_until(Duration::from_secs(1), |_| false),
        Err(SimError::Idle)
    );
    assert_eq!(sim.node(A()).pinger().rtts.len(), 10);
    assert_eq!(sim.step(), Ok(false));

    // An empty sim is idle immediately.
    let mut sim = Sim::<Toy>::new(1);
    assert_eq!(sim.step(), Ok(false));
    assert_eq!(
        sim.run_until(Duration::from_secs(1), |_| false),
        Err(SimError::Idle)
    );
}

#[test]
fn run_for_advances_exactly_and_processes_due_events() {
    let mut sim = ping_echo(2, LinkConfig::default(), 10);
    sim.run_for(Duration::from_micros(4_100)).expect("runs");
    assert_eq!(sim.elapsed(), Duration::from_micros(4_100));
    // Pings at 0..=4 ms; the one at 4 ms echoes back at exactly 4.1 ms.
    assert_eq!(sim.node(A()).pinger().rtts.len(), 5);
    sim.run_for(Duration::from_secs(1)).expect("runs idle");
    assert_eq!(sim.elapsed(), Duration::from_micros(1_004_100));
    assert_eq!(sim.node(A()).pinger().rtts.len(), 10);
}

fn stuck(at: Instant, remaining: u64, peer: Option<SocketAddr>) -> Toy {
    Toy::Stuck(Stuck {
        at,
        remaining,
        calls: 0,
        peer,
        unsent: 0,
    })
}

fn stuck_sim(remaining: u64) -> Sim<Toy> {
    let mut sim = Sim::new(1);
    let at = sim.epoch() + Duration::from_millis(1);
    sim.add_node(A(), stuck(at, remaining, None));
    sim
}

#[test]
fn livelocked_timer_is_detected() {
    // 1000 calls at one instant is allowed (a node may need several rounds).
    let mut sim = stuck_sim(1000);
    assert_eq!(
        sim.run_until(Duration::from_secs(1), |_| false),
        Err(SimError::Idle)
    );
    assert_eq!(sim.node_mut(A()).stuck().calls, 1000);
    // One more and the node is reported.
    let mut sim = stuck_sim(1001);
    let r = sim.run_until(Duration::from_secs(1), |_| false);
    assert_eq!(r, Err(SimError::Livelock { addr: A() }));
    assert_eq!(sim.elapsed(), Duration::from_millis(1));
    // Moving the timer through node_mut takes effect and resets the count.
    let later = sim.now() + Duration::from_millis(1);
    sim.node_mut(A()).stuck().at = later;
    sim.node_mut(A()).stuck().remaining = 1;
    assert_eq!(
        sim.run_until(Duration::from_secs(1), |_| false),
        Err(SimError::Idle)
    );
    assert_eq!(sim.elapsed(), Duration::from_millis(2));
}

#[test]
fn timers_that_keep_exchanging_datagrams_are_not_livelock() {
    // Two nodes each fire 1500 times at one instant, but every round they
    // also hear from each other over a zero-delay link: that is progress.
    let mut sim = Sim::new(1);
    sim.set_default_link(LinkConfig::default().with_delay(Duration::ZERO));
    let at = sim.epoch() + Duration::from_millis(1);
    sim.add_node(A(), stuck(at, 1500, Some(B())));
    sim.add_node(B(), stuck(at, 1500, Some(A())));
    assert_eq!(
        sim.run_until(Duration::from_secs(1), |_| false),
        Err(SimError::Idle)
    );
    assert_eq!(sim.node_mut(A()).stuck().calls, 1500);
    assert_eq!(sim.elapsed(), Duration::from_millis(1));
}

#[test]
fn endless_transmitter_is_detected() {
    let mut sim = Sim::new(1);
    sim.set_drain_limit(1000);
    sim.add_node(A(), Toy::Spammer(Spammer { peer: B() }));
    sim.add_node(B(), Toy::Sink(Sink::default()));
    assert_eq!(sim.step(), Err(SimError::Livelock { addr: A() }));
    assert_eq!(sim.link_stats(A(), B()).sent, 1000);
}

#[test]
fn boxed_dyn_nodes_work() {
    let mut sim: Sim<Box<dyn SimNode>> = Sim::new(1);
    let start = sim.epoch();
    sim.add_node(
        A(),
        Box::new(Toy::Pinger(Pinger::new(
            B(),
            3,
            Duration::from_millis(1),
            start,
        ))),
    );
    sim.add_node(B(), Box::new(Toy::Echo(Echo::default())));
    assert_eq!(
        sim.run_until(Duration::from_secs(1), |_| false),
        Err(SimError::Idle)
    );
    assert_eq!(sim.total_stats().delivered, 6);
}

#[test]
#[should_panic(expected = "duplicate node address")]
fn duplicate_address_panics() {
    let mut sim = Sim::new(1);
    sim.add_node(A(), Toy::Sink(Sink::default()));
    sim.add_node(A(), Toy::Sink(Sink::default()));
}

#[test]
#[should_panic(expected = "loss")]
fn invalid_link_config_panics() {
    Sim::<Toy>::new(1).set_default_link(LinkConfig::lossy(-0.5));
}
