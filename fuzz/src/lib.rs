//! Helpers shared by the fuzz targets: canonical encoders for the round
//! trips the targets assert (parse, encode, parse again gives the same).

use shoal::bittorrent::{Announce, Event};
use shoal::protocol::udp::{Request, ACTION_ANNOUNCE, ACTION_CONNECT, ACTION_SCRAPE, PROTOCOL_ID};

/// A UDP request as BEP 15 lays it out; URL data as BEP 41 option 2
/// chunks of at most 255 bytes, then end of options.
pub fn encode_udp(request: &Request<'_>) -> Vec<u8> {
    let mut p = Vec::with_capacity(128);
    match request {
        Request::Connect { transaction_id } => {
            p.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
            p.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
            p.extend_from_slice(&transaction_id.to_be_bytes());
        }
        Request::Announce {
            connection_id,
            transaction_id,
            announce,
        } => {
            p.extend_from_slice(connection_id);
            p.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
            p.extend_from_slice(&transaction_id.to_be_bytes());
            encode_announce_body(&mut p, announce);
        }
        Request::Scrape {
            connection_id,
            transaction_id,
            info_hashes,
        } => {
            p.extend_from_slice(connection_id);
            p.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
            p.extend_from_slice(&transaction_id.to_be_bytes());
            p.extend_from_slice(info_hashes);
        }
    }
    p
}

fn encode_announce_body(p: &mut Vec<u8>, a: &Announce) {
    p.extend_from_slice(&a.info_hash);
    p.extend_from_slice(&a.peer_id);
    p.extend_from_slice(&a.downloaded.to_be_bytes());
    p.extend_from_slice(&a.left.to_be_bytes());
    p.extend_from_slice(&a.uploaded.to_be_bytes());
    let event: u32 = match a.event {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
        Event::Paused => 4,
    };
    p.extend_from_slice(&event.to_be_bytes());
    p.extend_from_slice(&[0; 4]); // ip: the sender's
    p.extend_from_slice(&a.key.to_be_bytes());
    let numwant = a.numwant.map_or(-1i32, |n| n as i32);
    p.extend_from_slice(&numwant.to_be_bytes());
    p.extend_from_slice(&a.port.to_be_bytes());
    if !a.url_data.is_empty() {
        for chunk in a.url_data.chunks(255) {
            p.push(2);
            p.push(chunk.len() as u8);
            p.extend_from_slice(chunk);
        }
        p.push(0);
    }
}

/// Percent-encodes every byte (the strictest form a client may send).
pub fn percent_encode_all(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        s.push_str(&format!("%{b:02X}"));
    }
    s
}

/// An HTTP announce query that states `a` (and the HTTP-only flags).
pub fn encode_query(a: &Announce, compact: bool, no_peer_id: bool) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={}&left={}&uploaded={}&downloaded={}&key={:08x}",
        percent_encode_all(&a.info_hash),
        percent_encode_all(&a.peer_id),
        a.port,
        a.left,
        a.uploaded,
        a.downloaded,
        a.key
    );
    let event = match a.event {
        Event::None => None,
        Event::Completed => Some("completed"),
        Event::Started => Some("started"),
        Event::Stopped => Some("stopped"),
        Event::Paused => Some("paused"),
    };
    if let Some(e) = event {
        q.push_str("&event=");
        q.push_str(e);
    }
    if let Some(n) = a.numwant {
        q.push_str(&format!("&numwant={n}"));
    }
    if !compact {
        q.push_str("&compact=0");
    }
    if no_peer_id {
        q.push_str("&no_peer_id=1");
    }
    q
}
