//! Persistence of a rendezvous node's accepted records (`--data-dir`):
//! one redb table, quorum key -> encoded [`NamespaceValue`], and one of
//! handovers, retired quorum key -> encoded [`HandoverRecord`]. On start
//! the values are merged back through the store, so they are re-verified
//! like anything replicated (and what expired meanwhile is dropped).

use std::path::Path;

use dht::NamespaceValue;
use redb::{Database, ReadableTable, TableDefinition};
use rendezvous_proto::{HandoverRecord, QuorumKey};

const NAMESPACES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("namespaces");
const HANDOVERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("handovers");

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
        tx.commit().map_err(redb_error)?;
        Ok(Self { db })
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
