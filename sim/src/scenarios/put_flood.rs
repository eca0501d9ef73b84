//! `put-flood`: stalling rendezvous nodes through Kademlia (issue #13
//! item 1). A kind index value is a list of namespace records, each a
//! pairing to check; junk ones (valid points, the signature of another
//! record) cost the sender nothing. Here `--adversaries` attackers each
//! send every rendezvous node a kind index of 64 distinct junk namespace
//! records every 100 ms from 4 s to 34 s (about 19,000 signature checks
//! per node and attacker if each were checked), while honest quorums
//! register, refresh and are discovered.
//!
//! A node checks values from one sender within that sender's budget
//! (`ServerConfig::value_budget`: 2 s of one core at once, a quarter of a
//! core after), and a sender whose value held an invalid signature is
//! refused for a back-off period (10 s, doubling).
//!
//! Invariants: no node checked more of one attacker's junk than its
//! budget allows over the flood (`junk-checks-within-budget`); the flood
//! reached the nodes (`attacks-ran`); honest members stay discoverable
//! during the flood and after it; DKG agreement, namespaces registered,
//! genuine stores.

use std::collections::BTreeMap;

use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::StatusCode;

use super::{check_common, check_discovery_complete, schedule_discoveries, Scenario};
use crate::msg::{Addr, Msg, Note};
use crate::world::{SimConfig, World};

const FLOOD: u32 = 1;
/// Discoveries during the flood...
const DISCOVER_DURING: u32 = 2;
/// ...and after it.
const DISCOVER_AFTER: u32 = 3;
/// Junk namespace records in each value.
const JUNK_PER_VALUE: u64 = 64;
const FLOOD_FROM_MS: u64 = 4_000;
const FLOOD_UNTIL_MS: u64 = 34_000;
const FLOOD_EVERY_MS: u64 = 100;
/// The value budget's cost estimate of one namespace record
/// (`dht::store::merge`'s `NAMESPACE_US`, threshold 1).
const NAMESPACE_US: u64 = 1_000;

/// The put-flood scenario.
#[derive(Default)]
pub struct PutFlood {
    /// One junk quorum of one member (a valid key set: anyone can deal one).
    junk: Option<TestQuorum>,
    /// Junk namespace records checked, per (rendezvous, attacker).
    checked: BTreeMap<(u32, u32), u64>,
    /// Values dropped unread or unchecked (penalty, budget), all nodes.
    dropped: u64,
    values_sent: u64,
    round: u64,
}

impl PutFlood {
    fn flood(&mut self, world: &mut World) {
        let now = world.now;
        let junk = self
            .junk
            .get_or_insert_with(|| TestQuorum::deal(1, 1, &mut world.rng));
        let mut record = junk.namespace(1, Some("junk"), now, now + 3_600_000);
        record.signature = junk
            .namespace(2, Some("junk"), now, now + 3_600_000)
            .signature;
        self.round += 1;
        let attackers = world.params().adversaries.max(1);
        let nodes = world.params().rendezvous;
        for a in 0..attackers {
            // Distinct entries (copies are checked once), new each round.
            let namespaces = (0..JUNK_PER_VALUE)
                .map(|i| {
                    let mut r = record.clone();
                    r.issued_at_ms = now
                        - 1
                        - (self.round * u64::from(attackers) + u64::from(a)) * JUNK_PER_VALUE
                        - i;
                    r
                })
                .collect();
            let value = std::sync::Arc::new(dht::KindValue { namespaces }.encode());
            for r in 0..nodes {
                world.send(
                    Addr::Attacker(a),
                    Addr::Rdv(r),
                    Msg::Replicate {
                        key: dht::kind_key("junk"),
                        value: value.clone(),
                    },
                );
                self.values_sent += 1;
            }
        }
    }

    /// Most junk records one node may check of one sender over the flood:
    /// its burst, and its rate for the flood's length.
    fn bound() -> u64 {
        let budget = dht::ServerConfig::default().value_budget;
        let seconds = (FLOOD_UNTIL_MS - FLOOD_FROM_MS).div_ceil(1_000) + 1;
        (budget.work_burst_us + budget.work_us_per_sec * seconds) / NAMESPACE_US
    }
}

impl Scenario for PutFlood {
    fn configure(&self, config: &mut SimConfig) {
        config.duration_ms = 40_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        let mut t = FLOOD_FROM_MS;
        while t < FLOOD_UNTIL_MS {
            world.control_at(t, FLOOD);
            t += FLOOD_EVERY_MS;
        }
        world.control_at(20_000, DISCOVER_DURING);
        world.control_at(36_000, DISCOVER_AFTER);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            FLOOD => self.flood(world),
            DISCOVER_DURING => {
                schedule_discoveries(world, 20_000, 2_000, 800);
            }
            DISCOVER_AFTER => {
                schedule_discoveries(world, 36_000, 2_000, 800);
            }
            _ => {}
        }
    }

    fn note(&mut self, world: &mut World, _from: Addr, note: &Note) {
        if let Note::Merge {
            rdv,
            from: from @ Addr::Attacker(a),
            rejected,
            ..
        } = note
        {
            if !world.is_adversary(*from) {
                return;
            }
            for code in rejected {
                match code {
                    StatusCode::InvalidNamespaceSignature => {
                        *self.checked.entry((*rdv, *a)).or_insert(0) += 1
                    }
                    StatusCode::QuotaExceeded => self.dropped += 1,
                    _ => {}
                }
            }
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_discovery_complete(world, "honest-members-discoverable");
        let bound = Self::bound();
        if let Some((&(rdv, a), &n)) = self.checked.iter().max_by_key(|(_, n)| **n) {
            if n > bound {
                world.violate(
                    "junk-checks-within-budget",
                    format!(
                        "rendezvous {rdv} checked {n} junk namespace records of attacker {a} \
                         (its budget allows {bound})"
                    ),
                );
            }
        }
        if self.checked.is_empty() || self.values_sent == 0 {
            world.violate(
                "attacks-ran",
                "no junk value was checked by any rendezvous".to_owned(),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let total: u64 = self.checked.values().sum();
        let worst = self.checked.values().copied().max().unwrap_or(0);
        BTreeMap::from([
            ("junk_values_sent".to_owned(), self.values_sent as f64),
            (
                "junk_records_sent".to_owned(),
                (self.values_sent * JUNK_PER_VALUE) as f64,
            ),
            ("junk_records_checked".to_owned(), total as f64),
            ("junk_checked_max_per_rdv_attacker".to_owned(), worst as f64),
            ("junk_values_dropped".to_owned(), self.dropped as f64),
            ("junk_check_bound".to_owned(), Self::bound() as f64),
        ])
    }
}
