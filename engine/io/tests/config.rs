//! Driver choice parsing, configuration validation and the `Auto` choice.

mod common;

use net_io::{open, open_group, DriverChoice, DriverConfig, DriverKind, IoError, Steering};

#[test]
fn kind_names_round_trip() {
    for k in DriverKind::ALL {
        assert_eq!(k.to_string().parse::<DriverKind>().unwrap(), k);
        assert_eq!(
            k.to_string().parse::<DriverChoice>().unwrap(),
            DriverChoice::Force(k)
        );
    }
    assert_eq!("uring".parse::<DriverKind>().unwrap(), DriverKind::Uring);
    assert_eq!(" MMSG ".parse::<DriverKind>().unwrap(), DriverKind::Mmsg);
    assert_eq!(
        "Portable".parse::<DriverKind>().unwrap(),
        DriverKind::Portable
    );
    assert!("auto".parse::<DriverKind>().is_err());
    assert!("epoll".parse::<DriverKind>().is_err());
    assert_eq!("auto".parse::<DriverChoice>().unwrap(), DriverChoice::Auto);
    assert_eq!(DriverChoice::Auto.to_string(), "auto");
    let e = "tokio".parse::<DriverChoice>().unwrap_err();
    assert!(e.to_string().contains("tokio"));
}

#[test]
fn env_parser() {
    let p = DriverChoice::from_env_value;
    assert_eq!(p(None), Ok(DriverChoice::Auto));
    assert_eq!(p(Some("")), Ok(DriverChoice::Auto));
    assert_eq!(p(Some("  ")), Ok(DriverChoice::Auto));
    assert_eq!(p(Some("auto")), Ok(DriverChoice::Auto));
    assert_eq!(p(Some("uring")), Ok(DriverChoice::Force(DriverKind::Uring)));
    assert_eq!(p(Some("mmsg")), Ok(DriverChoice::Force(DriverKind::Mmsg)));
    assert_eq!(
        p(Some("portable")),
        Ok(DriverChoice::Force(DriverKind::Portable))
    );
    assert!(p(Some("fast")).is_err());
    assert_eq!(net_io::DRIVER_ENV, "NET_DRIVER");
}

#[test]
fn config_validation() {
    let bad = [
        DriverConfig {
            batch: 0,
            ..DriverConfig::default()
        },
        DriverConfig {
            batch: 5000,
            ..DriverConfig::default()
        },
        DriverConfig {
            max_datagram: 0,
            ..DriverConfig::default()
        },
        DriverConfig {
            max_datagram: 70_000,
            ..DriverConfig::default()
        },
    ];
    for cfg in bad {
        assert!(matches!(
            open(common::local(), DriverChoice::Auto, &cfg),
            Err(IoError::Io(_))
        ));
    }
    let d = DriverConfig::default();
    assert_eq!(
        (d.batch, d.max_datagram, d.gso, d.busy_poll_us),
        (64, 16_384, true, None)
    );
    assert!(matches!(
        open_group(
            common::local(),
            0,
            Steering::default(),
            DriverChoice::Auto,
            &d
        ),
        Err(IoError::Io(_))
    ));
    assert!(matches!(
        open_group(
            common::local(),
            300,
            Steering::for_group(300),
            DriverChoice::Auto,
            &d
        ),
        Err(IoError::Io(_))
    ));
    let bits = Steering {
        core_bits: 40,
        ..Steering::for_group(2)
    };
    assert!(matches!(
        open_group(common::local(), 2, bits, DriverChoice::Auto, &d),
        Err(IoError::Steering(_))
    ));
}

/// `Auto` picks the best kind this kernel offers, without downgrades when
/// that is uring.
#[test]
fn auto_picks_best_available() {
    let d = open(
        common::local(),
        DriverChoice::Auto,
        &DriverConfig::default(),
    )
    .unwrap();
    match common::availability(DriverKind::Uring) {
        Ok(()) => {
            assert_eq!(d.kind(), DriverKind::Uring);
            assert_eq!(d.stats().downgrades, 0);
        }
        Err(_) => {
            assert_eq!(d.kind(), DriverKind::Mmsg);
            assert_eq!(d.stats().downgrades, 1);
        }
    }
}

#[test]
fn busy_poll_is_best_effort() {
    let cfg = DriverConfig {
        busy_poll_us: Some(50),
        ..DriverConfig::default()
    };
    for k in [DriverKind::Mmsg, DriverKind::Portable] {
        let d = open(common::local(), DriverChoice::Force(k), &cfg).unwrap();
        assert_eq!(d.kind(), k);
    }
}

#[test]
fn bind_conflict_is_a_bind_error() {
    let a = open(
        common::local(),
        DriverChoice::Force(DriverKind::Mmsg),
        &DriverConfig::default(),
    )
    .unwrap();
    let r = open(
        a.local_addr(),
        DriverChoice::Force(DriverKind::Mmsg),
        &DriverConfig::default(),
    );
    assert!(matches!(r, Err(IoError::Bind(_))));
}
