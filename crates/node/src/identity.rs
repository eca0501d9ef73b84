//! The node's libp2p identity, kept in `DIR/identity.key`.
//!
//! The file holds the protobuf encoding of the keypair (libp2p's own
//! format), is created with mode 0600 and written atomically (temporary
//! file, then rename), so a crash never leaves half a key behind. The
//! secret is never logged: only the PeerId is.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// The identity file's name inside a data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Why an identity could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
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

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file in
/// the same directory, fsynced, then renamed over the target.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secret".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    }
    fs::rename(&tmp, path)
}

/// Loads the keypair kept in `dir`, if there is one.
pub fn load(dir: &Path) -> Result<Option<Keypair>, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map(Some)
            .map_err(|_| IdentityError::Corrupt(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
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
mod tests {
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
        assert!(matches!(load(&dir), Err(IdentityError::Corrupt(_))));
        fs::remove_dir_all(&dir).ok();
    }
}
