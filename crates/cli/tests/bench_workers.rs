//! `switchboard bench fanout` with its subscribers in worker processes,
//! against a real server: every delivery is counted once, from every
//! worker, with the workers' latencies merged.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::Server;

#[tokio::test]
async fn fanout_over_worker_processes_counts_every_delivery_once() {
    let server = Server::start(["--storage", "memory"]);
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "fanout", "--server", &server.http.to_string(), "--json"])
        .args(["-s", "300", "--workers", "3", "-r", "200", "--duration", "1", "--concurrency", "32"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the bench finishes").expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().expect("a report")).expect("JSON report");
    assert_eq!(report["member_processes"], 3, "{report}");
    assert_eq!(report["members"], 300, "{report}");
    let sent = report["sent"].as_u64().expect("sent");
    assert!(sent >= 150, "{report}");
    assert_eq!(report["expected"].as_u64(), Some(sent * 300), "{report}");
    assert_eq!((report["received"].as_u64(), report["lost"].as_i64()), (Some(sent * 300), Some(0)), "{report}");
    assert_eq!((report["gaps"].as_u64(), report["members_closed"].as_u64()), (Some(0), Some(0)), "{report}");
    // Publisher and members are in different processes: the clock they
    // share is checked in `switchboard_bench::common`; here, that latencies were merged.
    let p50 = report["latency_ms"]["p50"].as_f64().expect("latency");
    assert!(p50 > 0.0 && p50 < 1000.0, "p50 {p50} ms: {report}");
}
