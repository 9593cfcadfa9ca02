//! Swarms that survive a restart: the shards export their stores a slice
//! at a time to a writer thread, which streams them into one file written
//! crash-safely (temporary file, fsync, rename, fsync of the directory);
//! at start the file is read back and each torrent handed to the shard
//! that owns it now, whatever the old core count.
//!
//! - `format.rs`: the versioned, checksummed file format;
//! - `writer.rs`: the writer thread and what shards send it;
//! - here: reading a file back and rebasing its peers' lifetimes.

pub mod format;
pub mod writer;

pub use format::{Header, PeerRecord, TorrentRecord};
pub use writer::{Message, Snapshots};

use crate::bittorrent::Client;
use crate::storage::StoredPeer;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What a start found at `storage.snapshot.path`.
#[derive(Debug)]
pub enum Found {
    /// No file: a first start.
    Nothing,
    Snapshot(Header, Vec<TorrentRecord>),
    /// A file that is not a readable snapshot, and why.
    Bad(String),
}

/// Reads the snapshot at `path`.
pub fn read(path: &Path) -> Found {
    match std::fs::read(path) {
        Ok(bytes) => match format::decode(&bytes) {
            Ok((header, torrents)) => Found::Snapshot(header, torrents),
            Err(e) => Found::Bad(format!("{}: {e}", path.display())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Found::Nothing,
        Err(e) => Found::Bad(format!("cannot read {}: {e}", path.display())),
    }
}

/// Moves a bad file aside (`<path>.bad`), so the next snapshot does not
/// overwrite what an operator may want to look at.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".bad");
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

/// A peer of the file as the store takes it: its lifetime rebased to the
/// store's clock (`now`), less the `elapsed` seconds since the snapshot.
/// `None` when it ran out meanwhile.
pub fn rebase(peer: &PeerRecord, elapsed: u64, now: u32) -> Option<StoredPeer> {
    let remaining = u64::from(peer.remaining).checked_sub(elapsed)?;
    if remaining == 0 {
        return None;
    }
    Some(StoredPeer {
        peer: Client {
            ip: peer.ip,
            port: peer.port,
        },
        peer_id: peer.peer_id,
        seeder: peer.seeder,
        paused: peer.paused,
        expires: now.saturating_add(remaining.min(u64::from(u32::MAX)) as u32),
    })
}

/// A stored peer as the file keeps it, `now` being the store's clock.
pub fn record(peer: &StoredPeer, now: u32) -> PeerRecord {
    PeerRecord {
        ip: peer.peer.ip,
        port: peer.peer.port,
        peer_id: peer.peer_id,
        seeder: peer.seeder,
        paused: peer.paused,
        remaining: peer.expires.saturating_sub(now),
    }
}

/// Writes a file so that `path` holds either the old or the whole new
/// content, whatever happens: a temporary file beside it, fsync, rename,
/// fsync of the directory.
pub struct AtomicFile {
    path: PathBuf,
    temporary: PathBuf,
    file: io::BufWriter<std::fs::File>,
    crc: crc32fast::Hasher,
}

impl AtomicFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        remove_stale_temporaries(path);
        let temporary = temporary_of(path, std::process::id());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_private()
            .open(&temporary)?;
        Ok(Self {
            path: path.to_owned(),
            temporary,
            file: io::BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Appends bytes that the checksum covers.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.file.write_all(bytes)
    }

    /// Ends the blocks, writes the checksum, and puts the file in place.
    pub fn finish(mut self) -> io::Result<()> {
        let end = format::encode_end(self.crc.clone());
        self.file.write_all(&end)?;
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path)?;
        // The rename itself must reach the disk too.
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }

    /// Gives up: the temporary file goes, the old snapshot stays.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.temporary);
    }
}

/// The temporary file process `pid` writes `path` through.
fn temporary_of(path: &Path, pid: u32) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp.{pid}"));
    PathBuf::from(temporary)
}

/// Removes the temporary files that killed processes left beside `path`
/// (a SIGKILL or power loss mid-write): without this each crash would
/// leave one more, each as large as a snapshot. A file whose process is
/// still alive (another instance sharing the path, wrongly) is left.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.to_owned();
    prefix.push(".tmp.");
    let prefix = prefix.as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .as_encoded_bytes()
            .strip_prefix(prefix)
            .and_then(|pid| std::str::from_utf8(pid).ok())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        if !alive || pid == std::process::id() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Owner-only permissions: the file may hold the connection-id key.
trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_of(remaining: u32) -> PeerRecord {
        PeerRecord {
            ip: "10.0.0.1".parse().unwrap(),
            port: 1,
            peer_id: [1; 20],
            seeder: false,
            paused: false,
            remaining,
        }
    }

    #[test]
    fn lifetimes_are_rebased_and_spent_time_counts() {
        let p = rebase(&record_of(600), 100, 7).unwrap();
        assert_eq!(p.expires, 507);
        assert!(rebase(&record_of(600), 600, 7).is_none());
        assert!(rebase(&record_of(600), 9000, 7).is_none());
        assert_eq!(record(&p, 7).remaining, 500);
    }

    #[test]
    fn atomic_files_replace_or_leave_the_old_one() {
        let dir = std::env::temp_dir().join(format!("shoal-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("swarms.snapshot");
        let header = Header {
            created_unix: 5,
            connection_id_key: None,
        };
        let mut f = AtomicFile::create(&path).unwrap();
        f.write(&format::encode_start(&header)).unwrap();
        f.write(&format::encode_block(&[])).unwrap();
        f.finish().unwrap();
        assert!(matches!(read(&path), Found::Snapshot(h, t) if h == header && t.is_empty()));
        // An abandoned write leaves the old file as it was.
        let mut f = AtomicFile::create(&path).unwrap();
        f.write(b"half a snapshot").unwrap();
        f.abandon();
        assert!(matches!(read(&path), Found::Snapshot(..)));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::write(&path, b"junk").unwrap();
        assert!(matches!(read(&path), Found::Bad(why) if why.contains("not a Shoal snapshot")));
        let aside = set_aside(&path).unwrap();
        assert!(matches!(read(&path), Found::Nothing));
        assert!(aside.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed() {
        let dir = std::env::temp_dir().join(format!("shoal-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("swarms.snapshot");
        // A pid above the kernel's pid_max (4194304) is never alive.
        let dead = temporary_of(&path, 4_194_305);
        let alive = temporary_of(&path, 1);
        let other = dir.join("other.snapshot.tmp.4194305");
        for p in [&dead, &alive, &other] {
            std::fs::write(p, b"half a snapshot").unwrap();
        }
        let f = AtomicFile::create(&path).unwrap();
        assert!(!dead.exists(), "a killed writer's temporary is gone");
        assert!(alive.exists(), "a live process's temporary stays");
        assert!(other.exists(), "another file's temporary stays");
        f.finish().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
