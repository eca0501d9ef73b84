//! Persistence of a rendezvous node's accepted records (`--data-dir`):
//! one redb table, quorum key -> encoded [`NamespaceValue`]. On start the
//! values are merged back through the store, so they are re-verified like
//! anything replicated (and what expired meanwhile is dropped).

use std::path::Path;

use dht::NamespaceValue;
use redb::{Database, ReadableTable, TableDefinition};
use rendezvous_proto::QuorumKey;

const NAMESPACES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("namespaces");

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

/// Any database error, as text (they are only logged or reported).
pub type DbError = String;

impl RecordDb {
    /// Opens (or creates) `dir/records.redb`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let db = Database::create(dir.join(DB_FILE)).map_err(|e| e.to_string())?;
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        tx.open_table(NAMESPACES).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        Ok(Self { db })
    }

    /// Every stored value's bytes.
    pub fn load_all(&self) -> Result<Vec<Vec<u8>>, DbError> {
        let tx = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = tx.open_table(NAMESPACES).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| e.to_string())? {
            let (_, v) = entry.map_err(|e| e.to_string())?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    /// Writes the current value of each namespace (or removes it), in one
    /// transaction.
    pub fn save(&self, updates: &[(QuorumKey, Option<NamespaceValue>)]) -> Result<(), DbError> {
        if updates.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = tx.open_table(NAMESPACES).map_err(|e| e.to_string())?;
            for (qk, value) in updates {
                match value {
                    Some(v) => {
                        let bytes = v.encode();
                        table
                            .insert(&qk.0[..], bytes.as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                    None => {
                        table.remove(&qk.0[..]).map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }
}
