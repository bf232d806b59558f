//! Cookie replies under an initiation flood (WireGuard-style), driven by
//! hand: a spoofed flood costs the responder one cheap reply per packet
//! once it is under load, and an honest initiator still connects through a
//! cookie round trip in the middle of the flood.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_crypto::Identity;
use net_proto::{Endpoint, EndpointConfig, COOKIE_REPLY_LEN, INIT_LEN};

const PSK: [u8; 32] = [7; 32];

fn endpoint(seed: u8, now: Instant) -> Endpoint {
    let mut cfg = EndpointConfig::new(Identity::from_seed(&[seed; 32]), PSK);
    cfg.rng_seed = u64::from(seed);
    Endpoint::new(cfg, now, 1_000_000_000)
}

fn out(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = vec![0u8; 65536];
    let mut v = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        v.push((t.dst, buf[..t.len].to_vec()));
    }
    v
}

fn spoofed(i: u32) -> SocketAddr {
    let [_, b, c, d] = i.to_be_bytes();
    SocketAddr::from(([10, b, c, d], 40000))
}

#[test]
fn flood_gets_cookies_and_an_honest_initiator_still_connects() {
    let t0 = Instant::now();
    let mut server = endpoint(2, t0);
    let server_addr = SocketAddr::from(([127, 0, 0, 2], 4000));
    let client_addr = SocketAddr::from(([127, 0, 0, 1], 4000));
    // The flooder knows the server's identity (so mac1 is right) but never
    // reads replies: one initiation, sent from 10 000 spoofed addresses at
    // 10 000 per second.
    let mut flooder = endpoint(3, t0);
    flooder
        .connect(t0, server.public_identity(), server_addr)
        .unwrap();
    let flood = out(&mut flooder, t0).remove(0).1;
    assert_eq!(flood.len(), INIT_LEN);

    let mut client = endpoint(1, t0);
    let mut session = None;
    let mut replies = 0u64;
    for i in 0..10_000u32 {
        let now = t0 + Duration::from_micros(100 * u64::from(i));
        server.handle(now, spoofed(i), &mut flood.clone());
        replies += out(&mut server, now).len() as u64;
        if i == 5_000 {
            // Half a second into the flood, an honest client connects.
            let s = client
                .connect(now, server.public_identity(), server_addr)
                .unwrap();
            session = Some(s);
            for round in 0..3 {
                for (_, mut d) in out(&mut client, now) {
                    server.handle(now, client_addr, &mut d);
                }
                for (dst, mut d) in out(&mut server, now) {
                    if dst == client_addr {
                        client.handle(now, server_addr, &mut d);
                    }
                }
                if client.is_established(s) {
                    assert_eq!(round, 1, "one cookie round trip, then the handshake");
                    break;
                }
            }
        }
    }
    let s = session.unwrap();
    assert!(client.is_established(s), "the honest client connected");
    assert_eq!(client.stats().cookie_replies_rx, 1);
    assert_eq!(client.stats().handshake_init_tx, 2);

    let st = server.stats();
    // Public-key work was done only before load set in (about 10 ms of
    // flood) and for the client's second initiation.
    let dh_work = st.handshake_replay + st.handshake_resp_tx;
    assert!(dh_work <= 150, "DH work for {dh_work} initiations");
    assert!(
        st.cookie_replies_tx >= 9_800,
        "{} cookie replies",
        st.cookie_replies_tx
    );
    // The client's cookie reply and response went out in its own rounds.
    assert_eq!(replies, st.cookie_replies_tx + st.handshake_resp_tx - 2);
    assert!(server.session_count() <= 2);
}

#[test]
fn forged_and_replayed_cookie_replies_do_nothing() {
    let t0 = Instant::now();
    let limits = net_proto::HandshakeLimits {
        per_second: 10.0,
        burst: 2.0,
        ..Default::default()
    };
    let mut cfg = EndpointConfig::new(Identity::from_seed(&[2; 32]), PSK);
    cfg.handshake_limits = limits;
    let mut server = Endpoint::new(cfg, t0, 1_000_000_000);
    let server_addr = SocketAddr::from(([127, 0, 0, 2], 4000));
    let client_addr = SocketAddr::from(([127, 0, 0, 1], 4000));
    let mut client = endpoint(1, t0);
    // Put the server under load with two copies of another initiation.
    let mut other = endpoint(3, t0);
    other
        .connect(t0, server.public_identity(), server_addr)
        .unwrap();
    let other_init = out(&mut other, t0).remove(0).1;
    for _ in 0..2 {
        server.handle(t0, spoofed(1), &mut other_init.clone());
    }
    out(&mut server, t0);

    let s = client
        .connect(t0, server.public_identity(), server_addr)
        .unwrap();
    let (_, init) = out(&mut client, t0).remove(0);
    server.handle(t0, client_addr, &mut init.clone());
    let (dst, reply) = out(&mut server, t0).remove(0);
    assert_eq!((dst, reply.len()), (client_addr, COOKIE_REPLY_LEN));

    // A forged reply (right index, wrong contents) is refused and counted.
    let mut forged = reply.clone();
    forged[40] ^= 1;
    client.handle(t0, server_addr, &mut forged);
    assert_eq!(client.stats().handshake_decrypt, 1);
    assert!(out(&mut client, t0).is_empty(), "no resend on a forgery");
    // The genuine reply triggers exactly one fresh initiation; a replay of
    // it does nothing more.
    client.handle(t0, server_addr, &mut reply.clone());
    client.handle(t0, server_addr, &mut reply.clone());
    assert_eq!(client.stats().cookie_replies_rx, 1);
    assert_eq!(client.stats().handshake_unknown_index, 1);
    let resend = out(&mut client, t0);
    assert_eq!(resend.len(), 1);
    // The resend carries a valid mac2, so the loaded server does the work.
    server.handle(t0, client_addr, &mut resend[0].1.clone());
    let (_, mut resp) = out(&mut server, t0).remove(0);
    client.handle(t0, server_addr, &mut resp);
    assert!(client.is_established(s));
    // A cookie is bound to the source address: the same initiation from
    // another port is challenged again.
    let moved = SocketAddr::from(([127, 0, 0, 1], 4001));
    server.handle(t0, moved, &mut resend[0].1.clone());
    let (dst, d) = out(&mut server, t0).remove(0);
    assert_eq!((dst, d.len()), (moved, COOKIE_REPLY_LEN));
}
