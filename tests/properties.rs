//! Property tests (proptest) of the protocol round trips, pure functions
//! only (no server): what one side encodes, the other side reads back.
//!
//! - UDP requests: the load generator's encoders -> Shoal's parser, with
//!   BEP 41 options appended.
//! - UDP answers: Shoal's writers -> the load generator's checker; and
//!   every answer the checker accepts is byte for byte what Shoal's
//!   writers produce for the fields it holds (the checker accepts nothing
//!   the server could not have sent).
//! - HTTP requests: the load generator's request builder -> Shoal's head
//!   parser, router and query parser.
//! - HTTP answers: Shoal's bencode writers -> the load generator's
//!   checker; bytes the checker accepts, after any mutation, still read
//!   as one dictionary holding the peer count it reported.
mod common;

use proptest::prelude::*;
use shoal::bittorrent::Event;
use shoal::protocol::http::bencode::{self, AnnounceHead, DictPeer, ScrapeFile};
use shoal::protocol::http::head::parse_head;
use shoal::protocol::http::query::{parse_announce, parse_scrape};
use shoal::protocol::http::route::{Route, Routes};
use shoal::protocol::udp::{self, Request, ScrapeCounts, Writer};
use shoal_loadtest::http::RequestBuilder;
use shoal_loadtest::udp::{self as lt_udp, AnnounceFields, AnnounceTemplate, Checked, Expect};
use shoal_loadtest::workload::{PeerIdentity, RequestKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn hash() -> impl Strategy<Value = [u8; 20]> {
    any::<[u8; 20]>()
}

/// BEP 41 options: (kind, payload) pairs; kind 2 is URL data.
fn options() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(1u8), Just(2u8), 3u8..=255],
            prop::collection::vec(any::<u8>(), 0..40),
        ),
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn udp_connect_round_trips(tid in any::<u32>()) {
        let mut buf = [0u8; 16];
        let n = lt_udp::write_connect(&mut buf, tid);
        prop_assert_eq!(udp::parse(&buf[..n]), Ok(Request::Connect { transaction_id: tid }));
    }

    #[test]
    fn udp_announce_round_trips(
        connection_id in any::<[u8; 8]>(), tid in any::<u32>(), info_hash in hash(),
        peer_id in hash(), left in any::<u64>(), key in any::<u32>(), port in 1u16..,
        numwant in 0u32..=i32::MAX as u32, opts in options(),
    ) {
        let mut buf = vec![0u8; lt_udp::ANNOUNCE_LEN];
        let fields = AnnounceFields {
            connection_id, tid, info_hash: &info_hash, peer_id: &peer_id, left, key, port,
        };
        AnnounceTemplate::new(numwant).write(&mut buf, &fields);
        // BEP 41: URL data chunks concatenate, NOPs and unknown options are
        // skipped, end of options stops the list.
        let mut url_data = Vec::new();
        for (kind, payload) in &opts {
            buf.push(*kind);
            if *kind != 1 {
                buf.push(payload.len() as u8);
                buf.extend_from_slice(payload);
            }
            if *kind == 2 {
                url_data.extend_from_slice(payload);
            }
        }
        buf.push(0);
        buf.extend_from_slice(b"\x02\x03ignored after the end");
        let Ok(Request::Announce { connection_id: c, transaction_id, announce }) = udp::parse(&buf)
        else {
            return Err(TestCaseError::fail("announce did not parse"));
        };
        prop_assert_eq!(c, connection_id);
        prop_assert_eq!(transaction_id, tid);
        prop_assert_eq!(announce.info_hash, info_hash);
        prop_assert_eq!(announce.peer_id, peer_id);
        prop_assert_eq!(announce.left, left);
        prop_assert_eq!(announce.key, key);
        prop_assert_eq!(announce.port, port);
        prop_assert_eq!(announce.numwant, Some(numwant));
        prop_assert_eq!(announce.event, Event::None);
        prop_assert_eq!(&announce.url_data[..], &url_data[..]);
    }

    #[test]
    fn udp_scrape_round_trips(
        connection_id in any::<[u8; 8]>(), tid in any::<u32>(),
        hashes in prop::collection::vec(hash(), 1..75),
    ) {
        let mut buf = vec![0u8; 16 + 20 * hashes.len()];
        let n = lt_udp::write_scrape(&mut buf, connection_id, tid, &hashes);
        let Ok(Request::Scrape { connection_id: c, transaction_id, info_hashes }) = udp::parse(&buf[..n])
        else {
            return Err(TestCaseError::fail("scrape did not parse"));
        };
        prop_assert_eq!(c, connection_id);
        prop_assert_eq!(transaction_id, tid);
        let sent = hashes.concat();
        prop_assert_eq!(info_hashes, &sent[..]);
    }

    #[test]
    fn udp_answers_pass_the_checker(
        tid in any::<u32>(), id in any::<[u8; 8]>(), ipv6 in any::<bool>(),
        counts in any::<(u32, u32, u32)>(), numwant in 0u32..300, peers_seed in any::<u64>(),
        scrape in prop::collection::vec(any::<(u32, u32, u32)>(), 1..75),
    ) {
        let mut slot = [0u8; udp::MAX_PAYLOAD_V4];
        let mut w = Writer::new(&mut slot);
        udp::write_connect(&mut w, tid, id);
        let n = w.len();
        let e = Expect { kind: RequestKind::Connect, scrape_n: 0, numwant, ipv6 };
        prop_assert_eq!(lt_udp::check_response(&slot[..n], &e), Ok(Checked::Connect { connection_id: id }));

        // As many peers as the server sends: numwant, capped to a datagram.
        let peers = (numwant as usize).min(udp::max_peers(ipv6));
        let size = if ipv6 { 18 } else { 6 };
        let mut w = Writer::new(&mut slot);
        udp::write_announce_header(&mut w, tid, counts.0, counts.1, counts.2);
        let mut rng = fastrand::Rng::with_seed(peers_seed);
        for _ in 0..peers * size {
            w.put(&[rng.u8(..)]);
        }
        let n = w.len();
        let e = Expect { kind: RequestKind::Announce, scrape_n: 0, numwant, ipv6 };
        prop_assert_eq!(lt_udp::check_response(&slot[..n], &e), Ok(Checked::Announce { peers }));

        let mut w = Writer::new(&mut slot);
        udp::write_scrape_header(&mut w, tid);
        for &(seeders, completed, leechers) in &scrape {
            udp::write_scrape_entry(&mut w, ScrapeCounts { seeders, completed, leechers });
        }
        let n = w.len();
        let e = Expect { kind: RequestKind::Scrape, scrape_n: scrape.len(), numwant, ipv6 };
        prop_assert_eq!(lt_udp::check_response(&slot[..n], &e), Ok(Checked::Scrape));

        let mut w = Writer::new(&mut slot);
        udp::write_error(&mut w, tid, "bad connection id");
        let n = w.len();
        prop_assert!(lt_udp::check_response(&slot[..n], &e).is_err());
    }

    /// Whatever the checker accepts re-encodes, through Shoal's writers, to
    /// the very same bytes: it accepts only what the server could send.
    #[test]
    fn udp_checker_accepts_only_server_shaped_answers(
        answer in prop::collection::vec(any::<u8>(), 0..200), kind in 0u8..3,
        scrape_n in 0usize..8, numwant in 0u32..40, ipv6 in any::<bool>(),
        action_ok in any::<bool>(),
    ) {
        let kind = [RequestKind::Connect, RequestKind::Announce, RequestKind::Scrape][kind as usize];
        let mut answer = answer;
        if action_ok && answer.len() >= 4 {
            answer[..4].copy_from_slice(&(kind as u32).to_be_bytes());
        }
        let e = Expect { kind, scrape_n, numwant, ipv6 };
        let Ok(checked) = lt_udp::check_response(&answer, &e) else {
            return Ok(());
        };
        let be = |at: usize| u32::from_be_bytes(answer[at..at + 4].try_into().unwrap());
        let mut slot = [0u8; 2048];
        let mut w = Writer::new(&mut slot);
        match checked {
            Checked::Connect { connection_id } => {
                udp::write_connect(&mut w, be(4), connection_id)
            }
            Checked::Announce { peers } => {
                udp::write_announce_header(&mut w, be(4), be(8), be(12), be(16));
                w.put(&answer[20..]);
                prop_assert_eq!(answer.len() - 20, peers * if ipv6 { 18 } else { 6 });
            }
            Checked::Scrape => {
                udp::write_scrape_header(&mut w, be(4));
                for i in 0..scrape_n {
                    let at = 8 + 12 * i;
                    udp::write_scrape_entry(&mut w, ScrapeCounts {
                        seeders: be(at), completed: be(at + 4), leechers: be(at + 8),
                    });
                }
            }
        }
        let n = w.len();
        prop_assert_eq!(&slot[..n], &answer[..]);
    }

    #[test]
    fn http_requests_round_trip(
        info_hash in hash(), peer_id in hash(), port in 1u16.., key in any::<u32>(),
        left in any::<u64>(), numwant in any::<u32>(), passkey in "[a-zA-Z0-9]{1,32}",
        hashes in prop::collection::vec(hash(), 1..50),
    ) {
        let target = "127.0.0.1:6969".parse().unwrap();
        let announce_path = format!("/{passkey}/announce");
        let scrape_path = format!("/{passkey}/scrape");
        let builder = RequestBuilder::new(target, &announce_path, &scrape_path, numwant);
        let routes = Routes::new(
            &["/:passkey/announce".to_string()],
            &["/:passkey/scrape".to_string()],
        ).unwrap();
        let peer = PeerIdentity { peer_id, port, key };
        let mut out = Vec::new();
        builder.announce(&mut out, &info_hash, &peer, left);
        let head = parse_head(&out, None).unwrap().expect("a whole head");
        prop_assert_eq!(head.len, out.len());
        prop_assert_eq!(head.method, "GET");
        prop_assert!(head.keep_alive);
        prop_assert_eq!(routes.match_path(head.path), Route::Announce { passkey: Some(passkey.as_bytes()) });
        let parsed = parse_announce(head.query).unwrap();
        prop_assert_eq!(parsed.announce.info_hash, info_hash);
        prop_assert_eq!(parsed.announce.peer_id, peer_id);
        prop_assert_eq!(parsed.announce.port, port);
        prop_assert_eq!(parsed.announce.key, key);
        prop_assert_eq!(parsed.announce.left, left);
        prop_assert_eq!(parsed.announce.numwant, Some(numwant));
        prop_assert!(parsed.compact);

        out.clear();
        builder.scrape(&mut out, hashes.iter());
        let head = parse_head(&out, None).unwrap().expect("a whole head");
        prop_assert_eq!(routes.match_path(head.path), Route::Scrape { passkey: Some(passkey.as_bytes()) });
        let mut got = Vec::new();
        parse_scrape(head.query, hashes.len(), &mut got).unwrap();
        prop_assert_eq!(got, hashes);
    }

    #[test]
    fn http_answers_pass_the_checker(
        complete in any::<u32>(), incomplete in any::<u32>(), interval in 1u32..,
        v4 in 0usize..60, v6 in 0usize..60, numwant in 0u32..80, external in any::<Option<u32>>(),
        dict in any::<bool>(), files in prop::collection::vec((hash(), any::<(u32, u32, u32, u32)>()), 0..40),
        reason in "[ -~]{0,80}",
    ) {
        let head = AnnounceHead {
            complete, incomplete, interval, min_interval: interval / 2,
            external_ip: external.map(|ip| IpAddr::V4(Ipv4Addr::from(ip))),
        };
        // The server sends at most numwant in all.
        let v4 = v4.min(numwant as usize);
        let v6 = v6.min(numwant as usize - v4);
        let mut body = Vec::new();
        if dict {
            let ids = [[7u8; 20]];
            let peers = (0..v4).map(|i| DictPeer {
                ip: IpAddr::V4(Ipv4Addr::from(i as u32)), port: 1 + i as u16, peer_id: Some(&ids[0]),
            }).chain((0..v6).map(|i| DictPeer {
                ip: IpAddr::V6(Ipv6Addr::from(i as u128)), port: 1 + i as u16, peer_id: None,
            }));
            bencode::announce_dict(&mut body, &head, peers);
        } else {
            bencode::announce_compact(&mut body, &head, &vec![1; 6 * v4], &vec![2; 18 * v6]);
        }
        prop_assert!(common::bencode::parse(&body).is_ok());
        prop_assert_eq!(
            shoal_loadtest::http::check_response(RequestKind::Announce, 200, &body, numwant, 0),
            Ok(shoal_loadtest::http::Checked::Announce { peers: v4 + v6 })
        );

        let mut sorted: Vec<(_, _)> = files.iter().map(|&(h, (complete, downloaded, downloaders, incomplete))| {
            (h, ScrapeFile { complete, downloaded, downloaders, incomplete })
        }).collect();
        sorted.sort_by_key(|a| a.0);
        body.clear();
        bencode::scrape(&mut body, &sorted);
        prop_assert!(common::bencode::parse(&body).is_ok());
        let checked = shoal_loadtest::http::check_response(RequestKind::Scrape, 200, &body, 0, files.len());
        if files.is_empty() {
            // A scrape with no known torrent is answered with no files,
            // which the checker rightly calls a tracker ignoring scrapes
            // only when it asked for some.
            prop_assert!(checked.is_ok());
        } else {
            prop_assert_eq!(checked, Ok(shoal_loadtest::http::Checked::Scrape { files: files.len() }));
        }

        body.clear();
        bencode::failure(&mut body, &reason);
        prop_assert_eq!(
            shoal_loadtest::http::check_response(RequestKind::Announce, 200, &body, numwant, 0),
            Err(shoal_loadtest::ErrorKind::FailureReason)
        );
    }

    /// A server answer with one byte changed or the tail cut: whatever the
    /// checker still accepts is one bencoded dictionary whose peer strings
    /// hold exactly the peers the checker counted.
    #[test]
    fn http_checker_counts_what_is_there(
        v4 in 0usize..10, v6 in 0usize..10, at in any::<prop::sample::Index>(),
        byte in any::<u8>(), cut in any::<bool>(),
    ) {
        let head = AnnounceHead { complete: 1, incomplete: 2, interval: 1800, min_interval: 900, external_ip: None };
        let mut body = Vec::new();
        bencode::announce_compact(&mut body, &head, &vec![1; 6 * v4], &vec![2; 18 * v6]);
        let i = at.index(body.len());
        if cut { body.truncate(i) } else { body[i] = byte }
        if let Ok(shoal_loadtest::http::Checked::Announce { peers }) =
            shoal_loadtest::http::check_response(RequestKind::Announce, 200, &body, 100, 0)
        {
            let dict = shoal_loadtest::bencode::Dict::parse(&body).expect("one dictionary");
            let len = |key: &[u8], size: usize| {
                dict.get(key).and_then(|v| v.as_bytes()).map_or(0, |b| b.len() / size)
            };
            prop_assert_eq!(peers, len(b"peers", 6) + len(b"peers6", 18));
        }
    }
}
