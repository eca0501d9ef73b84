//! Which addresses a rendezvous node dials for liveness checks, and how
//! often (#13 item 3: reflection and scanning).
//!
//! A record's addresses are the peer's word (signed by the peer itself,
//! protocol v2), not a fact: anyone can publish a record naming a third
//! party's address, or an address inside the operator's network. So a
//! node dials only addresses of the scopes it is reachable at itself
//! ([`AddressPolicy`]), never unspecified or link-local ones, and at most
//! a few times a minute per destination IP ([`DialLimiter`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rendezvous_proto::Multiaddr;

/// The scope of an address, by its first component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A public IP address, or a DNS name (whose resolution the node does
    /// not control).
    Global,
    /// RFC 1918 / RFC 6598 IPv4, unique-local IPv6.
    Private,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// Unspecified, link-local, multicast, broadcast, documentation or
    /// otherwise reserved addresses, and anything that is not an IP or a
    /// DNS name: never dialled.
    Never,
}

/// The scope of `addr`.
pub fn scope_of(addr: &Multiaddr) -> Scope {
    use multiaddr::Protocol;
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => scope_of_ip(IpAddr::V4(ip)),
        Some(Protocol::Ip6(ip)) => scope_of_ip(IpAddr::V6(ip)),
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)) => {
            Scope::Global
        }
        _ => Scope::Never,
    }
}

/// The scope of an IP address.
pub fn scope_of_ip(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(ip) => scope_of_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => scope_of_v4(v4),
            None => scope_of_v6(ip),
        },
    }
}

fn scope_of_v4(ip: Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Scope::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918, and RFC 6598 shared address space (carrier NAT).
        Scope::Private
    } else if ip.is_unspecified()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
    {
        Scope::Never
    } else {
        Scope::Global
    }
}

fn scope_of_v6(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Scope::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local, fc00::/7.
        Scope::Private
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || first & 0xffc0 == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
    {
        // Link-local fe80::/10, documentation 2001:db8::/32.
        Scope::Never
    } else {
        Scope::Global
    }
}

/// Which scopes a node dials (global addresses always).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Also private addresses.
    pub private: bool,
    /// Also loopback addresses.
    pub loopback: bool,
}

impl AddressPolicy {
    /// Global addresses only: a node on the public internet.
    pub const GLOBAL: AddressPolicy = AddressPolicy {
        private: false,
        loopback: false,
    };
    /// Every scope but [`Scope::Never`]: tests, demos, local clusters.
    pub const LOCAL: AddressPolicy = AddressPolicy {
        private: true,
        loopback: true,
    };

    /// The scopes a node listening on `listen_addrs` (as reported by its
    /// transport, interfaces expanded) takes: only global addresses if it
    /// has a global one; private ones too if its best is private; loopback
    /// ones too if it listens on loopback only. `allow_private` (the
    /// operator's `--allow-private-addrs`) adds private and loopback.
    pub fn for_listen_addrs(listen_addrs: &[Multiaddr], allow_private: bool) -> Self {
        if allow_private {
            return Self::LOCAL;
        }
        let scopes: Vec<Scope> = listen_addrs.iter().map(scope_of).collect();
        if scopes.contains(&Scope::Global) {
            Self::GLOBAL
        } else if scopes.contains(&Scope::Private) {
            AddressPolicy {
                private: true,
                loopback: false,
            }
        } else {
            Self::LOCAL
        }
    }

    /// Whether `addr` may be dialled.
    pub fn allows(&self, addr: &Multiaddr) -> bool {
        match scope_of(addr) {
            Scope::Global => true,
            Scope::Private => self.private,
            Scope::Loopback => self.loopback,
            Scope::Never => false,
        }
    }
}

impl Default for AddressPolicy {
    /// [`AddressPolicy::GLOBAL`]: a node that knows nothing of its own
    /// addresses dials nothing inside anyone's network.
    fn default() -> Self {
        Self::GLOBAL
    }
}

/// The IP an address dials, if it names one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    use multiaddr::Protocol;
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => Some(IpAddr::V4(ip)),
        Some(Protocol::Ip6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// Most destinations whose dial counts are kept before the stale ones are
/// dropped.
const MAX_TRACKED_IPS: usize = 65_536;

/// Dials per destination IP per minute (fixed one-minute windows).
#[derive(Debug, Clone)]
pub struct DialLimiter {
    per_minute: u32,
    /// Per IP: when its window started (ms), and dials in it.
    windows: BTreeMap<IpAddr, (u64, u32)>,
}

impl DialLimiter {
    /// At most `per_minute` dials to one IP per minute.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: BTreeMap::new(),
        }
    }

    /// The addresses of `addrs` whose IP may be dialled once more now
    /// (counted as dialled); addresses without an IP (DNS names) pass
    /// uncounted. An IP named twice in `addrs` counts once.
    pub fn admit(&mut self, now_ms: u64, addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
        if self.windows.len() >= MAX_TRACKED_IPS {
            self.windows
                .retain(|_, (start, _)| now_ms < start.saturating_add(60_000));
        }
        let mut counted: Vec<IpAddr> = Vec::new();
        addrs
            .into_iter()
            .filter(|addr| {
                let Some(ip) = ip_of(addr) else {
                    return true;
                };
                if counted.contains(&ip) {
                    return true;
                }
                if self.windows.len() >= MAX_TRACKED_IPS && !self.windows.contains_key(&ip) {
                    // Every tracked window is live: refuse rather than
                    // forget one (which would reset its count).
                    return false;
                }
                let (start, count) = self.windows.entry(ip).or_insert((now_ms, 0));
                if now_ms >= start.saturating_add(60_000) {
                    *start = now_ms;
                    *count = 0;
                }
                if *count >= self.per_minute {
                    return false;
                }
                *count += 1;
                counted.push(ip);
                true
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn scopes() {
        for (addr, scope) in [
            ("/ip4/8.8.8.8/tcp/1", Scope::Global),
            ("/ip4/10.1.2.3/tcp/1", Scope::Private),
            ("/ip4/172.16.0.1/tcp/1", Scope::Private),
            ("/ip4/192.168.1.1/tcp/1", Scope::Private),
            ("/ip4/100.64.0.1/tcp/1", Scope::Private),
            ("/ip4/127.0.0.1/tcp/1", Scope::Loopback),
            ("/ip4/0.0.0.0/tcp/1", Scope::Never),
            ("/ip4/169.254.1.1/tcp/1", Scope::Never),
            ("/ip4/224.0.0.1/tcp/1", Scope::Never),
            ("/ip4/255.255.255.255/tcp/1", Scope::Never),
            ("/ip6/::1/tcp/1", Scope::Loopback),
            ("/ip6/::/tcp/1", Scope::Never),
            ("/ip6/fe80::1/tcp/1", Scope::Never),
            ("/ip6/fd00::1/tcp/1", Scope::Private),
            ("/ip6/2001:db8::1/tcp/1", Scope::Never),
            ("/ip6/2a00:1450::1/tcp/1", Scope::Global),
            ("/ip6/::ffff:10.0.0.1/tcp/1", Scope::Private),
            ("/dns4/example.com/tcp/1", Scope::Global),
            ("/tcp/1", Scope::Never),
        ] {
            assert_eq!(scope_of(&a(addr)), scope, "{addr}");
        }
    }

    #[test]
    fn policy_follows_the_best_listen_scope() {
        let global = [a("/ip4/127.0.0.1/tcp/1"), a("/ip4/8.8.8.8/tcp/1")];
        let private = [a("/ip4/127.0.0.1/tcp/1"), a("/ip4/10.0.0.2/tcp/1")];
        let loopback = [a("/ip4/127.0.0.1/tcp/1")];
        assert_eq!(
            AddressPolicy::for_listen_addrs(&global, false),
            AddressPolicy::GLOBAL
        );
        assert_eq!(
            AddressPolicy::for_listen_addrs(&private, false),
            AddressPolicy {
                private: true,
                loopback: false
            }
        );
        assert_eq!(
            AddressPolicy::for_listen_addrs(&loopback, false),
            AddressPolicy::LOCAL
        );
        assert_eq!(
            AddressPolicy::for_listen_addrs(&global, true),
            AddressPolicy::LOCAL
        );
        assert!(!AddressPolicy::LOCAL.allows(&a("/ip4/169.254.1.1/tcp/1")));
    }

    #[test]
    fn the_limiter_counts_per_ip_per_minute() {
        let mut l = DialLimiter::new(2);
        let victim = || vec![a("/ip4/8.8.8.8/tcp/1"), a("/ip4/8.8.8.8/tcp/2")];
        assert_eq!(l.admit(0, victim()).len(), 2, "one IP twice counts once");
        assert_eq!(l.admit(1, victim()).len(), 2);
        assert!(l.admit(2, victim()).is_empty());
        assert_eq!(l.admit(2, vec![a("/ip4/9.9.9.9/tcp/1")]).len(), 1);
        assert_eq!(l.admit(60_000, victim()).len(), 2, "a new minute");
    }
}
