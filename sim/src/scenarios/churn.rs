//! `churn`: `--adversaries` members crash, one every 1.5 s from 8 s, and
//! restart 18 s later (keeping their key share and namespace, as on
//! disk). A dead member must leave discovery (no replica serves it)
//! within the liveness bound, stay out until it restarts (replication
//! must not bring it back), and be back at every replica soon after its
//! restart. The state of every replica is checked every 250 ms.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::RngCore;

use super::{check_common, check_discovery_complete, schedule_discoveries, Scenario};
use crate::world::{lock, SimConfig, World, T0};

const CHECK: u32 = 1;
const CRASH: u32 = 2;
const RESTART: u32 = 3;
const DISCOVER: u32 = 4;
const CHECK_PERIOD_MS: u64 = 250;
const DOWNTIME_MS: u64 = 18_000;
/// A restarted member must be served again by every replica within this.
const RETURN_BOUND_MS: u64 = 3_000;

#[derive(Debug, Clone, Default)]
struct Victim {
    flat: u32,
    crashed_at: u64,
    evicted_at: Option<u64>,
    restarted_at: Option<u64>,
    back_at: Option<u64>,
}

/// The churn scenario.
#[derive(Default)]
pub struct Churn {
    victims: Vec<Victim>,
    next_crash: usize,
    plan: Vec<u32>,
}

impl Churn {
    fn served_by(world: &World, flat: u32) -> (usize, usize) {
        let n = world.shared.n();
        let q = flat / n;
        let i = flat % n + 1;
        let replicas = world.quorums[q as usize].replicas.clone();
        let alive: Vec<u32> = replicas
            .into_iter()
            .filter(|&r| world.rdv_alive(r))
            .collect();
        let serving = alive.iter().filter(|&&r| world.served(r, q, i)).count();
        (serving, alive.len())
    }

    fn check(&mut self, world: &mut World) {
        let bound = world.shared.config.liveness_bound_ms() + CHECK_PERIOD_MS;
        let now = world.now;
        let mut problems = Vec::new();
        for v in &mut self.victims {
            let (serving, replicas) = Self::served_by(world, v.flat);
            match (v.restarted_at, v.evicted_at) {
                (None, None) => {
                    if serving == 0 {
                        v.evicted_at = Some(now);
                    } else if now - v.crashed_at > bound {
                        problems.push((
                            "dead-member-evicted-within-bound",
                            format!(
                                "member {} dead for {} ms, still served by {serving} replica(s) (bound {bound} ms)",
                                v.flat,
                                now - v.crashed_at
                            ),
                        ));
                        // Report once.
                        v.evicted_at = Some(u64::MAX);
                    }
                }
                (None, Some(e)) if e != u64::MAX => {
                    if serving > 0 {
                        problems.push((
                            "dead-member-stays-evicted",
                            format!(
                                "dead member {} is served again by {serving} replica(s)",
                                v.flat
                            ),
                        ));
                    }
                }
                (None, Some(_)) => {}
                (Some(restarted), _) => {
                    if v.back_at.is_none() {
                        if serving == replicas {
                            v.back_at = Some(now);
                        } else if now - restarted > RETURN_BOUND_MS {
                            problems.push((
                                "restarted-member-back",
                                format!(
                                    "member {} restarted {} ms ago, served by {serving} of {replicas}",
                                    v.flat,
                                    now - restarted
                                ),
                            ));
                            v.back_at = Some(u64::MAX);
                        }
                    }
                }
            }
        }
        for (invariant, detail) in problems {
            world.violate(invariant, detail);
        }
        if now + CHECK_PERIOD_MS <= T0 + world.shared.config.duration_ms {
            world.control_at(now - T0 + CHECK_PERIOD_MS, CHECK);
        }
    }
}

impl Scenario for Churn {
    fn configure(&self, config: &mut SimConfig) {
        config.peer_ttl_ms = 120_000;
        config.duration_ms = 50_000;
    }

    fn setup(&mut self, world: &mut World) {
        let n = world.shared.n();
        let total = world.members.len() as u32;
        let count = world.params().adversaries.min(total);
        let mut chosen = BTreeSet::new();
        let mut plan = Vec::new();
        while (plan.len() as u32) < count {
            let flat = (world.rng.next_u64() % u64::from(total)) as u32;
            // Keep each quorum's collector up so that nothing but the
            // crashed members themselves changes.
            if flat.is_multiple_of(n) || !chosen.insert(flat) {
                if n == 1 {
                    break;
                }
                continue;
            }
            plan.push(flat);
        }
        self.plan = plan;
        world.start(0);
        for k in 0..self.plan.len() as u64 {
            world.control_at(8_000 + k * 1_500, CRASH);
            world.control_at(8_000 + k * 1_500 + DOWNTIME_MS, RESTART);
        }
        world.control_at(8_000, CHECK);
        world.control_at(45_000, DISCOVER);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            CHECK => self.check(world),
            CRASH => {
                if let Some(&flat) = self.plan.get(self.next_crash) {
                    self.next_crash += 1;
                    world.crash_member(flat);
                    self.victims.push(Victim {
                        flat,
                        crashed_at: world.now,
                        ..Victim::default()
                    });
                }
            }
            RESTART => {
                let now = world.now;
                if let Some(v) = self
                    .victims
                    .iter_mut()
                    .find(|v| v.restarted_at.is_none() && now - v.crashed_at >= DOWNTIME_MS)
                {
                    v.restarted_at = Some(now);
                    let flat = v.flat;
                    world.restart_member(flat);
                }
            }
            DISCOVER => {
                schedule_discoveries(world, 45_000, 2_000, 800);
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_discovery_complete(world, "alive-members-discoverable");
        for v in &self.victims {
            if v.evicted_at.is_none() {
                world.violate(
                    "dead-member-evicted-within-bound",
                    format!("member {} never evicted", v.flat),
                );
            }
            if v.back_at.is_none() {
                world.violate(
                    "restarted-member-back",
                    format!("member {} never back", v.flat),
                );
            }
        }
        let alive = self
            .victims
            .iter()
            .filter(|v| !lock(&world.members[v.flat as usize]).alive)
            .count();
        if alive > 0 {
            world.violate(
                "restarted-member-back",
                format!("{alive} victim(s) still down at the end"),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let evictions: Vec<f64> = self
            .victims
            .iter()
            .filter_map(|v| {
                v.evicted_at
                    .filter(|&e| e != u64::MAX)
                    .map(|e| (e - v.crashed_at) as f64 / 1000.0)
            })
            .collect();
        let returns: Vec<f64> = self
            .victims
            .iter()
            .filter_map(|v| match (v.restarted_at, v.back_at) {
                (Some(r), Some(b)) if b != u64::MAX => Some((b - r) as f64 / 1000.0),
                _ => None,
            })
            .collect();
        let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        BTreeMap::from([
            ("crashes".to_owned(), self.victims.len() as f64),
            ("eviction_s_max".to_owned(), max(&evictions)),
            ("eviction_s_mean".to_owned(), mean(&evictions)),
            ("return_s_max".to_owned(), max(&returns)),
            ("return_s_mean".to_owned(), mean(&returns)),
        ])
    }
}
