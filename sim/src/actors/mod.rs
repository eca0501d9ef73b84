//! The actors: each wraps one of the real sans-IO cores and translates
//! between it and simulated messages and timers.

pub mod attacker;
pub mod client;
pub mod member;
pub mod rendezvous;
