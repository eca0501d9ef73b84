//! Network namespaces, their links and the processes in them, made and
//! removed by one value: [`Testbed`].
//!
//! A testbed is one private subnet (10.99.0.0/24) of hosts, each a
//! network namespace with one interface (`eth0`, a TAP device of the
//! testbed's own `rdht-netem`), switched by the emulator. Names carry a
//! unique prefix (`rdhtf-<pid>-<tag>-`), so testbeds of parallel tests
//! never meet, and traffic stays between the namespaces a testbed made.
//! Dropping a testbed kills its processes, stops the emulator (its TAP
//! devices go with it) and deletes its namespaces, also when a test
//! fails; namespaces left by a run that was killed outright are swept by
//! the next one ([`sweep_stale`]).

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every testbed namespace's name starts so.
pub const PREFIX: &str = "rdhtf-";

/// Set, the testbed keeps its directory (logs, data directories) also
/// when its test passes: the figures of a passing run can be explained
/// from its logs.
pub const KEEP_LOGS: &str = "RDHT_FAULTS_KEEP";

/// Set, the processes' `RUST_LOG` (default `info`): e.g.
/// `info,node=debug,libp2p_swarm=debug` to see every dial.
pub const LOG_FILTER: &str = "RDHT_FAULTS_LOG";

fn log_filter() -> String {
    std::env::var(LOG_FILTER).unwrap_or_else(|_| "info".to_owned())
}

/// Why this machine cannot run a testbed (the tests then say so and pass).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (network namespaces need it)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("no `ip` command (iproute2): {e}")),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the testbed namespaces whose process is gone (a run killed
/// before its testbeds could clean up).
pub fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// One host of a testbed.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its name in the test (`r1`, `m2`, `client`...).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the testbed's subnet.
    pub ip: Ipv4Addr,
}

/// A process started in a host's namespace.
#[derive(Debug)]
pub struct Proc {
    /// The child (`ip netns exec` execs the program: same pid).
    pub child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

/// Namespaces, the emulator between them, and the processes in them.
#[derive(Debug)]
pub struct Testbed {
    /// The hosts, in the order given.
    pub hosts: Vec<Host>,
    /// A directory of this testbed's own (logs, data directories).
    pub dir: PathBuf,
    netem: Option<Child>,
    netem_in: Option<ChildStdin>,
    netem_out: Option<BufReader<ChildStdout>>,
    /// Processes started, by handle ([`Testbed::spawn`]).
    procs: Vec<Option<Proc>>,
}

impl Testbed {
    /// Makes one namespace per name, addressed 10.99.0.1, .2, ... in
    /// order, linked by `netem` (the path of `rdht-netem`).
    pub fn new(tag: &str, names: &[&str], netem: &Path) -> Result<Self, String> {
        sweep_stale();
        let pid = std::process::id();
        let base = format!("{PREFIX}{pid}-{tag}-");
        let dir = std::env::temp_dir().join(format!("rdht-faults-{pid}-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // TAP names live in the root namespace until moved: unique there.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let taps: Vec<String> = (0..names.len())
            .map(|i| format!("rf{:x}{:02x}{:02x}", pid & 0xff_ffff, id & 0xff, i & 0xff))
            .collect();
        let mut tb = Testbed {
            hosts: Vec::new(),
            dir,
            netem: None,
            netem_in: None,
            netem_out: None,
            procs: Vec::new(),
        };
        let mut child = Command::new(netem)
            .args(&taps)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", netem.display()))?;
        tb.netem_in = child.stdin.take();
        tb.netem_out = child.stdout.take().map(BufReader::new);
        tb.netem = Some(child);
        let ready = tb.read_reply()?;
        if ready != "ready" {
            return Err(format!("rdht-netem said {ready:?}"));
        }
        for (i, (name, tap)) in names.iter().zip(&taps).enumerate() {
            let netns = format!("{base}{name}");
            let addr = Ipv4Addr::new(10, 99, 0, i as u8 + 1);
            ip(&["netns", "add", &netns])?;
            tb.hosts.push(Host {
                name: name.to_string(),
                netns: netns.clone(),
                ip: addr,
            });
            ip(&["link", "set", tap, "netns", &netns])?;
            let cidr = format!("{addr}/24");
            for args in [
                vec!["link", "set", "lo", "up"],
                vec!["link", "set", tap.as_str(), "name", "eth0"],
                vec!["addr", "add", cidr.as_str(), "dev", "eth0"],
                vec!["link", "set", "eth0", "up"],
            ] {
                let mut full = vec!["-n", netns.as_str()];
                full.extend(args);
                ip(&full)?;
            }
        }
        Ok(tb)
    }

    fn read_reply(&mut self) -> Result<String, String> {
        let out = self.netem_out.as_mut().ok_or("rdht-netem is gone")?;
        let mut line = String::new();
        out.read_line(&mut line)
            .map_err(|e| format!("reading rdht-netem: {e}"))?;
        if line.is_empty() {
            return Err("rdht-netem exited".into());
        }
        Ok(line.trim().to_owned())
    }

    /// Sends one rule command to the emulator (`faults::netem::Rules::apply`)
    /// and waits until it is in force.
    pub fn netem(&mut self, command: &str) -> Result<(), String> {
        let input = self.netem_in.as_mut().ok_or("rdht-netem is gone")?;
        writeln!(input, "{command}").map_err(|e| format!("writing rdht-netem: {e}"))?;
        input
            .flush()
            .map_err(|e| format!("writing rdht-netem: {e}"))?;
        match self.read_reply()?.as_str() {
            "ok" => Ok(()),
            other => Err(format!("rdht-netem: {command}: {other}")),
        }
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Result<&Host, String> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| format!("no host {name}"))
    }

    fn command(&self, host: &str, program: &Path, args: &[String]) -> Result<Command, String> {
        let netns = self.host(host)?.netns.clone();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &netns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Starts `program args` in `host`'s namespace, its output to
    /// `<dir>/<log>.log` (appended: a restart keeps the earlier lines).
    /// Returns its handle.
    pub fn spawn(
        &mut self,
        host: &str,
        program: &Path,
        args: &[String],
        log: &str,
    ) -> Result<usize, String> {
        let path = self.dir.join(format!("{log}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = self
            .command(host, program, args)?
            .env("RUST_LOG", log_filter())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {} in {host}: {e}", program.display()))?;
        self.procs.push(Some(Proc { child, log: path }));
        Ok(self.procs.len() - 1)
    }

    /// Runs `program args` in `host`'s namespace to completion.
    pub fn run(&self, host: &str, program: &Path, args: &[String]) -> Result<Output, String> {
        self.command(host, program, args)?
            .output()
            .map_err(|e| format!("running {} in {host}: {e}", program.display()))
    }

    /// Runs `f` on a thread of its own that entered `host`'s network
    /// namespace, so the sockets it opens are that namespace's (its
    /// loopback, e.g. a node's metrics endpoint on 127.0.0.1): no
    /// process started, no packet through the emulator.
    pub fn in_netns<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        // Where `ip netns add` keeps its namespaces.
        let path = Path::new("/run/netns").join(&self.host(host)?.netns);
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is a namespace file held open for the
            // call; setns changes this thread's network namespace only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| format!("the thread in {host}'s namespace panicked"))?
    }

    /// Sends `signal` to a process started by [`Testbed::spawn`].
    pub fn signal(&mut self, handle: usize, signal: libc::c_int) -> Result<(), String> {
        let proc = self
            .procs
            .get(handle)
            .and_then(|p| p.as_ref())
            .ok_or("no such process")?;
        let pid = libc::pid_t::try_from(proc.child.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill has no memory preconditions; the pid is our own
        // child's, not yet reaped (we hold its `Child`).
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(())
    }

    /// Waits (polling, up to `timeout`) until a process exits; reaps it.
    pub fn wait_exit(&mut self, handle: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let proc = self
            .procs
            .get_mut(handle)
            .and_then(|p| p.as_mut())
            .ok_or("no such process")?;
        loop {
            if proc.child.try_wait().map_err(|e| e.to_string())?.is_some() {
                self.procs[handle] = None;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("process did not exit in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether a process is still running.
    pub fn running(&mut self, handle: usize) -> bool {
        self.procs
            .get_mut(handle)
            .and_then(|p| p.as_mut())
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// A process's log so far.
    pub fn log(&self, handle: usize) -> String {
        self.procs
            .get(handle)
            .and_then(|p| p.as_ref())
            .and_then(|p| std::fs::read_to_string(&p.log).ok())
            .unwrap_or_default()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for proc in self.procs.iter_mut().flatten() {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
        self.netem_in = None;
        if let Some(mut netem) = self.netem.take() {
            let _ = netem.kill();
            let _ = netem.wait();
        }
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.netns]);
        }
        if std::thread::panicking() || std::env::var_os(KEEP_LOGS).is_some() {
            eprintln!("testbed logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
