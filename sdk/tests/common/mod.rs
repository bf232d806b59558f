//! Helpers shared by the SDK's integration tests.
#![allow(dead_code)]

use net::{Identity, Mesh, MeshBuilder, ServeHandle, Status};

/// Builds `b` with `server` as its configured peer and starts it.
pub fn start_client_of(b: MeshBuilder, server: &Mesh) -> Mesh {
    let addr = server.local_addr().expect("server started");
    let identity = server.engine().config().public_identity();
    let m = b.peer(addr, identity).build().expect("client config");
    m.start().expect("client start");
    m
}

/// A started, unpinned server (identity seed 1, PSK 7s) serving `echo`
/// inline; keep the handle alive for as long as `echo` should be served.
pub fn start_echo_server() -> (Mesh, ServeHandle) {
    let server = Mesh::builder()
        .identity(Identity::from_seed(&[1; 32]))
        .psk([7; 32])
        .pin(false)
        .build()
        .unwrap();
    server.start().unwrap();
    let echo = server
        .serve_rpc("echo", |_, b, out| {
            out.extend_from_slice(b);
            Status::OK
        })
        .unwrap();
    (server, echo)
}
