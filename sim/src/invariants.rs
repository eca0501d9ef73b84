//! Invariant outcomes of a run: what broke, when, and how to replay it.
//!
//! The checks themselves live with the scenarios (`scenarios/mod.rs` has
//! the shared ones), because each scenario states its own; this module
//! turns the violations a run collected into the report's verdict.

use crate::world::{Params, Violation};

/// A run's verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Whether every invariant held.
    pub passed: bool,
    /// What broke.
    pub violations: Vec<Violation>,
    /// The exact command that replays the run.
    pub replay: String,
}

impl Verdict {
    /// The verdict for a run's violations.
    pub fn new(params: &Params, violations: Vec<Violation>) -> Self {
        Self {
            passed: violations.is_empty(),
            violations,
            replay: params.replay_command(),
        }
    }

    /// A human-readable account of the violations (empty when passed).
    pub fn describe(&self, scenario: &str) -> String {
        let mut out = String::new();
        for v in &self.violations {
            out.push_str(&format!(
                "INVARIANT VIOLATED [{scenario}] {} at t={:.3}s: {}\n",
                v.invariant, v.at_s, v.detail
            ));
        }
        if !self.passed {
            out.push_str(&format!("  replay: {}\n", self.replay));
        }
        out
    }
}
