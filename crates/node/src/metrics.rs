//! A tiny Prometheus text endpoint (`--metrics ADDR`): hand-written
//! counters and gauges, served over plain HTTP by a tokio task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rendezvous_proto::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counters and gauges of one node.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Registrations (namespace and peer) accepted.
    pub registrations_accepted: AtomicU64,
    rejected: [AtomicU64; StatusCode::ALL.len()],
    /// Namespaces stored (gauge).
    pub namespaces: AtomicU64,
    /// Peer records stored (gauge).
    pub peers: AtomicU64,
    /// Peer records served, i.e. not unreachable (gauge).
    pub reachable_peers: AtomicU64,
    /// Liveness pings due (dial or ping over an open connection).
    pub pings_due: AtomicU64,
    /// Pongs received.
    pub pongs: AtomicU64,
    /// Pings missed (failed, refused, or unreachable dial).
    pub ping_misses: AtomicU64,
    /// Discover requests answered.
    pub discovers: AtomicU64,
    /// Standard `/rendezvous/1.0.0` DISCOVERs answered.
    pub standard_discovers: AtomicU64,
    /// Standard `/rendezvous/1.0.0` REGISTERs refused.
    pub standard_registers_refused: AtomicU64,
    /// Discovers (both protocols) refused: their sender was over its rate.
    pub discovers_throttled: AtomicU64,
    /// Peers no longer listed here (they left a ping unanswered): every
    /// change of listing is logged and counted.
    pub unlisted: AtomicU64,
    /// Peers listed here again (they answered, or registered anew).
    pub relisted: AtomicU64,
    /// Connections closed and redialled because their last ping failed.
    pub reconnects: AtomicU64,
    /// Discovers answered `LookupTimedOut`.
    pub lookups_timed_out: AtomicU64,
    /// Replicated values merged from other rendezvous nodes.
    pub replications_merged: AtomicU64,
    /// Kademlia lookups started for discovers of namespaces not held here.
    pub lookups: AtomicU64,
    /// Discovers answered at once from a lookup that recently found nothing.
    pub lookup_negative_hits: AtomicU64,
    /// Discovers refused because a lookup cap was reached.
    pub lookups_refused: AtomicU64,
    /// Liveness dials not made: no address in an allowed scope, or every
    /// destination IP over its rate (each counts as a missed ping).
    pub dials_refused: AtomicU64,
    /// Addresses left out of liveness dials for their scope.
    pub dial_addrs_out_of_scope: AtomicU64,
    /// Addresses left out of liveness dials for their IP's rate.
    pub dial_addrs_rate_limited: AtomicU64,
    /// Senders penalized (disconnected, refused a while) for an invalid signature.
    pub penalties: AtomicU64,
    /// Requests refused because their sender was penalized.
    pub penalized_requests: AtomicU64,
    /// Values from other nodes queued for verification.
    pub values_queued: AtomicU64,
    /// Values from other nodes that changed nothing (nothing to verify).
    pub values_unchanged: AtomicU64,
    /// Values dropped unread: their sender was penalized.
    pub values_penalized: AtomicU64,
    /// Values dropped or cut over their sender's budget.
    pub values_over_budget: AtomicU64,
    /// Values dropped: too much value verification was waiting.
    pub values_busy: AtomicU64,
    /// Senders whose connections were refused a moment for sending values
    /// over their byte budget.
    pub senders_throttled: AtomicU64,
    /// Estimated verification work of values waiting or being verified,
    /// µs (gauge).
    pub value_work_queued_us: AtomicU64,
    /// DKG messages this member sent (resends included).
    pub dkg_messages: AtomicU64,
    /// DKG phases this member completed (hello, deal, response, justification, finish).
    pub dkg_rounds: AtomicU64,
    /// Dealers this member left out of a DKG run's QUAL (each run counts).
    pub dkg_disqualified: AtomicU64,
    /// DKG runs that failed and are retried.
    pub dkg_retries: AtomicU64,
    /// Rendezvous nodes holding an unexpired registration of this member (gauge).
    pub member_registered_at: AtomicU64,
    /// Rendezvous nodes this member no longer uses: they refused for good (gauge).
    pub member_rendezvous_dropped: AtomicU64,
    /// Refusals and unanswered requests this member got from rendezvous nodes.
    pub member_refusals: AtomicU64,
}

impl Metrics {
    /// A new, shared set of zeros.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts a rejection.
    pub fn reject(&self, code: StatusCode) {
        if let Some(pos) = StatusCode::ALL.iter().position(|c| *c == code) {
            if let Some(c) = self.rejected.get(pos) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Rejections counted for one code.
    pub fn rejected(&self, code: StatusCode) -> u64 {
        StatusCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|pos| self.rejected.get(pos))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: &AtomicU64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        };
        metric(
            "rdht_registrations_accepted_total",
            "counter",
            "Registrations accepted.",
            &self.registrations_accepted,
        );
        metric(
            "rdht_namespaces",
            "gauge",
            "Namespaces stored.",
            &self.namespaces,
        );
        metric("rdht_peers", "gauge", "Peer records stored.", &self.peers);
        metric(
            "rdht_reachable_peers",
            "gauge",
            "Peer records served (not unreachable).",
            &self.reachable_peers,
        );
        metric(
            "rdht_unlisted_total",
            "counter",
            "Peers no longer listed here (a ping failed or went unanswered).",
            &self.unlisted,
        );
        metric(
            "rdht_relisted_total",
            "counter",
            "Peers listed here again (they answered, or registered anew).",
            &self.relisted,
        );
        metric(
            "rdht_reconnects_total",
            "counter",
            "Connections closed and redialled because their last ping failed.",
            &self.reconnects,
        );
        metric(
            "rdht_lookups_timed_out_total",
            "counter",
            "Discovers answered LookupTimedOut (the lookup found nothing in time).",
            &self.lookups_timed_out,
        );
        metric(
            "rdht_pings_total",
            "counter",
            "Liveness pings due.",
            &self.pings_due,
        );
        metric(
            "rdht_pongs_total",
            "counter",
            "Pongs received.",
            &self.pongs,
        );
        metric(
            "rdht_ping_misses_total",
            "counter",
            "Pings missed.",
            &self.ping_misses,
        );
        metric(
            "rdht_discovers_total",
            "counter",
            "Discover requests answered.",
            &self.discovers,
        );
        metric(
            "rdht_standard_discovers_total",
            "counter",
            "Standard /rendezvous/1.0.0 DISCOVER requests answered.",
            &self.standard_discovers,
        );
        metric(
            "rdht_standard_registers_refused_total",
            "counter",
            "Standard /rendezvous/1.0.0 REGISTER requests refused (E_NOT_AUTHORIZED).",
            &self.standard_registers_refused,
        );
        metric(
            "rdht_discovers_throttled_total",
            "counter",
            "Discovers (rdht and standard) refused because their sender was over its rate.",
            &self.discovers_throttled,
        );
        metric(
            "rdht_replications_merged_total",
            "counter",
            "Replicated values merged.",
            &self.replications_merged,
        );
        metric(
            "rdht_lookups_total",
            "counter",
            "Kademlia lookups started for namespaces not held here.",
            &self.lookups,
        );
        metric(
            "rdht_lookup_negative_hits_total",
            "counter",
            "Discovers answered from a lookup that recently found nothing.",
            &self.lookup_negative_hits,
        );
        metric(
            "rdht_lookups_refused_total",
            "counter",
            "Discovers refused over a lookup cap.",
            &self.lookups_refused,
        );
        metric(
            "rdht_dials_refused_total",
            "counter",
            "Liveness dials not made (no allowed address, or over the per-IP rate).",
            &self.dials_refused,
        );
        metric(
            "rdht_dial_addrs_out_of_scope_total",
            "counter",
            "Addresses left out of liveness dials for their scope.",
            &self.dial_addrs_out_of_scope,
        );
        metric(
            "rdht_dial_addrs_rate_limited_total",
            "counter",
            "Addresses left out of liveness dials for their IP's rate.",
            &self.dial_addrs_rate_limited,
        );
        metric(
            "rdht_penalties_total",
            "counter",
            "Senders penalized for an invalid signature.",
            &self.penalties,
        );
        metric(
            "rdht_penalized_requests_total",
            "counter",
            "Requests refused because their sender was penalized.",
            &self.penalized_requests,
        );
        metric(
            "rdht_values_queued_total",
            "counter",
            "Values from other nodes queued for verification.",
            &self.values_queued,
        );
        metric(
            "rdht_values_unchanged_total",
            "counter",
            "Values from other nodes that changed nothing.",
            &self.values_unchanged,
        );
        metric(
            "rdht_values_penalized_total",
            "counter",
            "Values dropped unread: their sender sent an invalid signature.",
            &self.values_penalized,
        );
        metric(
            "rdht_values_over_budget_total",
            "counter",
            "Values dropped or cut over their sender's verification or byte budget.",
            &self.values_over_budget,
        );
        metric(
            "rdht_values_busy_total",
            "counter",
            "Values dropped: too much value verification waiting.",
            &self.values_busy,
        );
        metric(
            "rdht_value_senders_throttled_total",
            "counter",
            "Senders whose connections were refused a moment for values over their byte budget.",
            &self.senders_throttled,
        );
        metric(
            "rdht_value_work_queued_us",
            "gauge",
            "Estimated verification work of values waiting or being verified (µs).",
            &self.value_work_queued_us,
        );
        metric(
            "rdht_dkg_messages_total",
            "counter",
            "DKG messages sent (resends included).",
            &self.dkg_messages,
        );
        metric(
            "rdht_dkg_rounds_total",
            "counter",
            "DKG phases completed.",
            &self.dkg_rounds,
        );
        metric(
            "rdht_dkg_disqualified_total",
            "counter",
            "Dealers left out of a DKG run's QUAL (the log names them and why).",
            &self.dkg_disqualified,
        );
        metric(
            "rdht_dkg_retries_total",
            "counter",
            "DKG runs that failed and were retried.",
            &self.dkg_retries,
        );
        metric(
            "rdht_member_registered_at",
            "gauge",
            "Rendezvous nodes holding an unexpired registration of this member.",
            &self.member_registered_at,
        );
        metric(
            "rdht_member_rendezvous_dropped",
            "gauge",
            "Rendezvous nodes this member no longer uses (they refused for good).",
            &self.member_rendezvous_dropped,
        );
        metric(
            "rdht_member_refusals_total",
            "counter",
            "Refusals and unanswered requests from rendezvous nodes (retried or not).",
            &self.member_refusals,
        );
        out.push_str("# HELP rdht_registrations_rejected_total Registrations rejected, by code.\n");
        out.push_str("# TYPE rdht_registrations_rejected_total counter\n");
        for (code, count) in StatusCode::ALL.iter().zip(&self.rejected) {
            if *code == StatusCode::Ok {
                continue;
            }
            out.push_str(&format!(
                "rdht_registrations_rejected_total{{code=\"{}\"}} {}\n",
                code.name(),
                count.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// Serves `metrics` as Prometheus text on `addr` (any path). Returns the
/// bound address; the server runs until the runtime stops.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // Read (and ignore) the request head; bounded.
                let mut buf = [0u8; 2048];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf))
                        .await;
                let body = metrics.render();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_prometheus_text() {
        let metrics = Metrics::new();
        metrics
            .registrations_accepted
            .fetch_add(3, Ordering::Relaxed);
        metrics.reject(StatusCode::NotAMember);
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics.clone())
            .await
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"));
        assert!(body.contains("rdht_registrations_accepted_total 3"));
        assert!(body.contains("rdht_registrations_rejected_total{code=\"NotAMember\"} 1"));
        assert_eq!(metrics.rejected(StatusCode::NotAMember), 1);
    }
}
