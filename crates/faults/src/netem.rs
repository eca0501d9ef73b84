//! The link emulator behind `rdht-netem`: a userspace Ethernet switch
//! between TAP devices, applying per-address-pair rules (delay with
//! jitter, loss, cuts) that can change while it runs.
//!
//! This kernel has neither the `netem` qdisc nor iptables/nft, so the
//! testbed brings its own. Each namespace of the testbed gets one TAP
//! device, created here (the emulator holds every device's file: when it
//! exits, the devices go with it) and then moved into its namespace by
//! the testbed. A frame read from one TAP is written to the TAP of its
//! destination MAC address (learned from the frames each port sent;
//! broadcast, multicast and unknown destinations go to every other port),
//! after the delay its rule says, unless the rule drops it. A TAP device
//! opened without `IFF_VNET_HDR` gets fully segmented, checksummed frames,
//! so nothing here touches checksums or offloads.
//!
//! Rules are keyed by IPv4 address pair, in both directions; ARP and
//! other non-IPv4 frames always pass at once (a cut stops traffic, not
//! address resolution). Commands come one per line on standard input
//! (see [`Rules::apply`]); each is answered `ok` or `error: ...` on
//! standard output. The emulator exits when standard input closes, so it
//! dies with whoever started it.
//!
//! `unsafe` is limited to the two system calls that create a TAP device
//! (`open` is done by `std`; `ioctl(TUNSETIFF)` is not): see [`open_tap`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::net::Ipv4Addr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a link does to the frames between two addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Link {
    /// Mean one-way delay.
    pub delay_ms: u64,
    /// Each frame's delay is uniform in `delay ± jitter`.
    pub jitter_ms: u64,
    /// Probability that a frame is dropped (1.0: a cut).
    pub loss: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    a: Option<Ipv4Addr>,
    b: Option<Ipv4Addr>,
    link: Link,
}

impl Rule {
    fn matches(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let is = |want: Option<Ipv4Addr>, ip: Ipv4Addr| want.is_none_or(|w| w == ip);
        (is(self.a, src) && is(self.b, dst)) || (is(self.a, dst) && is(self.b, src))
    }
}

/// The rules in force: the last one that matches a pair decides; a pair
/// no rule matches passes untouched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(Vec<Rule>);

fn parse_ip(word: &str) -> Result<Option<Ipv4Addr>, String> {
    if word == "*" {
        return Ok(None);
    }
    word.parse()
        .map(Some)
        .map_err(|_| format!("not an IPv4 address or *: {word}"))
}

impl Rules {
    /// Applies one command:
    ///
    /// - `link A B [delay=MS] [jitter=MS] [loss=P]`: frames between `A`
    ///   and `B` (IPv4 addresses, `*` for any) get this link;
    /// - `cut A B`: every frame between them is dropped;
    /// - `heal A B`: removes the rules of exactly that pair;
    /// - `clear`: removes every rule.
    pub fn apply(&mut self, line: &str) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["clear"] => {
                self.0.clear();
                Ok(())
            }
            ["cut", a, b] => {
                let (a, b) = (parse_ip(a)?, parse_ip(b)?);
                let link = Link {
                    loss: 1.0,
                    ..Link::default()
                };
                self.0.push(Rule { a, b, link });
                Ok(())
            }
            ["heal", a, b] => {
                let (a, b) = (parse_ip(a)?, parse_ip(b)?);
                self.0
                    .retain(|r| !((r.a == a && r.b == b) || (r.a == b && r.b == a)));
                Ok(())
            }
            ["link", a, b, params @ ..] => {
                let (a, b) = (parse_ip(a)?, parse_ip(b)?);
                let mut link = Link::default();
                for p in params {
                    let (key, value) = p
                        .split_once('=')
                        .ok_or_else(|| format!("expected key=value: {p}"))?;
                    let bad = || format!("bad value: {p}");
                    match key {
                        "delay" => link.delay_ms = value.parse().map_err(|_| bad())?,
                        "jitter" => link.jitter_ms = value.parse().map_err(|_| bad())?,
                        "loss" => {
                            link.loss = value.parse().map_err(|_| bad())?;
                            if !(0.0..=1.0).contains(&link.loss) {
                                return Err(bad());
                            }
                        }
                        _ => return Err(format!("unknown parameter: {key}")),
                    }
                }
                self.0.push(Rule { a, b, link });
                Ok(())
            }
            _ => Err(format!("unknown command: {line}")),
        }
    }

    /// The link between `src` and `dst`.
    pub fn link(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Link {
        self.0
            .iter()
            .rev()
            .find(|r| r.matches(src, dst))
            .map(|r| r.link)
            .unwrap_or_default()
    }
}

/// The IPv4 source and destination of an Ethernet frame, if it carries
/// IPv4 (no VLAN tags here).
pub fn ipv4_pair(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let src: [u8; 4] = frame.get(26..30)?.try_into().ok()?;
    let dst: [u8; 4] = frame.get(30..34)?.try_into().ok()?;
    Some((Ipv4Addr::from(src), Ipv4Addr::from(dst)))
}

/// A small xorshift generator: loss and jitter need no cryptography, and
/// the emulator no dependency for them.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happens to one frame on a link: `None` dropped, else its delay.
pub fn fate(link: Link, rng: &mut XorShift) -> Option<Duration> {
    if link.loss > 0.0 && rng.unit() < link.loss {
        return None;
    }
    let jitter = if link.jitter_ms == 0 {
        0
    } else {
        rng.next_u64() % (2 * link.jitter_ms * 1_000 + 1)
    };
    let us = (link.delay_ms * 1_000 + jitter).saturating_sub(link.jitter_ms * 1_000);
    Some(Duration::from_micros(us))
}

/// `struct ifreq` as `TUNSETIFF` reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates the TAP device `name` (at most 15 bytes) and returns its file:
/// each `read` is one Ethernet frame, each `write` sends one. The device
/// lives as long as the file is open.
pub fn open_tap(name: &str) -> io::Result<File> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a TAP name has 1 to 15 bytes",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    use std::os::fd::AsRawFd;
    // SAFETY: TUNSETIFF reads a `struct ifreq` (name, flags), which
    // `IfReq` lays out in full (40 bytes), from a pointer valid for the
    // call; the descriptor is open for the call's duration.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

type Queue = (
    Mutex<BinaryHeap<Reverse<(Instant, u64, usize, Vec<u8>)>>>,
    Condvar,
);

struct Switch {
    ports: Vec<File>,
    rules: Mutex<Rules>,
    macs: Mutex<HashMap<[u8; 6], usize>>,
    queue: Queue,
}

impl Switch {
    fn send(&self, port: usize, frame: &[u8]) {
        if let Some(mut file) = self.ports.get(port) {
            // A port whose device is down refuses frames: they are lost,
            // as on a wire.
            let _ = file.write(frame);
        }
    }

    /// Where a frame from `ingress` goes.
    fn destinations(&self, ingress: usize, frame: &[u8]) -> Vec<usize> {
        let (Some(dst), Some(src)) = (frame.get(0..6), frame.get(6..12)) else {
            return Vec::new();
        };
        let mut macs = self.macs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Ok(src) = <[u8; 6]>::try_from(src) {
            if src[0] & 1 == 0 {
                macs.insert(src, ingress);
            }
        }
        let known = <[u8; 6]>::try_from(dst)
            .ok()
            .and_then(|d| macs.get(&d).copied());
        match known {
            Some(port) if port != ingress => vec![port],
            Some(_) => Vec::new(),
            None => (0..self.ports.len()).filter(|p| *p != ingress).collect(),
        }
    }

    fn read_port(&self, ingress: usize, seed: u64) {
        let mut rng = XorShift::new(seed);
        let mut buf = vec![0u8; 65_536];
        let Some(mut file) = self.ports.get(ingress) else {
            return;
        };
        let mut seq = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The device is down (not up yet in its namespace): wait.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let frame = &buf[..n];
            let link = match ipv4_pair(frame) {
                Some((src, dst)) => self
                    .rules
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .link(src, dst),
                None => Link::default(),
            };
            let Some(delay) = fate(link, &mut rng) else {
                continue;
            };
            for port in self.destinations(ingress, frame) {
                if delay.is_zero() {
                    self.send(port, frame);
                } else {
                    seq += 1;
                    let (heap, ready) = &self.queue;
                    let due = Instant::now() + delay;
                    heap.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Reverse((
                            due,
                            (seq << 8) | ingress as u64,
                            port,
                            frame.to_vec(),
                        )));
                    ready.notify_one();
                }
            }
        }
    }

    fn deliver_delayed(&self) {
        let (heap, ready) = &self.queue;
        let mut heap = heap.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            match heap.peek() {
                Some(Reverse((due, _, _, _))) if *due <= now => {
                    if let Some(Reverse((_, _, port, frame))) = heap.pop() {
                        self.send(port, &frame);
                    }
                }
                Some(Reverse((due, _, _, _))) => {
                    let wait = *due - now;
                    heap = ready
                        .wait_timeout(heap, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    heap = ready.wait(heap).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

/// Runs the switch between new TAP devices named `taps`: prints `ready`
/// once they exist, then applies the commands read from `commands` until
/// it closes.
pub fn run(
    taps: &[String],
    seed: u64,
    commands: impl BufRead,
    mut out: impl Write,
) -> io::Result<()> {
    let ports = taps
        .iter()
        .map(|t| open_tap(t).map_err(|e| io::Error::new(e.kind(), format!("TAP {t}: {e}"))))
        .collect::<io::Result<Vec<File>>>()?;
    let switch = Arc::new(Switch {
        ports,
        rules: Mutex::new(Rules::default()),
        macs: Mutex::new(HashMap::new()),
        queue: (Mutex::new(BinaryHeap::new()), Condvar::new()),
    });
    for port in 0..taps.len() {
        let s = switch.clone();
        let seed = seed ^ (port as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        std::thread::spawn(move || s.read_port(port, seed));
    }
    let s = switch.clone();
    std::thread::spawn(move || s.deliver_delayed());
    writeln!(out, "ready")?;
    out.flush()?;
    for line in commands.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let result = switch
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(&line);
        match result {
            Ok(()) => writeln!(out, "ok")?,
            Err(e) => writeln!(out, "error: {e}")?,
        }
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_last_matching_rule_decides_in_both_directions() {
        let mut r = Rules::default();
        r.apply("link * * delay=50 jitter=10 loss=0.05").unwrap();
        r.apply("cut 10.0.0.1 10.0.0.2").unwrap();
        let cut = r.link(ip("10.0.0.2"), ip("10.0.0.1"));
        assert_eq!(cut.loss, 1.0);
        let other = r.link(ip("10.0.0.1"), ip("10.0.0.3"));
        assert_eq!(
            (other.delay_ms, other.jitter_ms, other.loss),
            (50, 10, 0.05)
        );
        r.apply("heal 10.0.0.2 10.0.0.1").unwrap();
        assert_eq!(r.link(ip("10.0.0.1"), ip("10.0.0.2")).delay_ms, 50);
        r.apply("clear").unwrap();
        assert_eq!(r.link(ip("10.0.0.1"), ip("10.0.0.2")), Link::default());
        for bad in [
            "cut 10.0.0.1",
            "link a b",
            "link * * loss=2",
            "link * * x=1",
            "nope",
        ] {
            assert!(r.apply(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fate_drops_at_the_loss_rate_and_delays_within_the_jitter() {
        let mut rng = XorShift::new(7);
        let link = Link {
            delay_ms: 50,
            jitter_ms: 10,
            loss: 0.05,
        };
        let mut dropped = 0;
        for _ in 0..100_000 {
            match fate(link, &mut rng) {
                None => dropped += 1,
                Some(d) => assert!((40..=60).contains(&d.as_millis()), "{d:?}"),
            }
        }
        assert!((4_500..5_500).contains(&dropped), "{dropped}");
        let cut = Link {
            loss: 1.0,
            ..Link::default()
        };
        assert!((0..1000).all(|_| fate(cut, &mut rng).is_none()));
    }

    #[test]
    fn only_ipv4_frames_have_an_address_pair() {
        let mut frame = vec![0u8; 34];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[26..30].copy_from_slice(&[10, 0, 0, 1]);
        frame[30..34].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(ipv4_pair(&frame), Some((ip("10.0.0.1"), ip("10.0.0.2"))));
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(ipv4_pair(&frame), None);
        assert_eq!(ipv4_pair(&frame[..20]), None);
    }
}
