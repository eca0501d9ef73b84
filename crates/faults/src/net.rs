//! An rdht network on a [`Testbed`]: three rendezvous nodes (`r1` started
//! without `--bootstrap`, `r2` and `r3` joining it), one quorum of four
//! members (`m1`..`m4`, threshold 3, registered at all three) and a
//! client, each in its own namespace, all real `rdht` processes. Each
//! rendezvous node serves its metrics on 127.0.0.1:9100 of its own
//! namespace ([`Net::gauges`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::testbed::Testbed;

/// Rendezvous hosts.
pub const RDV: [&str; 3] = ["r1", "r2", "r3"];
/// Member hosts.
pub const MEMBERS: [&str; 4] = ["m1", "m2", "m3", "m4"];
/// Every host, in address order (10.99.0.1 ...).
pub const HOSTS: [&str; 8] = ["r1", "r2", "r3", "m1", "m2", "m3", "m4", "client"];
/// Where each rendezvous node serves its metrics, in its own namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:9100";

/// How the network is run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The rendezvous nodes' `--ping-interval`.
    pub ping_interval: Duration,
    /// Their `--ping-misses`.
    pub ping_misses: u32,
    /// The members' `--dkg-timeout`.
    pub dkg_timeout: Duration,
}

impl Default for Settings {
    /// The node's defaults (5 s, 3 misses), DKG phases of 5 s.
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(5),
            ping_misses: 3,
            dkg_timeout: Duration::from_secs(5),
        }
    }
}

/// One node's process and identity.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its host.
    pub host: String,
    /// Its PeerId.
    pub peer_id: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its process ([`Testbed::spawn`] handle), while running.
    pub proc: Option<usize>,
    /// Its arguments (for restarts).
    pub args: Vec<String>,
}

/// What a discover at one node said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The members listed (indices).
    Listed(Vec<u64>),
    /// A refusal or an error, as the client printed it.
    Failed(String),
}

impl Answer {
    /// How many members are listed (0 for a failure).
    pub fn count(&self) -> usize {
        match self {
            Answer::Listed(v) => v.len(),
            Answer::Failed(_) => 0,
        }
    }
}

/// One member as a discover answer listed it (the client's verified
/// `--json`: `index`, `peer_id`, `seq`, `addrs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Its index in the quorum.
    pub index: u64,
    /// Its PeerId.
    pub peer_id: String,
    /// Its record's sequence number.
    pub seq: u64,
    /// Its record's addresses.
    pub addrs: Vec<String>,
}

/// A rendezvous node's gauges of peer records (its metrics endpoint);
/// the testbed holds one quorum, so they count that quorum's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    /// `rdht_peers`: peer records stored.
    pub peers: u64,
    /// `rdht_reachable_peers`: peer records served (not unreachable).
    pub reachable_peers: u64,
}

/// A discover at one node between two reads of its gauges.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The gauges just before the discover.
    pub before: Result<Gauges, String>,
    /// The answer.
    pub answer: Answer,
    /// The gauges just after it.
    pub after: Result<Gauges, String>,
}

impl Sample {
    /// Whether the metrics agree with the answer: the gauges did not
    /// change around it, the served ones equal the members listed, and
    /// no more are served than stored.
    pub fn agrees(&self) -> bool {
        match (&self.before, &self.answer, &self.after) {
            (Ok(before), Answer::Listed(listed), Ok(after)) => {
                before == after
                    && after.reachable_peers == listed.len() as u64
                    && after.peers >= after.reachable_peers
            }
            _ => false,
        }
    }
}

/// One HTTP GET of the metrics at `addr` (from the caller's namespace).
fn metrics_text(addr: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    Ok(text)
}

/// A metric's value in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Result<u64, String> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no {name} in the metrics"))
}

/// The network.
#[derive(Debug)]
pub struct Net {
    /// Its testbed.
    pub tb: Testbed,
    /// The `rdht` binary.
    pub rdht: PathBuf,
    /// The settings.
    pub settings: Settings,
    /// Rendezvous nodes (r1, r2, r3).
    pub rdv: Vec<Node>,
    /// Members (m1..m4).
    pub members: Vec<Node>,
    /// The quorum key (hex), once the DKG finished.
    pub quorum_key: String,
}

/// Where the `rdht` binary is: beside `rdht-netem` in cargo's target
/// directory (`cargo test --workspace` builds it for `node`'s tests; alone,
/// `cargo build --release -p node --bin rdht`).
pub fn rdht_beside(netem: &Path) -> Result<PathBuf, String> {
    let path = netem.with_file_name("rdht");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not built (cargo build --release -p node --bin rdht)",
            path.display()
        ))
    }
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Net {
    /// Makes the testbed and the identities; starts nothing yet.
    pub fn new(tag: &str, netem: &Path, settings: Settings) -> Result<Self, String> {
        let rdht = rdht_beside(netem)?;
        let tb = Testbed::new(tag, &HOSTS, netem)?;
        let mut net = Net {
            tb,
            rdht,
            settings,
            rdv: Vec::new(),
            members: Vec::new(),
            quorum_key: String::new(),
        };
        for host in RDV {
            let node = net.keygen(host)?;
            net.rdv.push(node);
        }
        for host in MEMBERS {
            let node = net.keygen(host)?;
            net.members.push(node);
        }
        let mut toml = String::from("threshold = 3\n");
        for m in &net.members {
            let ip = net.tb.host(&m.host)?.ip;
            toml.push_str(&format!(
                "\n[[member]]\npeer_id = \"{}\"\naddr = \"/ip4/{ip}/tcp/4002\"\n",
                m.peer_id
            ));
        }
        let quorum_file = net.tb.dir.join("quorum.toml");
        std::fs::write(&quorum_file, toml).map_err(|e| e.to_string())?;
        let rdv_addrs: Vec<String> = (0..RDV.len()).map(|i| net.rdv_addr(i)).collect();
        let st = net.settings.clone();
        for (i, host) in RDV.iter().enumerate() {
            let ip = net.tb.host(host)?.ip;
            let mut args = vec![
                s("rendezvous"),
                s("--listen"),
                format!("/ip4/{ip}/tcp/4001"),
                s("--data-dir"),
                net.tb.dir.join(host).display().to_string(),
                s("--ping-interval"),
                ms(st.ping_interval),
                s("--ping-misses"),
                s(st.ping_misses),
                s("--metrics"),
                s(METRICS_ADDR),
            ];
            if i > 0 {
                args.extend([s("--bootstrap"), rdv_addrs[0].clone()]);
            }
            if let Some(node) = net.rdv.get_mut(i) {
                node.args = args;
            }
        }
        for m in net.members.iter_mut() {
            let ip = net.tb.host(&m.host)?.ip;
            let mut args = vec![
                s("quorum"),
                s("--data-dir"),
                m.data_dir.display().to_string(),
                s("--quorum"),
                quorum_file.display().to_string(),
                s("--listen"),
                format!("/ip4/{ip}/tcp/4002"),
                s("--dkg-timeout"),
                ms(st.dkg_timeout),
            ];
            for a in &rdv_addrs {
                args.extend([s("--rendezvous"), a.clone()]);
            }
            m.args = args;
        }
        Ok(net)
    }

    fn keygen(&self, host: &str) -> Result<Node, String> {
        let data_dir = self.tb.dir.join(host);
        let out = std::process::Command::new(&self.rdht)
            .args(["keygen", "--data-dir"])
            .arg(&data_dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("keygen: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(Node {
            host: host.to_owned(),
            peer_id: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            data_dir,
            proc: None,
            args: Vec::new(),
        })
    }

    /// Rendezvous node `i`'s address with `/p2p/`.
    pub fn rdv_addr(&self, i: usize) -> String {
        let ip = self.tb.host(RDV[i]).map(|h| h.ip).ok();
        let peer = self.rdv.get(i).map(|n| n.peer_id.as_str()).unwrap_or("");
        match ip {
            Some(ip) => format!("/ip4/{ip}/tcp/4001/p2p/{peer}"),
            None => String::new(),
        }
    }

    /// The address of a host.
    pub fn ip(&self, host: &str) -> String {
        self.tb
            .host(host)
            .map(|h| h.ip.to_string())
            .unwrap_or_default()
    }

    /// Starts rendezvous node `i`.
    pub fn start_rdv(&mut self, i: usize) -> Result<(), String> {
        let node = self.rdv.get(i).ok_or("no such node")?.clone();
        let proc = self
            .tb
            .spawn(&node.host, &self.rdht, &node.args, &node.host)?;
        self.rdv[i].proc = Some(proc);
        Ok(())
    }

    /// Starts member `i` (0-based).
    pub fn start_member(&mut self, i: usize) -> Result<(), String> {
        let node = self.members.get(i).ok_or("no such member")?.clone();
        let proc = self
            .tb
            .spawn(&node.host, &self.rdht, &node.args, &node.host)?;
        self.members[i].proc = Some(proc);
        Ok(())
    }

    /// Gives member `i` (0-based) only the rendezvous nodes `nodes` as its
    /// `--rendezvous`, from its next start on.
    pub fn member_rendezvous(&mut self, i: usize, nodes: &[usize]) -> Result<(), String> {
        let addrs: Vec<String> = nodes.iter().map(|&n| self.rdv_addr(n)).collect();
        let member = self.members.get_mut(i).ok_or("no such member")?;
        let mut args = Vec::new();
        let mut old = std::mem::take(&mut member.args).into_iter();
        while let Some(arg) = old.next() {
            if arg == "--rendezvous" {
                old.next();
            } else {
                args.push(arg);
            }
        }
        for a in addrs {
            args.extend([s("--rendezvous"), a]);
        }
        member.args = args;
        Ok(())
    }

    /// Sends `signal` to a node's process and waits for it to exit.
    pub fn stop(&mut self, node: &mut Option<usize>, signal: libc::c_int) -> Result<(), String> {
        if let Some(proc) = node.take() {
            self.tb.signal(proc, signal)?;
            self.tb.wait_exit(proc, Duration::from_secs(20))?;
        }
        Ok(())
    }

    /// Stops rendezvous node `i` with `signal`.
    pub fn stop_rdv(&mut self, i: usize, signal: libc::c_int) -> Result<(), String> {
        let mut proc = self.rdv.get_mut(i).ok_or("no such node")?.proc.take();
        self.stop(&mut proc, signal)
    }

    /// Stops member `i` with `signal`.
    pub fn stop_member(&mut self, i: usize, signal: libc::c_int) -> Result<(), String> {
        let mut proc = self.members.get_mut(i).ok_or("no such member")?.proc.take();
        self.stop(&mut proc, signal)
    }

    /// Starts everything and waits for the DKG: returns its time (from
    /// the members' start until every member wrote its key share).
    pub fn start(&mut self, timeout: Duration) -> Result<Duration, String> {
        for i in 0..self.rdv.len() {
            self.start_rdv(i)?;
        }
        // The rendezvous nodes listen before the members dial them.
        self.wait_listening(timeout)?;
        let started = Instant::now();
        for i in 0..self.members.len() {
            self.start_member(i)?;
        }
        let deadline = started + timeout;
        loop {
            let mut keys = Vec::new();
            for m in &self.members {
                let path = m.data_dir.join("key_share.json");
                let json: Option<serde_json::Value> = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if let Some(k) = json.as_ref().and_then(|j| j["quorum_key"].as_str()) {
                    keys.push(k.to_owned());
                }
            }
            if keys.len() == self.members.len() {
                if keys.iter().any(|k| *k != keys[0]) {
                    return Err("members disagree on the quorum key".into());
                }
                self.quorum_key = keys[0].clone();
                return Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(format!("DKG not finished within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_listening(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for node in self.rdv.clone() {
            let Some(proc) = node.proc else { continue };
            while !self.tb.log(proc).contains("rendezvous listening on") {
                if Instant::now() >= deadline || !self.tb.running(proc) {
                    return Err(format!(
                        "{} did not start: {}",
                        node.host,
                        self.tb.log(proc)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// A discover of the quorum at rendezvous node `i`, from the client:
    /// the members listed, or the refusal or error as the client printed it.
    pub fn discover_listings(&self, i: usize, timeout: Duration) -> Result<Vec<Listing>, String> {
        let args = vec![
            s("discover"),
            s("--rendezvous"),
            self.rdv_addr(i),
            s("--quorum-key"),
            self.quorum_key.clone(),
            s("--json"),
            s("--timeout"),
            ms(timeout),
        ];
        let out = self.tb.run("client", &self.rdht, &args)?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        let json: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
        let peers = json
            .as_ref()
            .and_then(|j| j["peers"].as_array())
            .ok_or("unreadable answer")?;
        Ok(peers
            .iter()
            .filter_map(|p| {
                Some(Listing {
                    index: p["index"].as_u64()?,
                    peer_id: p["peer_id"].as_str()?.to_owned(),
                    seq: p["seq"].as_u64()?,
                    addrs: p["addrs"]
                        .as_array()?
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect(),
                })
            })
            .collect())
    }

    /// [`Net::discover_listings`], as the indices listed.
    pub fn discover(&self, i: usize, timeout: Duration) -> Answer {
        match self.discover_listings(i, timeout) {
            Ok(listed) => Answer::Listed(listed.iter().map(|l| l.index).collect()),
            Err(e) => Answer::Failed(e),
        }
    }

    /// Rendezvous node `i`'s gauges of peer records, read from its
    /// metrics endpoint inside its namespace.
    pub fn gauges(&self, i: usize) -> Result<Gauges, String> {
        let text = self.tb.in_netns(RDV[i], || metrics_text(METRICS_ADDR))??;
        Ok(Gauges {
            peers: metric(&text, "rdht_peers")?,
            reachable_peers: metric(&text, "rdht_reachable_peers")?,
        })
    }

    /// A discover at node `i` between two reads of its gauges.
    pub fn sample(&self, i: usize, timeout: Duration) -> Sample {
        let before = self.gauges(i);
        let answer = self.discover(i, timeout);
        let after = self.gauges(i);
        Sample {
            before,
            answer,
            after,
        }
    }

    /// Polls every rendezvous node in `nodes` until its metrics agree
    /// with its discover answer ([`Sample::agrees`]); returns each node's
    /// time (in `nodes`' order), or at the deadline the last sample of
    /// each node that never agreed.
    pub fn wait_gauges_agree(
        &self,
        nodes: &[usize],
        timeout: Duration,
    ) -> Result<Vec<Duration>, Vec<(usize, Sample)>> {
        let mut last = std::collections::BTreeMap::new();
        poll_each(nodes, timeout, |i| {
            let sample = self.sample(i, Duration::from_secs(10));
            let agrees = sample.agrees();
            last.insert(i, sample);
            agrees
        })
        .map_err(|missing| {
            missing
                .into_iter()
                .filter_map(|i| last.remove(&i).map(|s| (i, s)))
                .collect()
        })
    }

    /// Polls every rendezvous node in `nodes` until each lists `want`
    /// members; returns the time until the last one did, or `None` at
    /// the deadline.
    pub fn wait_listed(&self, nodes: &[usize], want: usize, timeout: Duration) -> Option<Duration> {
        self.wait_listed_each(nodes, want, timeout)
            .map(|each| each.into_iter().max().unwrap_or_default())
    }

    /// [`Net::wait_listed`], with each node's time (in `nodes`' order).
    pub fn wait_listed_each(
        &self,
        nodes: &[usize],
        want: usize,
        timeout: Duration,
    ) -> Option<Vec<Duration>> {
        poll_each(nodes, timeout, |i| {
            self.discover(i, Duration::from_secs(10)).count() == want
        })
        .ok()
    }

    /// The log of host `host` (every run of it) since the last line
    /// containing `marker` (the whole log without one).
    pub fn log_since(&self, host: &str, marker: &str) -> String {
        let path = self.tb.dir.join(format!("{host}.log"));
        let log = std::fs::read_to_string(path).unwrap_or_default();
        match log.rfind(marker) {
            Some(at) => log[at..].to_owned(),
            None => log,
        }
    }

    /// How many times each rendezvous node logged that a peer is no
    /// longer listed (its whole log, restarts included).
    pub fn unlisted_logged(&self, i: usize) -> usize {
        let path = self.tb.dir.join(format!("{}.log", RDV[i]));
        std::fs::read_to_string(path)
            .map(|l| l.matches("no longer listed here").count())
            .unwrap_or(0)
    }
}

/// Polls `done(i)` for every node `i` in `nodes` until it held once
/// for each: each node's time (in `nodes`' order), or at the deadline
/// the nodes for which it never held.
pub fn poll_each(
    nodes: &[usize],
    timeout: Duration,
    mut done: impl FnMut(usize) -> bool,
) -> Result<Vec<Duration>, Vec<usize>> {
    let started = Instant::now();
    let mut at: Vec<Option<Duration>> = vec![None; nodes.len()];
    loop {
        for (k, &i) in nodes.iter().enumerate() {
            if at[k].is_none() && done(i) {
                at[k] = Some(started.elapsed());
            }
        }
        if at.iter().all(|d| d.is_some()) {
            return Ok(at.into_iter().flatten().collect());
        }
        if started.elapsed() >= timeout {
            return Err(nodes
                .iter()
                .zip(&at)
                .filter(|(_, d)| d.is_none())
                .map(|(&i, _)| i)
                .collect());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
