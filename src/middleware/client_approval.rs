//! `client approval` (Chihaya's `clientapproval`): announces from clients
//! on a whitelist only, or from any but a blacklist. A client is named by
//! its peer id's client id, as Chihaya derives it: the six bytes after
//! the dash of an Azureus-style id (`-TR2940-...` is `TR2940`), else the
//! first six bytes. The match is exact, so the version is part of it.
//! Scrapes are not checked.

use super::hook::{AnnounceContext, Hook, Refusal};
use super::options::{Approval, Maker};
use crate::bittorrent::PeerId;
use ahash::HashSet;
use serde::Deserialize;
use std::sync::Arc;

pub const NAME: &str = "client approval";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default)]
    pub whitelist: Vec<String>,
    #[serde(default)]
    pub blacklist: Vec<String>,
}

/// A client id: six bytes of the peer id.
pub type ClientId = [u8; 6];

/// Chihaya's `NewClientID`.
pub fn client_id(peer_id: &PeerId) -> ClientId {
    let start = usize::from(peer_id[0] == b'-');
    peer_id[start..start + 6].try_into().expect("six bytes")
}

pub struct ClientApproval {
    rule: Arc<Approval<ClientId>>,
}

/// Checks the options (the error names the option) and returns the maker
/// of each shard's instance.
pub fn build(options: &serde_yaml::Value) -> Result<Maker, String> {
    let rule = Arc::new(rule(super::options::parse_options(options)?)?);
    Ok(Arc::new(move |_| {
        Box::new(ClientApproval { rule: rule.clone() }) as Box<dyn Hook>
    }))
}

fn rule(options: Options) -> Result<Approval<ClientId>, String> {
    let ids = |key: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, id)| {
                ClientId::try_from(id.as_bytes()).map_err(|_| {
                    format!(
                        "{key}[{i}]: {id:?} is not a peer id prefix (a client id is 6 bytes, \
                         e.g. \"TR2940\" for -TR2940-)"
                    )
                })
            })
            .collect::<Result<HashSet<_>, _>>()
    };
    let given = |list: Vec<String>| (!list.is_empty()).then_some(list);
    Approval::from_lists(
        given(options.whitelist),
        given(options.blacklist),
        |key, list| ids(key, &list),
    )
}

impl ClientApproval {
    pub fn approves(&self, peer_id: &PeerId) -> bool {
        self.rule.approves(&client_id(peer_id))
    }
}

impl Hook for ClientApproval {
    fn name(&self) -> &'static str {
        NAME
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if self.approves(&ctx.announce.peer_id) {
            Ok(())
        } else {
            Err(Refusal::new("unapproved client"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_id(prefix: &[u8]) -> PeerId {
        let mut id = [b'x'; 20];
        id[..prefix.len()].copy_from_slice(prefix);
        id
    }

    fn hook(yaml: &str) -> Result<ClientApproval, String> {
        let options = super::super::options::parse_options(&serde_yaml::from_str(yaml).unwrap())?;
        Ok(ClientApproval {
            rule: Arc::new(rule(options)?),
        })
    }

    #[test]
    fn client_ids_follow_chihaya() {
        assert_eq!(&client_id(&peer_id(b"-TR2940-")), b"TR2940");
        assert_eq!(&client_id(&peer_id(b"M7-2-2--")), b"M7-2-2");
        assert_eq!(&client_id(&peer_id(b"OP1011")), b"OP1011");
    }

    #[test]
    fn whitelists_and_blacklists() {
        let white = hook("{whitelist: [TR2940, qB4650]}").unwrap();
        assert!(white.approves(&peer_id(b"-TR2940-")));
        assert!(white.approves(&peer_id(b"-qB4650-")));
        assert!(!white.approves(&peer_id(b"-TR2930-")), "the version counts");
        assert!(!white.approves(&peer_id(b"-UT3550-")));
        let black = hook("{blacklist: [UT3550]}").unwrap();
        assert!(!black.approves(&peer_id(b"-UT3550-")));
        assert!(black.approves(&peer_id(b"-TR2940-")));
    }

    #[test]
    fn bad_options_are_named() {
        let e = hook("{whitelist: [TR2940, xyz]}").err().unwrap();
        assert!(
            e.starts_with("whitelist[1]: \"xyz\" is not a peer id prefix"),
            "{e}"
        );
        let e = hook("{whitelist: [TR2940], blacklist: [UT3550]}")
            .err()
            .unwrap();
        assert!(e.contains("using both is invalid"), "{e}");
        let e = hook("{}").err().unwrap();
        assert!(e.contains("give one"), "{e}");
        let e = hook("{whitelist: [TR2940], typo: 1}").err().unwrap();
        assert!(e.contains("typo"), "{e}");
    }
}
