//! The node's libp2p identity, kept in `DIR/identity.key`, and how every
//! secret file (the identity, the key share) is written and read.
//!
//! The identity file holds the protobuf encoding of the keypair (libp2p's
//! own format). The secret is never logged: only the PeerId is.
//!
//! A secret file is written atomically with mode 0600: a temporary file
//! with a random name in the same directory, created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` (whatever was planted at that name is
//! neither followed nor reused), fsynced, then renamed over the target (a
//! symlink at the target is replaced, not followed); a crash never leaves
//! half a key behind. It is read only if neither group nor others can
//! access it, as ssh does with private keys, into a buffer wiped when
//! dropped.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use zeroize::Zeroizing;

/// The identity file's name inside a data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// The largest secret file read: far above any key share (a threshold of
/// [`dkg::MAX_MEMBERS`] takes some 6.5 MB of JSON).
pub const MAX_SECRET_FILE_BYTES: u64 = 16 << 20;

/// Why a secret file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// Opening or reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others have some access to the file (Unix only).
    #[error(
        "{path}: permissions {mode:04o} are too open: a secret file must not be accessible \
         to group or others; run `chmod 600 {}`",
        shell_quoted(.path)
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than [`MAX_SECRET_FILE_BYTES`], or grew while
    /// it was read.
    #[error("{path}: larger than expected of a key file ({MAX_SECRET_FILE_BYTES} bytes at most)")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// Why an identity could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Writing the file failed, or there is one already.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading the file failed, or its permissions are too open.
    #[error(transparent)]
    Read(#[from] SecretFileError),
    /// The file does not hold a keypair.
    #[error("{0}: not a libp2p keypair (protobuf encoding expected)")]
    Corrupt(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `path` as one shell word, for the `chmod` an error suggests.
fn shell_quoted(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file
/// with a random name in the same directory, created exclusively without
/// following symlinks, fsynced, then renamed over the target. The
/// temporary file is removed if anything fails.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(file_name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ));
    };
    fs::create_dir_all(dir)?;
    let (tmp, file) = create_temp(dir, &file_name.to_string_lossy())?;
    let written = fill_and_rename(file, bytes, &tmp, path);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Creates `DIR/.NAME.tmp-RANDOM`, a name nobody can guess ahead; on the
/// (unlikely) clash with an existing name, another one.
fn create_temp(dir: &Path, file_name: &str) -> std::io::Result<(PathBuf, fs::File)> {
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(".{file_name}.tmp-{:016x}", rand::random::<u64>()));
        match create_exclusive(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AlreadyExists.into()))
}

/// Opens a new file at `path` for writing, mode 0600: fails if anything
/// (a file, a symlink, even a dangling one) is already there (`O_EXCL`),
/// and never follows a symlink (`O_NOFOLLOW`).
fn create_exclusive(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

fn fill_and_rename(
    mut file: fs::File,
    bytes: &[u8],
    tmp: &Path,
    path: &Path,
) -> std::io::Result<()> {
    // The umask may only have removed bits; set exactly 0600 on the open
    // file itself, not through its name.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
}

/// Reads the secret file at `path`, if there is one, into a buffer wiped
/// when dropped. On Unix, refuses a file that group or others can access
/// at all (`mode & 0o077`), as ssh refuses such a private key; the error
/// names the file and the `chmod` that fixes it.
pub fn read_secret_file(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, SecretFileError> {
    let io = |source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    // The checks are on the open file, not on the name, so the file read
    // is the file checked.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretFileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(SecretFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    // One allocation of the final size (plus one byte to see the end):
    // a growing Vec would leave unwiped copies of the secret behind.
    let mut buf = Zeroizing::new(vec![0u8; meta.len() as usize + 1]);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(SecretFileError::TooLarge {
                path: path.to_owned(),
            });
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    buf.truncate(filled);
    Ok(Some(buf))
}

/// Loads the keypair kept in `dir`, if there is one. Refuses an identity
/// file that group or others can access (see [`read_secret_file`]).
pub fn load(dir: &Path) -> Result<Option<Keypair>, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    match read_secret_file(&path)? {
        Some(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map(Some)
            .map_err(|_| IdentityError::Corrupt(path)),
        None => Ok(None),
    }
}

/// Makes a fresh Ed25519 keypair and keeps it in `dir` (mode 0600).
/// Refuses to overwrite an existing identity.
pub fn create(dir: &Path) -> Result<Keypair, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    if path.exists() {
        return Err(io_err(&path)(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "an identity already exists here",
        )));
    }
    let keypair = Keypair::generate_ed25519();
    let bytes = zeroize::Zeroizing::new(
        keypair
            .to_protobuf_encoding()
            .map_err(|_| IdentityError::Corrupt(path.clone()))?,
    );
    write_secret_file(&path, &bytes).map_err(io_err(&path))?;
    Ok(keypair)
}

/// The identity kept in `dir`, made (and kept) if there is none.
pub fn load_or_create(dir: &Path) -> Result<Keypair, IdentityError> {
    match load(dir)? {
        Some(k) => Ok(k),
        None => create(dir),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rdht-test-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn create_then_load_gives_the_same_peer_id_with_mode_0600() {
        let dir = temp_dir("identity");
        let a = load_or_create(&dir).unwrap();
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(create(&dir).is_err());
        fs::write(dir.join(IDENTITY_FILE), b"garbage").unwrap();
        set_mode(&dir.join(IDENTITY_FILE), 0o600);
        assert!(matches!(load(&dir), Err(IdentityError::Corrupt(_))));
        fs::remove_dir_all(&dir).ok();
    }

    #[cfg(unix)]
    pub(crate) fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(not(unix))]
    pub(crate) fn set_mode(_: &Path, _: u32) {}

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The temporary name used to be `.NAME.tmp-PID`, opened without
    /// `O_EXCL` or `O_NOFOLLOW`: whoever could write to the directory
    /// planted a symlink there and had the secret written (and chmodded)
    /// through it.
    #[cfg(unix)]
    #[test]
    fn secrets_on_disk_a_symlink_at_the_old_predictable_temp_name_is_not_followed() {
        let dir = temp_dir("secret-tmp-symlink");
        let victim = dir.join("victim");
        fs::write(&victim, b"not a secret").unwrap();
        set_mode(&victim, 0o644);
        let target = dir.join("secret.key");
        let planted = dir.join(format!(".secret.key.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_secret_file(&target, b"the secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"not a secret");
        assert_eq!(mode(&victim), 0o644);
        assert!(fs::symlink_metadata(&target).unwrap().is_file());
        assert_eq!(fs::read(&target).unwrap(), b"the secret");
        assert_eq!(mode(&target), 0o600);
        fs::remove_dir_all(&dir).ok();
    }

    /// The temporary file is opened with `O_EXCL | O_NOFOLLOW`: a symlink
    /// (even a dangling one) or a file already at its name is refused,
    /// never written through.
    #[cfg(unix)]
    #[test]
    fn secrets_on_disk_the_temp_file_refuses_a_symlink_or_file_already_there() {
        let dir = temp_dir("secret-exclusive");
        let victim = dir.join("victim");
        fs::write(&victim, b"not a secret").unwrap();
        let planted = dir.join(".secret.key.tmp-planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let err = create_exclusive(&planted).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        let dangling = dir.join(".secret.key.tmp-dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        assert!(create_exclusive(&dangling).is_err());
        assert!(!dir.join("nowhere").exists());
        assert!(create_exclusive(&victim).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"not a secret");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn secrets_on_disk_the_suggested_chmod_quotes_odd_paths() {
        assert_eq!(
            shell_quoted(Path::new("/var/lib/rdht/key_share.json")),
            "/var/lib/rdht/key_share.json"
        );
        assert_eq!(
            shell_quoted(Path::new("my keys/it's")),
            r"'my keys/it'\''s'"
        );
    }

    /// A symlink at the target itself is replaced (rename), not written
    /// through.
    #[cfg(unix)]
    #[test]
    fn secrets_on_disk_a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = temp_dir("secret-target-symlink");
        let victim = dir.join("victim");
        fs::write(&victim, b"not a secret").unwrap();
        let target = dir.join("secret.key");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_secret_file(&target, b"the secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"not a secret");
        assert!(fs::symlink_metadata(&target).unwrap().is_file());
        assert_eq!(fs::read(&target).unwrap(), b"the secret");
        fs::remove_dir_all(&dir).ok();
    }

    /// Files written are 0600 whatever the umask lets through, and no
    /// temporary file is left behind.
    #[cfg(unix)]
    #[test]
    fn secrets_on_disk_written_files_have_mode_0600() {
        let dir = temp_dir("secret-mode");
        let target = dir.join("secret.key");
        write_secret_file(&target, b"one").unwrap();
        assert_eq!(mode(&target), 0o600);
        // Overwriting an existing, looser file leaves 0600 too.
        set_mode(&target, 0o644);
        write_secret_file(&target, b"two").unwrap();
        assert_eq!(mode(&target), 0o600);
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret.key")]);
        fs::remove_dir_all(&dir).ok();
    }

    /// An identity file readable by group or others is refused, as ssh
    /// refuses such a private key: the error names the file and the fix.
    #[cfg(unix)]
    #[test]
    fn secrets_on_disk_an_identity_readable_by_group_or_others_is_refused() {
        let dir = temp_dir("identity-open");
        let peer_id = create(&dir).unwrap().public().to_peer_id();
        let path = dir.join(IDENTITY_FILE);
        for loose in [0o644, 0o640, 0o604, 0o660] {
            set_mode(&path, loose);
            let err = load(&dir).expect_err("a loose identity file must be refused");
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            // load_or_create must not make a new identity over it either.
            assert!(load_or_create(&dir).is_err());
        }
        for tight in [0o600, 0o400] {
            set_mode(&path, tight);
            let loaded = load(&dir).unwrap().unwrap();
            assert_eq!(loaded.public().to_peer_id(), peer_id);
        }
        fs::remove_dir_all(&dir).ok();
    }
}
