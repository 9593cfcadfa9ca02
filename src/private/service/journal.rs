//! Accounting that could not be written yet, on disk: one file per batch
//! in `private.journal_dir`, written whole (temp file, fsync, rename,
//! fsync of the directory) with a version and a checksum. Files are read
//! back at start and whenever the database is back, and removed only
//! after the rows they hold were committed.

use crate::private::batch::Batch;
use crate::private::catalog::Catalog;
use crate::private::ledger::KeptClient;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SHOALPJ1";
const SUFFIX: &str = ".batch";
/// The clients' last reports, kept over a restart.
const CLIENTS: &str = "clients.state";
/// The last catalog read, for a start while the database is down.
const CATALOG: &str = "catalog.state";

pub struct Journal {
    dir: PathBuf,
    sequence: u64,
}

/// What the journal holds.
pub struct Held {
    pub batch: Batch,
    pub files: Vec<PathBuf>,
}

impl Journal {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            sequence: 0,
        }
    }

    /// Writes `batch` as a new file.
    pub fn write(&mut self, batch: &Batch) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.sequence += 1;
        let path = self
            .dir
            .join(format!("{stamp:032}-{:08}{SUFFIX}", self.sequence));
        write_durably(&path, &batch.encode())?;
        Ok(path)
    }

    /// Keeps the clients' last reports for the next start.
    pub fn write_clients(&self, clients: &[KeptClient]) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let payload = bincode::serialize(clients).map_err(io::Error::other)?;
        write_durably(&self.dir.join(CLIENTS), &payload)
    }

    /// Keeps the last catalog read, for a start while the database is
    /// down.
    pub fn write_catalog(&self, catalog: &Catalog) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let payload = bincode::serialize(catalog).map_err(io::Error::other)?;
        write_durably(&self.dir.join(CATALOG), &payload)
    }

    /// The last catalog a run read, if any (a bad file is set aside).
    pub fn read_catalog(&self) -> Option<Catalog> {
        read_state(&self.dir.join(CATALOG))
    }

    /// The clients a previous run kept; the file is removed once read (a
    /// bad one is set aside).
    pub fn take_clients(&self) -> Vec<KeptClient> {
        let path = self.dir.join(CLIENTS);
        let clients = read_state(&path);
        if clients.is_some() {
            let _ = fs::remove_file(&path);
        }
        clients.unwrap_or_default()
    }

    /// Every batch on disk, merged oldest first. A file that cannot be
    /// read is moved aside (`.bad`) and logged, never deleted.
    pub fn read_all(&self) -> Held {
        let mut held = Held {
            batch: Batch::default(),
            files: Vec::new(),
        };
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return held;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(SUFFIX))
            .collect();
        paths.sort();
        for path in paths {
            match read(&path) {
                Ok(batch) => {
                    held.batch.merge(batch);
                    held.files.push(path);
                }
                // Left out of this read (and on disk, for the next start).
                Err(why) => unread(&path, why),
            }
        }
        held
    }

    /// The batches of `files`, merged in order (unreadable ones are set
    /// aside as in `read_all`).
    /// `Err` when one could not be read now (the caller keeps every
    /// file and tries again later).
    pub fn read_files(&self, files: &[PathBuf]) -> io::Result<Batch> {
        let mut all = Batch::default();
        for path in files {
            match read(path) {
                Ok(batch) => all.merge(batch),
                Err(Unread::Io(e)) => return Err(e),
                Err(bad) => unread(path, bad),
            }
        }
        Ok(all)
    }

    /// Removes files whose rows were committed.
    pub fn remove(&self, files: &[PathBuf]) {
        for f in files {
            if let Err(e) = fs::remove_file(f) {
                tracing::error!(path = %f.display(), "cannot remove a written journal file: {e}");
            }
        }
        if !files.is_empty() {
            if let Ok(dir) = fs::File::open(&self.dir) {
                let _ = dir.sync_all();
            }
        }
    }
}

/// Writes a file whole: a temp file, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, payload: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&temp)?;
    file.write_all(MAGIC)?;
    file.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    file.write_all(&(payload.len() as u64).to_le_bytes())?;
    file.write_all(payload)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Why a file could not be read.
enum Unread {
    /// The disk or the system refused (out of descriptors, say): the file
    /// may be whole; try again later.
    Io(io::Error),
    /// The file is not a whole journal file of this version.
    Bad(String),
}

/// A file's payload, its version, length and checksum checked.
fn read_payload(path: &Path) -> Result<Vec<u8>, Unread> {
    let bytes = fs::read(path).map_err(Unread::Io)?;
    check_payload(bytes).map_err(Unread::Bad)
}

fn check_payload(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let header = MAGIC.len() + 4 + 8;
    if bytes.len() < header || &bytes[..8] != MAGIC {
        return Err("not a Shoal journal file of this version".into());
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
    let payload = &bytes[header..];
    if payload.len() as u64 != len {
        return Err(format!("{} bytes where {len} were written", payload.len()));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload.to_vec())
}

fn read(path: &Path) -> Result<Batch, Unread> {
    Batch::decode(&read_payload(path)?).map_err(Unread::Bad)
}

/// A state file (`catalog.state`, `clients.state`), if there is one
/// that reads.
fn read_state<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    if !path.exists() {
        return None;
    }
    let state = read_payload(path)
        .and_then(|p| bincode::deserialize(&p).map_err(|e| Unread::Bad(e.to_string())));
    match state {
        Ok(state) => Some(state),
        Err(why) => {
            unread(path, why);
            None
        }
    }
}

/// Sets a bad file aside; an unreadable one stays for a later read.
fn unread(path: &Path, why: Unread) {
    match why {
        Unread::Bad(why) => set_aside(path, &why),
        Unread::Io(e) => tracing::error!(
            path = %path.display(),
            "private journal file cannot be read now ({e}); it stays for a later try"
        ),
    }
}

/// A file that cannot be read is moved aside and logged, never deleted.
fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension("bad");
    let _ = fs::rename(path, &aside);
    tracing::error!(
        path = %path.display(),
        "private journal file unreadable ({why}); moved to {}",
        aside.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::batch::Transfer;

    #[test]
    fn batches_round_trip_and_bad_files_are_set_aside() {
        let dir = std::env::temp_dir().join(format!("shoal-journal-{}", fastrand::u64(..)));
        let mut j = Journal::new(&dir);
        let mut b = Batch::default();
        b.users.insert(
            1,
            Transfer {
                uploaded: 5,
                downloaded: 0,
            },
        );
        j.write(&b).unwrap();
        j.write(&b).unwrap();
        let last = j.write(&b).unwrap();
        // A torn write: cut short.
        let bytes = fs::read(&last).unwrap();
        fs::write(&last, &bytes[..bytes.len() - 1]).unwrap();
        let held = j.read_all();
        assert_eq!(held.files.len(), 2);
        assert_eq!(held.batch.users[&1].uploaded, 10);
        assert!(last.with_extension("bad").exists());
        j.remove(&held.files);
        assert!(j.read_all().files.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
