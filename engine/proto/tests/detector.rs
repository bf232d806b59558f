//! Failure detector on virtual time: transitions at the configured bounds,
//! recovery, stale slots, the bounds on tracked peers and queued events, and
//! config validation.

use std::time::{Duration, Instant};

use net_crypto::NodeId;
use net_proto::detector::{DetectorConfigError, DetectorInterval, TrackError};
use net_proto::{DetectorConfig, FailureDetector, PeerEvent, PeerState};

const MS: Duration = Duration::from_millis(1);

fn node(n: u32) -> NodeId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_le_bytes());
    NodeId(id)
}

fn detector(max_peers: usize) -> FailureDetector {
    FailureDetector::new(DetectorConfig {
        max_peers,
        ..DetectorConfig::default()
    })
    .expect("valid config")
}

/// The state in `peer n`'s last event among `events`.
fn latest(events: &[PeerEvent], n: u32) -> Option<PeerState> {
    events
        .iter()
        .rev()
        .find(|e| e.peer == node(n))
        .map(|e| e.state)
}

fn drain(d: &mut FailureDetector) -> Vec<PeerEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

/// Runs `check_all` whenever `next_check` says, up to `until`; returns each
/// event with the time of the check that produced it.
fn run_until(d: &mut FailureDetector, start: Instant, until: Instant) -> Vec<(Instant, PeerEvent)> {
    let mut seen = Vec::new();
    let mut now = start;
    while let Some(at) = d.next_check(now) {
        if at > until {
            break;
        }
        now = at.max(now);
        d.check_all(now);
        seen.extend(drain(d).into_iter().map(|e| (now, e)));
    }
    seen
}

#[test]
fn suspect_then_down_exactly_at_thresholds() {
    let t0 = Instant::now();
    let mut d = detector(16);
    let slot = d.track(node(1), t0).unwrap();
    assert_eq!(d.state(&node(1)), Some(PeerState::Up));

    d.check_all(t0 + Duration::from_secs(3) - MS);
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.slot_state(slot), Some(PeerState::Up));

    d.check_all(t0 + Duration::from_secs(3));
    let events = drain(&mut d);
    assert_eq!(
        events,
        [PeerEvent {
            peer: node(1),
            state: PeerState::Suspect,
            silent_for: Duration::from_secs(3),
        }]
    );

    d.check_all(t0 + Duration::from_secs(6) - MS);
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.state(&node(1)), Some(PeerState::Suspect));

    d.check_all(t0 + Duration::from_secs(6));
    let events = drain(&mut d);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].state, PeerState::Down);
    assert_eq!(events[0].silent_for, Duration::from_secs(6));

    // Down is terminal: later checks emit nothing and no check is due.
    d.check_all(t0 + Duration::from_secs(60));
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.next_check(t0 + Duration::from_secs(60)), None);
}

#[test]
fn detection_latency_within_documented_bound_when_driven_by_next_check() {
    let cfg = DetectorConfig::default();
    let t0 = Instant::now();
    let mut d = detector(16);
    // Heard at an offset that does not line up with the check grid.
    d.check_all(t0);
    let heard = t0 + Duration::from_millis(137);
    let slot = d.track(node(7), t0).unwrap();
    d.heard(slot, heard);

    let seen = run_until(&mut d, t0, t0 + Duration::from_secs(20));
    let states: Vec<PeerState> = seen.iter().map(|(_, e)| e.state).collect();
    assert_eq!(states, [PeerState::Suspect, PeerState::Down]);
    let half = cfg.heartbeat / 2;
    let (suspect_at, down_at) = (seen[0].0, seen[1].0);
    assert!(suspect_at >= heard + cfg.suspect_after);
    assert!(suspect_at <= heard + cfg.suspect_after + half);
    assert!(down_at >= heard + cfg.down_after);
    assert!(down_at <= heard + cfg.down_after + half);
}

#[test]
fn heard_brings_suspect_and_down_back_up() {
    let t0 = Instant::now();
    let mut d = detector(16);
    let slot = d.track(node(1), t0).unwrap();

    d.check_all(t0 + Duration::from_secs(4));
    assert_eq!(d.state(&node(1)), Some(PeerState::Suspect));
    d.heard(slot, t0 + Duration::from_secs(5));
    let events = drain(&mut d);
    assert_eq!(events.last().map(|e| e.state), Some(PeerState::Up));
    assert_eq!(
        events.last().map(|e| e.silent_for),
        Some(Duration::from_secs(5))
    );

    d.check_all(t0 + Duration::from_secs(20));
    assert_eq!(d.state(&node(1)), Some(PeerState::Down));
    assert_eq!(d.next_check(t0 + Duration::from_secs(20)), None);
    d.heard(slot, t0 + Duration::from_secs(21));
    let events = drain(&mut d);
    assert_eq!(
        events.iter().map(|e| e.state).collect::<Vec<_>>(),
        [PeerState::Down, PeerState::Up]
    );
    assert_eq!(d.state(&node(1)), Some(PeerState::Up));
    // Watched again: a check is due, and silence counts from the new time.
    assert!(d.next_check(t0 + Duration::from_secs(21)).is_some());
    d.check_all(t0 + Duration::from_secs(23));
    assert!(drain(&mut d).is_empty());

    // Heard while Up: no event; an older time does not move last-heard back.
    d.heard(slot, t0 + Duration::from_secs(20));
    assert!(drain(&mut d).is_empty());
    d.check_all(t0 + Duration::from_millis(23_500));
    assert_eq!(
        d.state(&node(1)),
        Some(PeerState::Up),
        "silence counts from 21 s"
    );
    d.check_all(t0 + Duration::from_secs(24));
    assert_eq!(d.state(&node(1)), Some(PeerState::Suspect));
}

#[test]
fn stale_slot_after_forget_is_ignored() {
    let t0 = Instant::now();
    let mut d = detector(16);
    let old = d.track(node(1), t0).unwrap();
    assert_eq!(
        d.track(node(1), t0 + MS).unwrap(),
        old,
        "track is idempotent"
    );
    assert!(d.forget(&node(1)));
    assert!(!d.forget(&node(1)));
    assert_eq!(d.state(&node(1)), None);
    assert_eq!(d.slot_state(old), None);

    // Another peer takes the freed slot; the old handle must not touch it.
    let other = d.track(node(2), t0).unwrap();
    assert_ne!(other, old);
    d.check_all(t0 + Duration::from_secs(4));
    assert_eq!(d.state(&node(2)), Some(PeerState::Suspect));
    drain(&mut d);
    d.heard(old, t0 + Duration::from_secs(4));
    assert_eq!(d.state(&node(2)), Some(PeerState::Suspect));
    assert!(drain(&mut d).is_empty());

    // Re-tracking the first peer gives a fresh handle; the old one stays dead.
    let again = d.track(node(1), t0 + Duration::from_secs(4)).unwrap();
    assert_ne!(again, old);
    assert_eq!(d.slot_state(old), None);
    assert_eq!(d.slot_state(again), Some(PeerState::Up));
    assert_eq!(d.slot(&node(1)), Some(again));
}

#[test]
fn tracked_peers_are_bounded() {
    let t0 = Instant::now();
    let mut d = detector(3);
    for n in 0..3 {
        d.track(node(n), t0).unwrap();
    }
    assert_eq!(d.track(node(3), t0), Err(TrackError::Full { max_peers: 3 }));
    // A tracked peer is still returned when full; forgetting makes room.
    assert!(d.track(node(0), t0).is_ok());
    d.forget(&node(1));
    assert!(d.track(node(3), t0).is_ok());
    assert_eq!(d.len(), 3);
}

#[test]
fn full_queue_coalesces_without_losing_latest_state() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let mut d = detector(4);
    let slots: Vec<_> = (0..4).map(|n| d.track(node(n), t0).unwrap()).collect();
    // Four Suspect events fill the queue (cap = max_peers = 4).
    d.check_all(t0 + secs(4));
    assert_eq!(d.coalesced_events(), 0);
    // Peer 0 comes back, all the others go Down, peer 1 comes back: seven
    // more changes nobody polled.
    d.heard(slots[0], t0 + secs(5));
    d.check_all(t0 + secs(7));
    d.heard(slots[1], t0 + secs(8));
    assert!(d.coalesced_events() > 0);

    let events = drain(&mut d);
    assert!(events.len() <= 4, "queue bound held: {events:?}");
    assert_eq!(latest(&events, 0), Some(PeerState::Up));
    assert_eq!(latest(&events, 1), Some(PeerState::Up));
    assert_eq!(latest(&events, 2), Some(PeerState::Down));
    assert_eq!(latest(&events, 3), Some(PeerState::Down));
    for n in 0..4 {
        assert_eq!(latest(&events, n), d.state(&node(n)), "peer {n}");
    }
}

#[test]
fn below_the_bound_every_transition_is_delivered_in_order() {
    let t0 = Instant::now();
    let mut d = detector(16);
    let slot = d.track(node(1), t0).unwrap();
    d.check_all(t0 + Duration::from_secs(3));
    d.check_all(t0 + Duration::from_secs(6));
    d.heard(slot, t0 + Duration::from_secs(7));
    let states: Vec<_> = drain(&mut d).iter().map(|e| e.state).collect();
    assert_eq!(states, [PeerState::Suspect, PeerState::Down, PeerState::Up]);
    assert_eq!(d.coalesced_events(), 0);
}

#[test]
fn coalescing_drops_events_of_forgotten_peers_first() {
    let t0 = Instant::now();
    let mut d = detector(2);
    d.track(node(0), t0).unwrap();
    d.track(node(1), t0).unwrap();
    d.check_all(t0 + Duration::from_secs(4)); // two Suspect events: full
    d.forget(&node(0));
    let fresh = d.track(node(2), t0 + Duration::from_secs(4)).unwrap();
    d.check_all(t0 + Duration::from_secs(9)); // peer 1 Down, peer 2 Suspect
    let events = drain(&mut d);
    assert!(events.len() <= 2, "{events:?}");
    assert_eq!(latest(&events, 1), Some(PeerState::Down));
    assert_eq!(latest(&events, 2), Some(PeerState::Suspect));
    assert_eq!(d.slot_state(fresh), Some(PeerState::Suspect));
}

#[test]
fn next_check_runs_every_half_heartbeat_while_someone_is_watched() {
    let t0 = Instant::now();
    let mut d = detector(4);
    assert_eq!(d.next_check(t0), None, "nobody tracked");
    d.track(node(1), t0).unwrap();
    assert_eq!(d.next_check(t0), Some(t0), "never checked: due now");
    d.check_all(t0);
    assert_eq!(d.next_check(t0), Some(t0 + Duration::from_millis(500)));
    d.forget(&node(1));
    assert_eq!(d.next_check(t0), None, "nobody left to watch");
}

#[test]
fn config_validation() {
    let ok = DetectorConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    let secs = Duration::from_secs;
    let cases = [
        (
            DetectorConfig {
                heartbeat: Duration::ZERO,
                ..ok
            },
            DetectorConfigError::Zero(DetectorInterval::Heartbeat),
        ),
        (
            DetectorConfig {
                down_after: Duration::ZERO,
                ..ok
            },
            DetectorConfigError::Zero(DetectorInterval::DownAfter),
        ),
        (
            DetectorConfig {
                heartbeat: Duration::from_micros(10),
                ..ok
            },
            DetectorConfigError::HeartbeatTooShort(Duration::from_micros(10)),
        ),
        (
            DetectorConfig {
                suspect_after: secs(1),
                ..ok
            },
            DetectorConfigError::NotIncreasing {
                heartbeat: secs(1),
                suspect_after: secs(1),
                down_after: secs(6),
            },
        ),
        (
            DetectorConfig {
                down_after: secs(2),
                ..ok
            },
            DetectorConfigError::NotIncreasing {
                heartbeat: secs(1),
                suspect_after: secs(3),
                down_after: secs(2),
            },
        ),
        (
            DetectorConfig {
                down_after: secs(100 * 3600),
                ..ok
            },
            DetectorConfigError::TooLong(DetectorInterval::DownAfter),
        ),
        (
            DetectorConfig { max_peers: 0, ..ok },
            DetectorConfigError::MaxPeers(0),
        ),
    ];
    for (config, want) in cases {
        assert_eq!(config.validate(), Err(want), "{config:?}");
        assert_eq!(FailureDetector::new(config).err(), Some(want));
        assert!(!want.to_string().is_empty());
    }
}
