//! `rdht-bench bench` at a tiny size: both servers run as child processes
//! (`rdht rendezvous` from the production binary, libp2p's server as
//! `rdht-bench bench-baseline-server`), the JSON has every field, and
//! registrations were accepted. No timing assertions: figures on a shared
//! machine are not a test.

mod support;

use std::time::Duration;

use rdht_bench::bench::{run, BenchConfig};
use support::{rdht, FIGURE_FIELDS, RDHT_BENCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_every_field_for_both_servers() {
    let mut config = BenchConfig::new(rdht(), RDHT_BENCH.into());
    config.duration = Duration::from_secs(2);
    config.quorums = 2;
    config.members = 4;
    config.threshold = 3;
    config.batch = 4;
    config.window = 32;
    config.max_registrations = Some(400);
    config.stored = 24;
    config.discover_interval = Duration::from_millis(50);
    let report = tokio::time::timeout(Duration::from_secs(240), run(config))
        .await
        .expect("the benchmark finished in time")
        .expect("the benchmark ran");
    let json = report.to_json();
    let fields = FIGURE_FIELDS;
    for field in fields {
        assert!(json[field].is_number(), "ours lacks {field}: {json}");
        for object in [
            "baseline",
            "refresh",
            "seat",
            "floor",
            "floor_batched",
            "floor_verified",
        ] {
            assert!(
                json[object][field].is_number(),
                "{object} lacks {field}: {json}"
            );
        }
    }
    // The floor server answers the prober's discovers from what it was
    // sent, so its discover latency is a floor, not a zero.
    for floor in ["floor", "floor_batched", "floor_verified"] {
        assert!(
            json[floor]["discover_p50_ms"].as_f64().unwrap_or(0.0) > 0.0,
            "{floor} timed no discover: {json}"
        );
    }
    assert!(
        json["seat"]["pairing_limit_per_sec"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    // The seat load's CPU split: the verification threads did the
    // pairings, and the ceiling is the limit less what the others used.
    let seat = &json["seat"];
    let limit = seat["pairing_limit_per_sec"].as_f64().unwrap_or(0.0);
    let ceiling = seat["pairing_ceiling_per_sec"].as_f64().unwrap_or(-1.0);
    assert!(seat["verify_cpu_s"].as_f64().unwrap_or(0.0) > 0.0, "{json}");
    assert!(
        seat["load_generator_cpu_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{json}"
    );
    assert!(ceiling > 0.0 && ceiling < limit, "{json}");
    assert_eq!(json["stored"].as_u64(), Some(24), "{json}");
    let printed: serde_json::Value =
        serde_json::from_str(&report.to_json_string()).expect("--json prints JSON");
    assert_eq!(printed, json);
    assert!(report.ours.accepted > 0, "{}", report.to_text());
    assert!(report.ours.rejected.is_empty(), "{}", report.to_text());
    assert!(report.ours.discovers > 0, "{}", report.to_text());
    // Refreshes one per request, and fresh seats, both accepted in full
    // after a prefill of 24 seats went through the real validation.
    for load in [&report.refresh, &report.seat] {
        assert!(load.accepted > 0, "{}", report.to_text());
        assert!(load.rejected.is_empty(), "{}", report.to_text());
    }
    // The machine's pairing limit, measured before and after our run.
    assert_eq!(report.limits.len(), 2, "{}", report.to_text());
    assert!(report
        .limits
        .iter()
        .all(|l| l.per_sec > 0.0 && l.batch_us > 0.0));
    assert!(report.to_text().contains("before and after"));
    let baseline = report.baseline.expect("the baseline ran");
    assert!(baseline.accepted > 0);
    assert!(baseline.discovers > 0);
    assert!(json["registrations_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(json["peak_rss_mb"].as_f64().unwrap_or(0.0) > 0.0);
}

/// `rdht-bench put-flood` at a tiny size: both phases ran, the flood
/// reached the node, and every refresh was accepted in both phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_flood_reports_both_phases() {
    let config = rdht_bench::bench_put_flood::PutFloodConfig {
        rdht_exe: rdht(),
        duration: Duration::from_secs(2),
        members: 4,
        in_flight: 4,
        fresh_identity_every: 1,
    };
    let f = tokio::time::timeout(
        Duration::from_secs(120),
        rdht_bench::bench_put_flood::bench_put_flood(config),
    )
    .await
    .expect("the benchmark finished in time")
    .expect("the benchmark ran");
    assert!(f.quiet_discovers > 0 && f.flood_discovers > 0, "{f:?}");
    assert!(f.puts_sent > 0 && f.identities > 1, "{f:?}");
    assert_eq!(f.quiet_refreshes_accepted, f.quiet_refreshes_sent, "{f:?}");
    assert_eq!(f.flood_refreshes_accepted, f.flood_refreshes_sent, "{f:?}");
    assert!(f.flood_refreshes_sent > 0, "{f:?}");
}
