//! `lying-rendezvous`: `--adversaries` rendezvous nodes answer every
//! registration with a refusal they invent (in turn: a bad share
//! signature, not a member, not authorized, a quota, an internal error),
//! and keep nothing. Members must go on through the honest replicas: a
//! permanent refusal drops that node only, a passing one is retried with
//! backoff, and nobody gives up. Every quorum with at least one honest
//! replica stays completely discoverable.
//!
//! Timeline: DKG at 0 s; discoveries from 20 s; checks at 29 s and at the
//! end.

use std::collections::BTreeMap;

use rendezvous_proto::StatusCode;

use super::busy_rendezvous::check_no_member_gave_up;
use super::{check_common, check_served_everywhere, pick_rendezvous, Scenario};
use crate::actors::rendezvous::Malice;
use crate::msg::{Addr, Note};
use crate::world::{lock, SimConfig, World, T0};

/// The refusals lying nodes invent, one per node in turn.
const LIES: [StatusCode; 5] = [
    StatusCode::InvalidShareSignature,
    StatusCode::NotAMember,
    StatusCode::NotAuthorized,
    StatusCode::QuotaExceeded,
    StatusCode::Internal,
];

/// The lying-rendezvous scenario.
#[derive(Default)]
pub struct LyingRendezvous {
    found: u64,
    expected: u64,
    dropped: u64,
}

impl LyingRendezvous {
    fn has_honest_replica(world: &World, quorum: u32) -> bool {
        world.quorums[quorum as usize]
            .replicas
            .iter()
            .any(|r| !world.malicious.contains(r))
    }
}

impl Scenario for LyingRendezvous {
    fn configure(&self, config: &mut SimConfig) {
        config.duration_ms = 30_000;
    }

    fn setup(&mut self, world: &mut World) {
        let chosen = pick_rendezvous(world, world.params().adversaries);
        for (k, r) in chosen.into_iter().enumerate() {
            world.set_malice(r, Malice::Lie(LIES[k % LIES.len()]));
        }
        world.start(0);
        world.control_at(20_000, 1);
        world.control_at(29_000, 2);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            1 => {
                let clients = world.shared.config.clients.max(1);
                for q in 0..world.quorums.len() as u32 {
                    let at = T0 + 20_000 + u64::from(q) * 97 % 5_000;
                    world.discover_at(at, q % clients, q, None);
                }
            }
            2 => {
                check_no_member_gave_up(world);
                check_served_everywhere(world, "served-by-every-honest-replica");
                // Members stopped using the nodes that refused for good.
                let mut dropped = 0;
                for m in &world.members {
                    let m = lock(m);
                    dropped += m
                        .dropped()
                        .iter()
                        .filter(|r| world.malicious.contains(r))
                        .count() as u64;
                    if m.dropped().iter().any(|r| !world.malicious.contains(r)) {
                        drop(m);
                        world.violate(
                            "honest-nodes-kept",
                            "a member stopped using an honest node".to_owned(),
                        );
                        break;
                    }
                }
                self.dropped = dropped;
            }
            _ => {}
        }
    }

    fn note(&mut self, world: &mut World, _from: Addr, note: &Note) {
        if let Note::Discovery(d) = note {
            if !Self::has_honest_replica(world, d.quorum) {
                return;
            }
            let expected = world.expected_members(d.quorum);
            self.expected += expected.len() as u64;
            self.found += expected
                .iter()
                .filter(|i| d.found.iter().any(|(f, _)| f == *i))
                .count() as u64;
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        let bound = (self.expected as f64 * (1.0 - world.params().loss)).ceil() as u64;
        if self.expected == 0 || self.found < bound {
            world.violate(
                "discoverable-through-honest-nodes",
                format!(
                    "found {} of {} expected members in quorums with an honest replica",
                    self.found, self.expected
                ),
            );
        }
        if self.dropped == 0 && !world.malicious.is_empty() {
            world.violate(
                "liars-dropped",
                "no member stopped using a node that refused it for good".to_owned(),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let completeness = if self.expected == 0 {
            1.0
        } else {
            self.found as f64 / self.expected as f64
        };
        BTreeMap::from([
            (
                "completeness_with_an_honest_replica".to_owned(),
                completeness,
            ),
            (
                "lying_nodes_dropped_by_members".to_owned(),
                self.dropped as f64,
            ),
        ])
    }
}
