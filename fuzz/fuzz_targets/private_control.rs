//! Private mode's control endpoint (`/<site_password>/update?...`): the
//! query string as Gazelle sends it. Never panics; an understood change
//! applies to a catalog without panicking, and an added torrent or user
//! is there afterwards.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::private::catalog::{Catalog, Change};
use shoal::private::control::parse;

fuzz_target!(|query: &[u8]| {
    let Ok(Some(change)) = parse(query) else {
        return;
    };
    let mut catalog = Catalog::default();
    catalog.apply(change.clone());
    match change {
        Change::AddTorrent { info_hash, id, .. } => {
            assert_eq!(catalog.torrents[&info_hash].id, id);
        }
        Change::AddUser { passkey, id, .. } => {
            assert_eq!(catalog.user(&passkey).map(|u| u.id), Some(id));
        }
        _ => {}
    }
});
