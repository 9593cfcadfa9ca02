//! `torrent approval` (Chihaya's `torrentapproval`): announces for the
//! infohashes on a whitelist only, or for any but a blacklist. A list is
//! inline (40-digit hex infohashes) or a file (`{path: ...}`: one hash a
//! line, `#` comments and blank lines allowed), read when the hook is built:
//! at start and on each reload (SIGHUP), off the shards. Scrapes are not
//! checked (a scrape of an unknown torrent reveals nothing).

use super::hook::{AnnounceContext, Hook, Refusal};
use super::options::{parse_options, read_list_file, Approval, Maker};
use crate::bittorrent::InfoHash;
use ahash::HashSet;
use serde::Deserialize;
use std::sync::Arc;

pub const NAME: &str = "torrent approval";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub whitelist: Option<List>,
    pub blacklist: Option<List>,
}

/// Infohashes given inline, or a file of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum List {
    Inline(Vec<String>),
    File { path: String },
}

pub struct TorrentApproval {
    rule: Arc<Approval<InfoHash>>,
}

/// Checks the options and reads any file (errors name the option, the
/// entry or the file's line) and returns the maker of each shard's
/// instance.
pub fn build(options: &serde_yaml::Value) -> Result<Maker, String> {
    let rule = Arc::new(rule(parse_options(options)?)?);
    Ok(Arc::new(move |_| {
        Box::new(TorrentApproval { rule: rule.clone() }) as Box<dyn Hook>
    }))
}

fn rule(options: Options) -> Result<Approval<InfoHash>, String> {
    Approval::from_lists(options.whitelist, options.blacklist, |key, list| {
        hashes(key, &list)
    })
}

fn hashes(key: &str, list: &List) -> Result<HashSet<InfoHash>, String> {
    match list {
        List::Inline(entries) => entries
            .iter()
            .enumerate()
            .map(|(i, entry)| parse_hash(entry).map_err(|e| format!("{key}[{i}]: {e}")))
            .collect(),
        List::File { path } => {
            read_list_file(&format!("{key}.path"), path, parse_hash).map(HashSet::from_iter)
        }
    }
}

fn parse_hash(entry: &str) -> Result<InfoHash, String> {
    let bad = || format!("{entry:?} is not an infohash (40 hex digits)");
    let digits = entry.as_bytes();
    if digits.len() != 40 {
        return Err(bad());
    }
    let mut hash = [0u8; 20];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(hash)
}

impl TorrentApproval {
    pub fn approves(&self, info_hash: &InfoHash) -> bool {
        self.rule.approves(info_hash)
    }
}

impl Hook for TorrentApproval {
    fn name(&self) -> &'static str {
        NAME
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if self.approves(&ctx.announce.info_hash) {
            Ok(())
        } else {
            Err(Refusal::new("unapproved torrent"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF";

    fn hook(yaml: &str) -> Result<TorrentApproval, String> {
        let options = parse_options(&serde_yaml::from_str(yaml).unwrap())?;
        Ok(TorrentApproval {
            rule: Arc::new(rule(options)?),
        })
    }

    #[test]
    fn inline_lists() {
        let white = hook(&format!("{{whitelist: [{A}]}}")).unwrap();
        assert!(white.approves(&parse_hash(A).unwrap()));
        assert!(!white.approves(&[0xff; 20]));
        let black = hook(&format!("{{blacklist: [{A}, {B}]}}")).unwrap();
        assert!(!black.approves(&[0xff; 20]), "hex of either case");
        assert!(black.approves(&[0; 20]));
    }

    #[test]
    fn files_with_comments() {
        let dir = std::env::temp_dir().join(format!("shoal-ta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("allowed.txt");
        std::fs::write(&path, format!("# allowed\n\n{A}  # a comment\n  {B}\n")).unwrap();
        let white = hook(&format!("{{whitelist: {{path: {}}}}}", path.display())).unwrap();
        assert!(white.approves(&parse_hash(A).unwrap()));
        assert!(white.approves(&[0xff; 20]));
        assert!(!white.approves(&[0; 20]));
        std::fs::write(&path, format!("{A}\nnot-a-hash\n")).unwrap();
        let e = hook(&format!("{{blacklist: {{path: {}}}}}", path.display()))
            .err()
            .unwrap();
        assert!(
            e.starts_with("blacklist.path: ") && e.contains("line 2: \"not-a-hash\""),
            "{e}"
        );
        let e = hook("{whitelist: {path: /nonexistent/shoal}}")
            .err()
            .unwrap();
        assert!(e.contains("cannot read /nonexistent/shoal"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_options_are_named() {
        let e = hook(&format!("{{whitelist: [{A}, abc]}}")).err().unwrap();
        assert!(
            e.starts_with("whitelist[1]: \"abc\" is not an infohash"),
            "{e}"
        );
        let e = hook(&format!("{{whitelist: [{A}], blacklist: [{B}]}}"))
            .err()
            .unwrap();
        assert!(e.contains("using both is invalid"), "{e}");
        assert!(hook("{}").err().unwrap().contains("give one"));
        // 40 bytes, but not hex (a multi-byte character must not panic).
        let e = hook("{whitelist: [\"é123456789abcdef0123456789abcdef0123456\"]}")
            .err()
            .unwrap();
        assert!(e.contains("is not an infohash"), "{e}");
    }
}
