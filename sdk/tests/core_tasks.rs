//! Futures on an engine core (`Mesh::spawn_on_core`): their calls complete
//! with no cross-thread wake (the counters say so), a panicking task fails
//! alone, and a mesh that is not running refuses a spawn.

mod common;

use std::time::Duration;

use net::{Identity, Mesh, MeshError, TaskError};

fn client_of(server: &Mesh) -> Mesh {
    common::start_client_of(
        Mesh::builder()
            .identity(Identity::from_seed(&[2; 32]))
            .psk([7; 32])
            .pin(false),
        server,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn calls_from_on_core_tasks_complete_without_cross_thread_wakes() {
    let (server, _echo) = common::start_echo_server();
    let client = client_of(&server);
    let id = server.node_id();
    const TASKS: u32 = 128;
    const CALLS: u32 = 50;
    let before = client.stats()[0].clone();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let c = client.clone();
            let calls = async move {
                for i in 0..CALLS {
                    let body = (t << 16 | i).to_be_bytes();
                    let r = c.call(id, "echo", body.to_vec()).await.expect("call");
                    assert_eq!(r[..], body, "echo of task {t} call {i}");
                }
                t
            };
            client.spawn_on_core(0, calls).expect("spawn")
        })
        .collect();
    for (t, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.expect("task output"), t as u32);
    }
    let after = client.stats()[0].clone();
    let calls = u64::from(TASKS * CALLS);
    let polls = after.task_polls - before.task_polls;
    let wakes = after.inbox_wakes - before.inbox_wakes;
    eprintln!("{calls} calls: {polls} task polls, {wakes} inbox wakes");
    // One poll to start each task, then one per answer at most (answers
    // that arrive together wake a task once).
    assert!(polls <= calls + u64::from(TASKS), "{polls} polls");
    // The tasks' own calls never wake the core from another thread; only
    // `stats` and `spawn` come from outside.
    assert!(
        wakes <= u64::from(TASKS) + 2,
        "{wakes} wakes for {calls} calls"
    );
    assert_eq!(after.tasks, 0, "every task ended");
    client.shutdown(Duration::from_secs(1)).unwrap();
    server.shutdown(Duration::from_secs(1)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_panicking_task_fails_alone_and_the_core_goes_on() {
    let (server, _echo) = common::start_echo_server();
    let client = client_of(&server);
    let id = server.node_id();
    let boom = client
        .spawn_on_core(0, async { panic!("bug in an on-core task") })
        .expect("spawn");
    assert!(matches!(boom.await, Err(TaskError::Ended)));
    let c = client.clone();
    let fine = client
        .spawn_on_core(
            0,
            async move { c.call(id, "echo", b"after".to_vec()).await },
        )
        .expect("spawn");
    let reply = fine.await.expect("task output").expect("call");
    assert_eq!(&reply[..], b"after");
    let st = &client.stats()[0];
    assert_eq!((st.task_panics, st.core_panics), (1, 0));
    client.shutdown(Duration::from_secs(1)).unwrap();
    server.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_mesh_not_started_or_a_missing_core_refuses_a_spawn() {
    let mesh = Mesh::builder()
        .identity(Identity::from_seed(&[3; 32]))
        .psk([7; 32])
        .pin(false)
        .build()
        .unwrap();
    let r = mesh.spawn_on_core(0, async {});
    assert!(matches!(r, Err(MeshError::Engine(_))), "not started");
    mesh.start().unwrap();
    let r = mesh.spawn_on_core(1, async {});
    assert!(matches!(r, Err(MeshError::Engine(_))), "one core only");
    mesh.shutdown(Duration::from_secs(1)).unwrap();
}
