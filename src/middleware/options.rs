//! What every configured hook's builder needs: its options read with the
//! failing field named, and the maker of each shard's instance.

use super::hook::Hook;
use ahash::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// Makes one shard's instance of a configured hook.
pub type Maker = Arc<dyn Fn(usize) -> Box<dyn Hook> + Send + Sync>;

/// Reads a hook's options into `T`; a missing or wrong field is named.
pub fn parse_options<T: serde::de::DeserializeOwned>(
    options: &serde_yaml::Value,
) -> Result<T, String> {
    let options = if options.is_null() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        options.clone()
    };
    serde_path_to_error::deserialize(options).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            message
        } else {
            format!("{path}: {message}")
        }
    })
}

/// A whitelist or a blacklist, never both: Chihaya's approval hooks.
#[derive(Debug, PartialEq, Eq)]
pub enum Approval<T: Eq + Hash> {
    Only(HashSet<T>),
    Not(HashSet<T>),
}

impl<T: Eq + Hash> Approval<T> {
    /// The rule of the one list given; `read` parses a list (its errors
    /// name the entry, after the list's key it is given).
    pub fn from_lists<L>(
        whitelist: Option<L>,
        blacklist: Option<L>,
        read: impl Fn(&str, L) -> Result<HashSet<T>, String>,
    ) -> Result<Self, String> {
        match (whitelist, blacklist) {
            (Some(_), Some(_)) => Err("whitelist, blacklist: using both is invalid".into()),
            (None, None) => Err("whitelist, blacklist: give one of them".into()),
            (Some(list), None) => Ok(Approval::Only(read("whitelist", list)?)),
            (None, Some(list)) => Ok(Approval::Not(read("blacklist", list)?)),
        }
    }

    pub fn approves(&self, item: &T) -> bool {
        match self {
            Approval::Only(allowed) => allowed.contains(item),
            Approval::Not(denied) => !denied.contains(item),
        }
    }
}

/// The entries of a list file: one a line, `#` starting a comment, blank
/// lines skipped. Errors name `key`, the file and the line.
pub fn read_list_file<T>(
    key: &str,
    path: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{key}: cannot read {path}: {e}"))?;
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if !line.is_empty() {
            entries.push(parse(line).map_err(|e| format!("{key}: {path} line {}: {e}", n + 1))?);
        }
    }
    Ok(entries)
}
