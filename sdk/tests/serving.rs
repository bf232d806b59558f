//! Serving rules a user can rely on: a name is served once, and an async
//! handler needs a runtime, said as an error rather than a panic.

mod common;

use std::time::Duration;

use net::{Bytes, MeshError, Status};

#[test]
fn serving_a_name_twice_is_refused_and_the_first_handler_stays() {
    let (server, _echo) = common::start_echo_server();
    let second = server.serve_rpc("echo", |_, _, out| {
        out.extend_from_slice(b"impostor");
        Status::OK
    });
    match second {
        Err(MeshError::AlreadyServing(name)) => assert_eq!(name, "echo"),
        other => panic!("second serve: {:?}", other.map(|_| ())),
    }
    // The refused handle was never made, so nothing unserved the first:
    // calls still reach the original handler.
    let client = common::start_client_of(
        net::Mesh::builder()
            .identity(net::Identity::from_seed(&[2; 32]))
            .psk([7; 32])
            .pin(false),
        &server,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = rt
        .block_on(client.call(server.node_id(), "echo", Bytes::from_static(b"hi")))
        .expect("echo");
    assert_eq!(&reply[..], b"hi");
    client
        .shutdown(Duration::from_secs(1))
        .expect("client stop");
    server
        .shutdown(Duration::from_secs(1))
        .expect("server stop");
}

#[test]
fn a_name_is_free_again_once_its_handle_is_dropped() {
    let (server, echo) = common::start_echo_server();
    drop(echo);
    let again = server.serve_rpc("echo", |_, b, out| {
        out.extend_from_slice(b);
        Status::OK
    });
    assert!(again.is_ok(), "serve after unserve: {:?}", again.err());
    server
        .shutdown(Duration::from_secs(1))
        .expect("server stop");
}

#[test]
fn an_async_handler_outside_a_runtime_is_an_error_not_a_panic() {
    let (server, _echo) = common::start_echo_server();
    let r = server.serve_rpc_async("later", |req: net::Request| async move { Ok(req.payload) });
    assert!(
        matches!(r, Err(MeshError::NoRuntime)),
        "{:?}",
        r.map(|_| ())
    );
    // Nothing was registered: the name is still free.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let ok = server.serve_rpc_async("later", |req: net::Request| async move { Ok(req.payload) });
    assert!(ok.is_ok(), "inside a runtime: {:?}", ok.err());
    drop(ok);
    server
        .shutdown(Duration::from_secs(1))
        .expect("server stop");
}
