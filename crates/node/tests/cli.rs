//! The CLI end to end through the built binary: keygen, rendezvous,
//! quorum (a real DKG between three processes), discover --json.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rdht");

/// Child processes, killed when the test ends however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rdht(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run rdht")
}

fn spawn(args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn rdht")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(dir: &Path) -> String {
    let out = rdht(&["keygen", "--data-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn keygen_quorum_discover_json_through_the_binary() {
    let base: PathBuf = std::env::temp_dir().join(format!(
        "rdht-cli-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&base).unwrap();
    let dir = |name: &str| base.join(name);

    // keygen: prints a PeerId, keeps it (0600), and is stable.
    let rdv_id = keygen(&dir("rdv"));
    assert_eq!(keygen(&dir("rdv")), rdv_id);
    #[cfg(unix)]
    assert_eq!(mode(&dir("rdv").join("identity.key")), 0o600);
    let member_ids: Vec<String> = (1..=3).map(|i| keygen(&dir(&format!("m{i}")))).collect();

    let rdv_port = free_port();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut toml = String::from("threshold = 2\nkind = \"farmer\"\n");
    for (id, port) in member_ids.iter().zip(&ports) {
        toml.push_str(&format!(
            "\n[[member]]\npeer_id = \"{id}\"\naddr = \"/ip4/127.0.0.1/tcp/{port}\"\n"
        ));
    }
    let quorum_file = base.join("quorum.toml");
    std::fs::write(&quorum_file, toml).unwrap();
    let rdv_addr = format!("/ip4/127.0.0.1/tcp/{rdv_port}/p2p/{rdv_id}");

    let mut children = Children(Vec::new());
    children.0.push(spawn(
        &[
            "rendezvous",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{rdv_port}"),
            "--data-dir",
            dir("rdv").to_str().unwrap(),
            "--ping-interval",
            "300ms",
            "--ping-misses",
            "2",
        ],
        &base.join("rdv.log"),
    ));
    for (i, port) in ports.iter().enumerate() {
        let d = dir(&format!("m{}", i + 1));
        children.0.push(spawn(
            &[
                "quorum",
                "--data-dir",
                d.to_str().unwrap(),
                "--quorum",
                quorum_file.to_str().unwrap(),
                "--listen",
                &format!("/ip4/127.0.0.1/tcp/{port}"),
                "--rendezvous",
                &rdv_addr,
                "--ttl",
                "10s",
                "--dkg-timeout",
                "3s",
            ],
            &base.join(format!("m{}.log", i + 1)),
        ));
    }

    // The DKG writes every member's key share (0600, with the contract's fields).
    let mut quorum_key = String::new();
    for i in 1..=3 {
        let path = dir(&format!("m{i}")).join("key_share.json");
        let json: serde_json::Value = wait_for("key_share.json", Duration::from_secs(40), || {
            serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
        });
        assert_eq!(json["index"], i);
        assert_eq!(json["threshold"], 2);
        assert_eq!(json["epoch"], 0, "a DKG's key share is of epoch 0");
        assert!(json["secret_share"].as_str().is_some_and(|s| s.len() == 64));
        let qk = json["quorum_key"].as_str().unwrap().to_owned();
        if quorum_key.is_empty() {
            quorum_key = qk;
        } else {
            assert_eq!(qk, quorum_key, "members disagree on the quorum key");
        }
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }

    // discover --json lists the three members, verified.
    let json: serde_json::Value =
        wait_for("three peers in discover", Duration::from_secs(40), || {
            let out = rdht(&[
                "discover",
                "--rendezvous",
                &rdv_addr,
                "--quorum-key",
                &quorum_key,
                "--json",
            ]);
            if !out.status.success() {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["peers"].as_array()?.len() == 3).then_some(v)
        });
    assert_eq!(json["quorum_key"], quorum_key.as_str());
    assert_eq!(json["n"], 3);
    assert_eq!(json["threshold"], 2);
    assert_eq!(json["kind"], "farmer");
    for (i, peer) in json["peers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(peer["index"], i as u64 + 1);
        assert_eq!(peer["peer_id"], member_ids[i].as_str());
        assert!(peer["addrs"].as_array().is_some_and(|a| !a.is_empty()));
        assert!(peer.get("last_seen_ms").is_some());
    }
    assert!(json["rejected"].as_array().is_some_and(|r| r.is_empty()));

    // By kind, and as a table.
    let out = rdht(&[
        "discover",
        "--rendezvous",
        &rdv_addr,
        "--kind",
        "farmer",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let by_kind: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_kind.as_array().map(|a| a.len()), Some(1));
    let out = rdht(&[
        "discover",
        "--rendezvous",
        &rdv_addr,
        "--quorum-key",
        &quorum_key,
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("every record verified"), "{table}");

    // A key share whose secret was altered is refused, and the process
    // exits non-zero saying why.
    let bad = dir("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(dir("m3").join("identity.key"), bad.join("identity.key")).unwrap();
    let mut share: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("m3").join("key_share.json")).unwrap()).unwrap();
    let secret = share["secret_share"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        &secret[..63],
        if secret.ends_with('0') { '1' } else { '0' }
    );
    share["secret_share"] = serde_json::Value::String(flipped);
    let bad_share = bad.join("key_share.json");
    std::fs::write(&bad_share, serde_json::to_vec(&share).unwrap()).unwrap();
    let quorum_in = |data_dir: &Path| {
        rdht(&[
            "quorum",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--quorum",
            quorum_file.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--rendezvous",
            &rdv_addr,
        ])
    };
    // Written with the umask's mode (0644 here): group and others may
    // read it, so it is refused before it is even parsed, with the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bad_share, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = quorum_in(&bad);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("run `chmod 600 {}`", bad_share.display())),
            "{stderr}"
        );
        std::fs::set_permissions(&bad_share, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = quorum_in(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("key share refused"), "{stderr}");

    // SIGTERM (what a service manager sends) stops the rendezvous as
    // cleanly as Ctrl-C: database flushed, exit status 0. Without the
    // handler the process dies of the signal and has no exit code.
    #[cfg(unix)]
    {
        let rendezvous = &mut children.0[0];
        let pid = rendezvous.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let status = wait_for("the rendezvous to exit", Duration::from_secs(10), || {
            rendezvous.try_wait().ok().flatten()
        });
        assert_eq!(status.code(), Some(0), "{status:?}");
        let log = std::fs::read_to_string(base.join("rdv.log")).unwrap();
        assert!(log.contains("SIGTERM: stopping"), "{log}");
    }

    drop(children);
    std::fs::remove_dir_all(&base).ok();
}
