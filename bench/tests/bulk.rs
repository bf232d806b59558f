//! `bulk` on loopback with the sink server on a thread: two flows of 16 MiB
//! each in 4 MiB calls, two in flight per flow. Checks that every byte was
//! acknowledged by the sink, with no error and a positive goodput (no speed
//! assertion: the machine may be loaded). Runs under `timeout`, so a hang
//! fails the test instead of blocking it.

use std::process::Command;

/// The flows' results from the JSON report.
fn flows(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["per_flow"].as_array().expect("per_flow is an array")
}

#[test]
fn two_flows_on_loopback_are_fully_acknowledged() {
    let dir = std::env::temp_dir().join(format!("bulk-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("bulk.json");
    let out = Command::new("timeout")
        .args(["60", env!("CARGO_BIN_EXE_bulk")])
        .args(["--processes", "1", "--flows", "2", "--total-mib", "16"])
        .args(["--chunk-mib", "4", "--conc", "2", "--json"])
        .arg(&json)
        .output()
        .expect("run bulk under timeout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bulk failed: {stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);
    let flows = flows(&report);
    assert_eq!(flows.len(), 2, "{stdout}");
    for f in flows {
        assert_eq!(f["bytes"].as_u64(), Some(16 << 20), "{f}");
        assert_eq!(f["calls"].as_u64(), Some(4), "{f}");
        assert_eq!(f["errors"].as_u64(), Some(0), "{f}");
        assert!(f["goodput_mbps"].as_f64().is_some_and(|g| g > 0.0), "{f}");
        assert!(
            f["sent"]["datagrams_tx"].as_u64().is_some_and(|n| n > 0),
            "{f}"
        );
    }
    assert_eq!(report["total"]["bytes"].as_u64(), Some(32 << 20));
    assert!(stdout.contains("| total |"), "{stdout}");
}
