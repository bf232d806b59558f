//! Two nodes on loopback: one serves `echo`, the other calls it.
//!
//! `cargo run --release -p net --example echo`

use std::time::{Duration, Instant};

use net::{Identity, Mesh, Status};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let psk = [7u8; 32];
    let server_id = Identity::from_seed(&[1; 32]);
    let server_public = server_id.public();
    let server = Mesh::builder()
        .identity(server_id)
        .psk(psk)
        .pin(false)
        .build()?;
    server.start()?;
    let _echo = server.serve_rpc("echo", |_info, body, out| {
        out.extend_from_slice(body);
        Status::OK
    })?;
    let addr = server.local_addr().expect("started");

    let client = Mesh::builder()
        .identity(Identity::from_seed(&[2; 32]))
        .psk(psk)
        .pin(false)
        .peer(addr, server_public)
        .build()?;
    client.start()?;
    let (driver, aead) = client.describe();
    println!(
        "server {} on {addr}; driver {driver}; aead {aead}",
        server.node_id().short()
    );

    // The first call includes the handshake; the second is a plain round trip.
    for label in ["first call (with handshake)", "round trip"] {
        let t = Instant::now();
        let reply = client
            .call(server.node_id(), "echo", b"hello, mesh".to_vec())
            .await?;
        assert_eq!(&reply[..], b"hello, mesh");
        println!(
            "{label}: {:?} in {:?}",
            String::from_utf8_lossy(&reply),
            t.elapsed()
        );
    }
    client.shutdown(Duration::from_secs(1))?;
    server.shutdown(Duration::from_secs(1))?;
    Ok(())
}
