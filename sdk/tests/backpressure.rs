//! A full core inbox makes an async caller wait, not fail: 4 096 calls
//! started at once against a client whose cores take at most 16 new calls
//! at a time all complete, and the client's counters show callers did wait.

mod common;

use net::{Identity, Mesh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_inbox_waits_for_room_instead_of_failing() {
    let (server, _echo) = common::start_echo_server();
    let small = net_engine::MeshNodeConfig::new(Identity::from_seed(&[2; 32]), [7; 32])
        .with_inbox(16)
        .with_pinning(false);
    let client = common::start_client_of(Mesh::builder().node_config(small), &server);
    let id = server.node_id();
    // Warm the session so the burst meets an open path.
    client.call(id, "echo", b"warm".to_vec()).await.unwrap();
    let tasks: Vec<_> = (0..4096u32)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.call(id, "echo", i.to_be_bytes().to_vec()).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        let body = r.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(body[..], (i as u32).to_be_bytes());
    }
    let waits: u64 = client.stats().iter().map(|s| s.inbox_room_waits).sum();
    eprintln!("callers that waited for room: {waits}");
    assert!(
        waits > 0,
        "the burst never filled the 16-slot inbox: the test proves nothing"
    );
    client.shutdown(std::time::Duration::from_secs(1)).unwrap();
    server.shutdown(std::time::Duration::from_secs(1)).unwrap();
}
