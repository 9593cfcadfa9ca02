//! Full scrape for indexers: `/scrape` without `info_hash` answers every
//! torrent of every shard, when `http.full_scrape` allows the client. The
//! answer is streamed in HTTP chunks, one per slice of a shard's torrents:
//! the connection's shard asks each owner for a slice at a time over the
//! mesh (its own slices it takes directly), so no shard walks more than
//! `SLICE` torrents at once and no answer is ever whole in memory.
//!
//! Each chunk's keys are sorted; across chunks they are not (each shard's
//! torrents come in store order), which bencode readers of full scrapes
//! accept, as they do opentracker's.

use super::mesh::{Forward, HttpReply, ScrapeSlice};
use super::Shard;
use crate::bittorrent::{Counts, InfoHash};
use crate::config::FullScrapeConfig;
use crate::net::stream::Transport;
use crate::protocol::http::bencode::{self, ScrapeFile};
use crate::protocol::http::client_ip::Cidr;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

/// Torrents per slice: a chunk of about 90 KiB of bencode, and about as
/// much work for the owner as one expiry slice.
const SLICE: usize = 1024;

/// Who may ask for a full scrape (`http.full_scrape`, when enabled).
pub(super) struct Gate {
    token: Vec<u8>,
    trusted: Vec<Cidr>,
}

impl Gate {
    /// `None` when full scrapes are off.
    pub fn new(config: &FullScrapeConfig, trusted: &[Cidr]) -> Option<Gate> {
        config.enabled.then(|| Gate {
            token: config.token.as_bytes().to_vec(),
            trusted: trusted.to_vec(),
        })
    }

    /// The right token, or a trusted address.
    pub fn allows(&self, client: IpAddr, token: Option<&[u8]>) -> bool {
        let by_token = !self.token.is_empty() && token.is_some_and(|t| same_secret(t, &self.token));
        by_token || self.trusted.iter().any(|c| c.contains(client))
    }
}

/// Compares without stopping at the first difference, so the time taken
/// tells nothing about how much of a guessed token was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Shard {
    /// This shard's slice of torrents from `cursor` (for a full scrape
    /// here or on another shard).
    pub(super) fn scrape_slice(&self, cursor: usize) -> ScrapeSlice {
        let mut files = Vec::new();
        let next = self
            .tracker
            .borrow()
            .scrape_slice(cursor, SLICE, &mut |hash, counts| {
                files.push((*hash, counts))
            });
        ScrapeSlice { files, next }
    }

    /// Shard `owner`'s slice from `cursor`, asked over the mesh when it
    /// is another shard.
    async fn fetch_slice(&self, owner: usize, cursor: usize) -> Option<ScrapeSlice> {
        if owner == self.id {
            return Some(self.scrape_slice(cursor));
        }
        let id = self.mesh.http_waiters.register();
        self.forward(
            owner,
            Forward::FullScrapeSlice {
                origin: self.id as u16,
                id,
                cursor,
            },
        );
        self.mesh.flush_notify.notify();
        match self.mesh.http_waiters.wait(id).await {
            HttpReply::Slice(slice) => Some(slice),
            _ => None,
        }
    }
}

/// Writes a full scrape as one chunked answer: the head, one chunk per
/// slice, the end. `out` and `body` are the connection's buffers. An error
/// means the connection is to be closed.
pub(super) async fn stream<T: Transport>(
    shard: &Shard,
    stream: &T,
    json: bool,
    keep_alive: bool,
    timeout: Duration,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    body.clear();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: ");
    out.extend_from_slice(if json {
        b"application/json".as_slice()
    } else {
        b"text/plain".as_slice()
    });
    out.extend_from_slice(b"\r\nTransfer-Encoding: chunked\r\nConnection: ");
    out.extend_from_slice(if keep_alive {
        b"keep-alive\r\n\r\n".as_slice()
    } else {
        b"close\r\n\r\n".as_slice()
    });
    body.extend_from_slice(if json {
        b"{\"files\":{".as_slice()
    } else {
        b"d5:filesd".as_slice()
    });
    let mut first = true;
    for owner in 0..shard.common.owner.shards() {
        let mut cursor = Some(0);
        while let Some(at) = cursor {
            let slice = shard
                .fetch_slice(owner, at)
                .await
                .ok_or_else(|| io::Error::other("a shard did not answer"))?;
            let mut files = slice.files;
            files.sort_unstable_by_key(|f| f.0);
            for (hash, counts) in &files {
                if json {
                    json_file(body, hash, counts, first);
                } else {
                    bencode::scrape_file(body, hash, &scrape_file(counts));
                }
                first = false;
            }
            chunk(out, body);
            if !out.is_empty() {
                stream.write_all(out, timeout).await?;
            }
            out.clear();
            body.clear();
            cursor = slice.next;
            glommio::yield_if_needed().await;
        }
    }
    body.extend_from_slice(if json { b"}}" } else { b"ee" });
    chunk(out, body);
    out.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(out, timeout).await
}

fn scrape_file(c: &Counts) -> ScrapeFile {
    ScrapeFile {
        complete: c.seeders,
        downloaded: c.downloaded,
        downloaders: c.downloaders,
        incomplete: c.leechers,
    }
}

/// `"<hex infohash>":{"complete":..,...}`, after a comma unless first.
fn json_file(out: &mut Vec<u8>, hash: &InfoHash, c: &Counts, first: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    for b in hash {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out.extend_from_slice(b"\":{");
    let mut itoa = itoa::Buffer::new();
    for (i, (key, value)) in [
        ("complete", c.seeders),
        ("downloaded", c.downloaded),
        ("downloaders", c.downloaders),
        ("incomplete", c.leechers),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(itoa.format(value).as_bytes());
    }
    out.push(b'}');
}

/// Appends `data` as one HTTP chunk (nothing when empty: an empty chunk
/// would end the answer).
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_takes_the_token_or_a_trusted_address() {
        let config = FullScrapeConfig {
            enabled: true,
            token: "0123456789abcdef".into(),
            trusted: vec![],
        };
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let gate = Gate::new(&config, &trusted).unwrap();
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(gate.allows(outside, Some(b"0123456789abcdef")));
        assert!(!gate.allows(outside, Some(b"0123456789abcdeF")));
        assert!(!gate.allows(outside, Some(b"0123456789abcde")));
        assert!(!gate.allows(outside, None));
        assert!(gate.allows("10.1.2.3".parse().unwrap(), None));
        let off = FullScrapeConfig::default();
        assert!(Gate::new(&off, &trusted).is_none());
        // Without a token, no token opens it.
        let no_token = FullScrapeConfig {
            token: String::new(),
            ..config
        };
        let gate = Gate::new(&no_token, &trusted).unwrap();
        assert!(!gate.allows(outside, Some(b"")));
    }

    #[test]
    fn json_entries_are_valid_json() {
        let mut out = b"{\"files\":{".to_vec();
        let c = Counts {
            seeders: 1,
            leechers: 2,
            downloaded: 3,
            downloaders: 2,
        };
        json_file(&mut out, &[0xab; 20], &c, true);
        json_file(&mut out, &[1; 20], &c, false);
        out.extend_from_slice(b"}}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["files"]["ab".repeat(20)]["incomplete"], 2);
        assert_eq!(v["files"]["01".repeat(20)]["downloaded"], 3);
    }
}
