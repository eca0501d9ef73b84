//! Persistence of a rendezvous node's accepted records (`--data-dir`):
//! one redb table, quorum key -> encoded [`NamespaceValue`], and one of
//! handovers, retired quorum key -> encoded [`HandoverRecord`]. On start
//! the values are merged back through the store, so they are re-verified
//! like anything replicated (and what expired meanwhile is dropped).
//!
//! A third table keeps the other rendezvous nodes this one met (PeerId ->
//! listen addresses), so that a node restarted without `--bootstrap`
//! rejoins the DHT instead of serving alone (#16).

use std::path::Path;

use dht::NamespaceValue;
use libp2p::{Multiaddr, PeerId};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use rendezvous_proto::{HandoverRecord, QuorumKey};

const NAMESPACES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("namespaces");
const HANDOVERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("handovers");
const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rendezvous_peers");

/// Most rendezvous peers kept (a node needs a few to rejoin; Kademlia
/// finds the rest).
pub const MAX_KNOWN_PEERS: usize = 64;
/// Most addresses kept per rendezvous peer.
const MAX_PEER_ADDRS: usize = 8;

/// The database file's name inside a data directory.
pub const DB_FILE: &str = "records.redb";

/// An open record database.
pub struct RecordDb {
    db: Database,
}

impl std::fmt::Debug for RecordDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordDb")
    }
}

/// Why the record database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The data directory could not be created.
    #[error("creating the data directory: {0}")]
    Dir(#[from] std::io::Error),
    /// redb refused an operation (boxed: redb's error is large, and
    /// this one travels on every save's path).
    #[error("record database: {0}")]
    Redb(Box<redb::Error>),
}

/// Turns any of redb's specific errors into [`DbError`].
fn redb_error<E: Into<redb::Error>>(e: E) -> DbError {
    DbError::Redb(Box::new(e.into()))
}

impl RecordDb {
    /// Opens (or creates) `dir/records.redb`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join(DB_FILE)).map_err(redb_error)?;
        let tx = db.begin_write().map_err(redb_error)?;
        tx.open_table(NAMESPACES).map_err(redb_error)?;
        tx.open_table(HANDOVERS).map_err(redb_error)?;
        tx.open_table(PEERS).map_err(redb_error)?;
        tx.commit().map_err(redb_error)?;
        Ok(Self { db })
    }

    /// The rendezvous peers saved by [`RecordDb::save_peer`] (at most
    /// [`MAX_KNOWN_PEERS`]); entries that do not decode are skipped.
    pub fn load_peers(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, DbError> {
        let tx = self.db.begin_read().map_err(redb_error)?;
        let table = tx.open_table(PEERS).map_err(redb_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(redb_error)? {
            let (k, v) = entry.map_err(redb_error)?;
            let Ok(peer) = PeerId::from_bytes(k.value()) else {
                continue;
            };
            let addrs = decode_addrs(v.value());
            if !addrs.is_empty() && out.len() < MAX_KNOWN_PEERS {
                out.push((peer, addrs));
            }
        }
        Ok(out)
    }

    /// Remembers where rendezvous peer `peer` listens (replacing what was
    /// saved for it). Beyond [`MAX_KNOWN_PEERS`] peers, a new one is not
    /// saved.
    pub fn save_peer(&self, peer: &PeerId, addrs: &[Multiaddr]) -> Result<(), DbError> {
        let bytes = encode_addrs(addrs);
        let key = peer.to_bytes();
        let tx = self.db.begin_write().map_err(redb_error)?;
        {
            let mut table = tx.open_table(PEERS).map_err(redb_error)?;
            let known = table.get(key.as_slice()).map_err(redb_error)?.is_some();
            if !known && table.len().map_err(redb_error)? >= MAX_KNOWN_PEERS as u64 {
                return Ok(());
            }
            table
                .insert(key.as_slice(), bytes.as_slice())
                .map_err(redb_error)?;
        }
        tx.commit().map_err(redb_error)
    }

    /// Every stored value's bytes.
    pub fn load_all(&self) -> Result<Vec<Vec<u8>>, DbError> {
        let tx = self.db.begin_read().map_err(redb_error)?;
        let table = tx.open_table(NAMESPACES).map_err(redb_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(redb_error)? {
            let (_, v) = entry.map_err(redb_error)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    /// Every stored handover's bytes.
    pub fn load_handovers(&self) -> Result<Vec<Vec<u8>>, DbError> {
        let tx = self.db.begin_read().map_err(redb_error)?;
        let table = tx.open_table(HANDOVERS).map_err(redb_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(redb_error)? {
            let (_, v) = entry.map_err(redb_error)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    /// Writes handovers (each replaces the one stored for its retired
    /// key), in one transaction. An expired one stays until it is
    /// replaced; loading drops it.
    pub fn save_handovers(&self, handovers: &[(QuorumKey, HandoverRecord)]) -> Result<(), DbError> {
        if handovers.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(redb_error)?;
        {
            let mut table = tx.open_table(HANDOVERS).map_err(redb_error)?;
            for (qk, record) in handovers {
                let bytes = record.encode();
                table
                    .insert(&qk.0[..], bytes.as_slice())
                    .map_err(redb_error)?;
            }
        }
        tx.commit().map_err(redb_error)
    }

    /// Writes the current value of each namespace (or removes it), in one
    /// transaction.
    pub fn save(&self, updates: &[(QuorumKey, Option<NamespaceValue>)]) -> Result<(), DbError> {
        if updates.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(redb_error)?;
        {
            let mut table = tx.open_table(NAMESPACES).map_err(redb_error)?;
            for (qk, value) in updates {
                match value {
                    Some(v) => {
                        let bytes = v.encode();
                        table
                            .insert(&qk.0[..], bytes.as_slice())
                            .map_err(redb_error)?;
                    }
                    None => {
                        table.remove(&qk.0[..]).map_err(redb_error)?;
                    }
                }
            }
        }
        tx.commit().map_err(redb_error)
    }
}

/// Addresses as `u16` length-prefixed byte strings (at most
/// `MAX_PEER_ADDRS`).
fn encode_addrs(addrs: &[Multiaddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for addr in addrs.iter().take(MAX_PEER_ADDRS) {
        let bytes = addr.to_vec();
        let Ok(len) = u16::try_from(bytes.len()) else {
            continue;
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// The addresses of [`encode_addrs`]; whatever does not decode ends the
/// list (a damaged file yields fewer addresses, never a panic).
fn decode_addrs(mut bytes: &[u8]) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    while out.len() < MAX_PEER_ADDRS {
        let Some((len, rest)) = bytes.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len));
        let Some((addr, rest)) = rest.split_at_checked(len) else {
            break;
        };
        let Ok(addr) = Multiaddr::try_from(addr.to_vec()) else {
            break;
        };
        out.push(addr);
        bytes = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_survive_a_reopen_and_garbage_is_skipped() {
        let dir = std::env::temp_dir().join(format!(
            "rdht-persist-peers-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let peer = PeerId::random();
        let addrs: Vec<Multiaddr> = vec![
            "/ip4/10.0.0.1/tcp/4001".parse().expect("addr"),
            "/ip4/10.0.0.1/udp/4001/quic-v1".parse().expect("addr"),
        ];
        {
            let db = RecordDb::open(&dir).expect("open");
            db.save_peer(&peer, &addrs).expect("save");
        }
        let db = RecordDb::open(&dir).expect("reopen");
        assert_eq!(db.load_peers().expect("load"), vec![(peer, addrs.clone())]);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
        // Truncated and junk values decode to fewer addresses, never panic.
        let bytes = encode_addrs(&addrs);
        for cut in 0..bytes.len() {
            assert!(decode_addrs(&bytes[..cut]).len() <= 1);
        }
        assert!(decode_addrs(&[0xff, 0xff, 1, 2, 3]).is_empty());
    }
}
