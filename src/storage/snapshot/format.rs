//! The snapshot file: versioned, checksummed, written in blocks so each
//! shard's part can be streamed in as it is exported.
//!
//! ```text
//! "SHOALSNP"  u32 version        magic and format version (little endian)
//! u32 len, bincode Header        when, and the connection-id key
//! { u32 len, bincode Vec<TorrentRecord> }*    blocks, any order
//! u32 0                          end of blocks
//! u32 crc32                      of every byte before it
//! ```
//!
//! A torn or truncated file fails the checksum or misses its end; a
//! foreign one its magic. Reading never panics, whatever the bytes.

use crate::bittorrent::{InfoHash, PeerId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub const MAGIC: &[u8; 8] = b"SHOALSNP";
pub const VERSION: u32 = 1;
/// No block is larger (a shard splits its part); guards the reader's
/// allocation against a corrupt length.
pub const MAX_BLOCK: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Unix seconds when the peers' `remaining` were taken.
    pub created_unix: u64,
    /// The UDP connection-id key in use, when it was random (not
    /// configured), so ids handed out survive the restart.
    pub connection_id_key: Option<(u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorrentRecord {
    pub info_hash: InfoHash,
    pub downloaded: u32,
    pub peers: Vec<PeerRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub ip: IpAddr,
    pub port: u16,
    pub peer_id: PeerId,
    pub seeder: bool,
    pub paused: bool,
    /// Seconds of lifetime left at `Header::created_unix`.
    pub remaining: u32,
}

/// Why a snapshot cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    NotASnapshot,
    Version(u32),
    Truncated,
    Checksum,
    Corrupt(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::NotASnapshot => f.write_str("not a Shoal snapshot (wrong magic bytes)"),
            Invalid::Version(v) => write!(
                f,
                "snapshot format version {v} is not supported (this build reads {VERSION})"
            ),
            Invalid::Truncated => f.write_str("the file is truncated (an interrupted write?)"),
            Invalid::Checksum => f.write_str("checksum mismatch: the file is torn or corrupt"),
            Invalid::Corrupt(what) => write!(f, "corrupt snapshot: {what}"),
        }
    }
}

/// The bytes before the first block.
pub fn encode_start(header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let header = bincode::serialize(header).expect("a header always serialises");
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out
}

/// One block of torrents.
pub fn encode_block(torrents: &[TorrentRecord]) -> Vec<u8> {
    let body = bincode::serialize(torrents).expect("records always serialise");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The end marker and the checksum of everything before it, given the
/// checksum state over what was written so far.
pub fn encode_end(mut crc: crc32fast::Hasher) -> [u8; 8] {
    let end = 0u32.to_le_bytes();
    crc.update(&end);
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&end);
    out[4..].copy_from_slice(&crc.finalize().to_le_bytes());
    out
}

/// A whole snapshot in memory (tests, small tools).
pub fn encode(header: &Header, blocks: &[Vec<TorrentRecord>]) -> Vec<u8> {
    let mut out = encode_start(header);
    for b in blocks {
        out.extend_from_slice(&encode_block(b));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    out.extend_from_slice(&encode_end(crc));
    out
}

/// Reads a snapshot's header and every torrent in it.
pub fn decode(bytes: &[u8]) -> Result<(Header, Vec<TorrentRecord>), Invalid> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Invalid::NotASnapshot);
    }
    let mut r = Reader {
        bytes,
        at: MAGIC.len(),
    };
    let version = r.u32()?;
    if version != VERSION {
        return Err(Invalid::Version(version));
    }
    if bytes.len() < 4 {
        return Err(Invalid::Truncated);
    }
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
    let header_len = r.u32()? as usize;
    let header: Header = bincode::deserialize(r.take(header_len)?)
        .map_err(|e| Invalid::Corrupt(format!("header: {e}")))?;
    let mut torrents = Vec::new();
    loop {
        let len = r.u32()? as usize;
        if len == 0 {
            break;
        }
        if len > MAX_BLOCK {
            return Err(check(body, stored)
                .err()
                .unwrap_or(Invalid::Corrupt(format!("a block of {len} bytes"))));
        }
        let block = r.take(len)?;
        // The checksum first: a corrupt block is "corrupt", not whatever
        // its garbage happens to decode to.
        let records: Vec<TorrentRecord> = match bincode::deserialize(block) {
            Ok(records) => records,
            Err(e) => {
                check(body, stored)?;
                return Err(Invalid::Corrupt(format!("block: {e}")));
            }
        };
        torrents.extend(records);
    }
    if r.at + 4 != bytes.len() {
        check(body, stored)?;
        return Err(Invalid::Corrupt("bytes after the end of the blocks".into()));
    }
    check(body, stored)?;
    Ok((header, torrents))
}

fn check(body: &[u8], stored: u32) -> Result<(), Invalid> {
    if crc32fast::hash(body) == stored {
        Ok(())
    } else {
        Err(Invalid::Checksum)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        let end = self.at.checked_add(n).ok_or(Invalid::Truncated)?;
        // The last 4 bytes are the checksum, never content.
        if end + 4 > self.bytes.len() {
            return Err(Invalid::Truncated);
        }
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Invalid> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Header, Vec<Vec<TorrentRecord>>) {
        let peer = |n: u8, ip: &str| PeerRecord {
            ip: ip.parse().unwrap(),
            port: 6881 + n as u16,
            peer_id: [n; 20],
            seeder: n.is_multiple_of(2),
            paused: n == 3,
            remaining: 100 * n as u32,
        };
        let torrent = |n: u8| TorrentRecord {
            info_hash: [n; 20],
            downloaded: n as u32,
            peers: vec![peer(n, "10.0.0.1"), peer(n + 1, "2001:db8::1")],
        };
        (
            Header {
                created_unix: 1_700_000_000,
                connection_id_key: Some((1, 2)),
            },
            vec![vec![torrent(1), torrent(2)], vec![], vec![torrent(3)]],
        )
    }

    #[test]
    fn round_trips() {
        let (header, blocks) = sample();
        let bytes = encode(&header, &blocks);
        let (h, torrents) = decode(&bytes).unwrap();
        assert_eq!(h, header);
        assert_eq!(torrents, blocks.concat());
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused_without_panic() {
        let (header, blocks) = sample();
        let bytes = encode(&header, &blocks);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn says_what_is_wrong() {
        let (header, blocks) = sample();
        let bytes = encode(&header, &blocks);
        assert_eq!(decode(b"GIF89a...."), Err(Invalid::NotASnapshot));
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(decode(&other), Err(Invalid::Version(7)));
        let mut flipped = bytes.clone();
        let last_block_byte = bytes.len() - 12;
        flipped[last_block_byte] ^= 1;
        assert!(matches!(
            decode(&flipped),
            Err(Invalid::Checksum | Invalid::Corrupt(_))
        ));
        assert_eq!(decode(&bytes[..bytes.len() - 9]), Err(Invalid::Truncated));
    }
}
