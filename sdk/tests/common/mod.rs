//! Helpers shared by the SDK's integration tests.
#![allow(dead_code)]

use net::{Mesh, MeshBuilder};

/// Builds `b` with `server` as its configured peer and starts it.
pub fn start_client_of(b: MeshBuilder, server: &Mesh) -> Mesh {
    let addr = server.local_addr().expect("server started");
    let identity = server.engine().config().public_identity();
    let m = b.peer(addr, identity).build().expect("client config");
    m.start().expect("client start");
    m
}
