#!/usr/bin/env python3
"""Writes the seed corpus, fuzz/corpus/<target>/, from valid messages.

Run from anywhere: python3 fuzz/seeds.py. Re-running rewrites the same
files (a fixed random seed), except that ES256 signatures differ each time
(ECDSA signs with a fresh nonce; every one is valid). The JWT
seeds are signed with the test-only keys of tests/fixtures/jwt (needs the
Python `cryptography` package; without it the jwt seeds are left as they
are).
"""
import base64, json, os, random, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
rng = random.Random(15)


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rbytes(n):
    return bytes(rng.randrange(256) for _ in range(n))


PROTOCOL_ID = 0x41727101980


def udp_seeds():
    cid = rbytes(8)
    put("udp_request", "connect", struct.pack(">QII", PROTOCOL_ID, 0, 0x1234))
    put("udp_request", "connect-bad-protocol", struct.pack(">QII", 1, 0, 0x1234))
    for i, (event, numwant, options) in enumerate([
        (0, -1, b""), (1, 50, b""), (2, 0, b""), (3, 200, b""), (4, 30, b""),
        (2, -1, b"\x02\x0c/announce?x=1\x00"),
        (0, 10, b"\x01\x01\x02\x05/abcd\x02\x09/announce\x00"),
        (0, 10, b"\x02\xff" + b"a" * 255 + b"\x02\x03xyz"),
        (0, 10, b"\x07\x03abc\x02\x02/p"),
        (0, 10, b"\x02\x10short"),
        (9, 10, b""),
    ]):
        body = rbytes(20) + rbytes(20) + struct.pack(">QQQIIIiH", 1, 2, 3, event, 0, 0xabcd, numwant, 6881)
        put("udp_request", f"announce-{i}", cid + struct.pack(">II", 1, i) + body + options)
    put("udp_request", "announce-port0", cid + struct.pack(">II", 1, 9) + rbytes(40) + struct.pack(">QQQIIIiH", 0, 0, 0, 0, 0, 0, -1, 0))
    put("udp_request", "announce-short", cid + struct.pack(">II", 1, 9) + rbytes(30))
    for n in (1, 2, 5, 74):
        put("udp_request", f"scrape-{n}", cid + struct.pack(">II", 2, n) + rbytes(20 * n))
    put("udp_request", "scrape-partial", cid + struct.pack(">II", 2, 7) + rbytes(25))
    put("udp_request", "scrape-empty", cid + struct.pack(">II", 2, 7))
    put("udp_request", "unknown-action", cid + struct.pack(">II", 5, 7))
    put("udp_request", "short", b"\x00" * 15)


def ih_q(b):
    return "".join("%%%02X" % x for x in b)


def query_seeds():
    ih, pid = rbytes(20), b"-qB4650-" + b"abcdefghijkl"
    base = f"info_hash={ih_q(ih)}&peer_id={pid.decode()}&port=6881&uploaded=0&downloaded=0&left=1000"
    variants = [
        base, base + "&event=started&numwant=50&compact=1&key=1A2B3C4D",
        base + "&event=stopped", base + "&event=completed&no_peer_id=1", base + "&event=paused",
        base + "&compact=0&numwant=-1", base + "&ip=192.0.2.1&ipv6=2001:db8::1&ipv4=198.51.100.2",
        base + "&ip=example.org&key=zz&corrupt=0&supportcrypto=1&trackerid=abc",
        base + "&numwant=99999999999", base + "&port=0", base + "&port=65536", base + "&left=-1",
        base + "&event=bogus", "info_hash=abc", "", "&&&==&", "info_hash=%ZZ%00",
        base.replace("info_hash=", "info_hash=%41%4") ,
        "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0",
        "info_hash=" + ih_q(ih) + "&info_hash=" + ih_q(rbytes(20)) + "&info_hash=" + ih_q(rbytes(20)),
        "info_hash=+++++++++++++++++++%20", "a=b=c&info_hash=%%%%",
        base + "&ip=%5B::1%5D&ipv6=[2001:db8::2]:6881",
    ]
    for i, v in enumerate(variants):
        put("query", f"q-{i:02}", v)


def head_seeds():
    heads = [
        "GET /announce?info_hash=%01%02&port=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /scrape HTTP/1.0\r\n\r\n",
        "GET /announce HTTP/1.1\r\nConnection: close\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\n\r\n",
        "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\n\n", "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "POST /announce HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n", "GET / HTTP/1.1\r\nX: \xff\r\n\r\n", "\r\n\r\n", "GET",
        "GET / HTTP/1.1\r\n" + "".join(f"H{i}: v\r\n" for i in range(40)) + "\r\n",
        "GET /%41?x?y HTTP/1.1\r\nx-forwarded-for: [::1]:80\r\nx-forwarded-for: 9.9.9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: Keep-Alive, Upgrade\r\nContent-Length: 0\r\n\r\n",
        "get / http/1.1\r\n\r\n", "GET / HTTP/1.1\r\n folded\r\n\r\n", "GET / HTTP/1.1\r\r\n\r\n",
    ]
    for i, h in enumerate(heads):
        put("http_head", f"h-{i:02}", h.encode("latin-1"))


def route_seeds():
    cases = [
        "/announce\n/scrape\0/announce", "/:passkey/announce\n/:passkey/scrape\0/abc/announce",
        "/announce/\n/scrape\0/announce/", "/\n/s\0/", "/a/:passkey\n/s/:passkey\0/a/k",
        "/announce\n/scrape\0/scrape", "/x//y\n/s\0/x", "/:passkey/:passkey\n/s\0/a/b",
        "announce\n/s\0/", "/:user/a\n/s\0/u/a", "/a?b\n/s\0/a", "/:passkey\n/scrape\0//",
        "/announce\n/scrape\0/announce/extra", "/p/:passkey/announce\n/p/:passkey/scrape\0/p//announce",
        # Found by the fuzzer: `:passkey` inside a literal segment is literal.
        "/a/A:passkey\n/s/:passkey\0/a/k",
    ]
    for i, c in enumerate(cases):
        put("route", f"r-{i:02}", c)


def client_ip_seeds():
    cases = [
        b"\x00127.0.0.0/8\x001.2.3.4", b"\x0010.0.0.0/8\n127.0.0.1/32\x001.2.3.4, 10.0.0.2, 127.0.0.1",
        b"\x02::1/128\x00[2001:db8::1]:443, ::1", b"\x03::ffff:10.0.0.0/104\x00 203.0.113.9 ",
        b"\x010.0.0.0/0\x00garbage, 1.1.1.1", b"\x01\x001.1.1.1", b"\x000.0.0.0/0\n::/0\x00",
        b"\x00127.0.0.1\x00192.0.2.1:80", b"\x00127.0.0.0/33\x00,,,", b"\x02::/0\x00::ffff:1.2.3.4",
        b"\x00127.0.0.0/8", b"\x001.2.3.4/8\x00x", b"\x00 127.0.0.0/8\x00fe80::1%eth0",
    ]
    for i, c in enumerate(cases):
        put("client_ip", f"c-{i:02}", c)


def config_seeds():
    with open(os.path.join(ROOT, "config.yaml")) as f:
        full = f.read()
    put("config", "default", full)
    small = [
        "", "{}", "tracker:\n  announce_interval: 30m\n", "udp:\n  listen: []\nhttp:\n  listen: []\n",
        "runtime:\n  cores: [0]\n", "runtime:\n  cores: []\n", "runtime:\n  io_memory: 1KiB\n",
        "http:\n  announce_routes: [\"/:passkey/announce\"]\n  scrape_routes: [\"/:passkey/scrape\"]\n",
        "http:\n  trusted_proxies: [\"10.0.0.0/8\", \"::1/128\"]\n  real_ip_header: X-Forwarded-For\n",
        "udp:\n  connection_id_key: \"0123456789abcdef\"\n",
        "udp:\n  connection_id_lifetime: 1m\n", "bogus: 1\n", "tracker: [1, 2]\n",
        "hooks:\n  pre:\n    - name: interval variation\n      options:\n        modify_response_probability: 0.5\n        max_increase_delta: 60\n        modify_min_interval: true\n",
        "\0tracker.announce_interval=20m\nudp.batch_size=0",
        "\0runtime.cores=auto\nhttp.listen=[\"127.0.0.1:1\"]", "\0nokey", "a: &x [*x]\n",
        "tracker:\n  max_torrents: 10\n  max_peers_per_torrent: 5\n",
        "storage:\n  snapshot:\n    path: /nonexistent/s\n    interval: 0s\n",
    ]
    for i, s in enumerate(small):
        put("config", f"c-{i:02}", s)


def bincode_snapshot(created, key, torrents):
    head = struct.pack("<Q", created)
    head += b"\x00" if key is None else b"\x01" + struct.pack("<QQ", *key)
    body = struct.pack("<Q", len(torrents))
    for ih, downloaded, peers in torrents:
        body += ih + struct.pack("<I", downloaded) + struct.pack("<Q", len(peers))
        for ip, port, pid, seeder, paused, remaining in peers:
            body += (struct.pack("<I", 0) + ip) if len(ip) == 4 else (struct.pack("<I", 1) + ip)
            body += struct.pack("<H", port) + pid + bytes([seeder, paused]) + struct.pack("<I", remaining)
    return head, body


def snapshot_file(created, key, blocks):
    import zlib
    out = b"SHOALSNP" + struct.pack("<I", 1)
    head = None
    for torrents in blocks:
        h, body = bincode_snapshot(created, key, torrents)
        head = h
    if head is None:
        head, _ = bincode_snapshot(created, key, [])
    out += struct.pack("<I", len(head)) + head
    for torrents in blocks:
        _, body = bincode_snapshot(created, key, torrents)
        out += struct.pack("<I", len(body)) + body
    out += struct.pack("<I", 0)
    out += struct.pack("<I", zlib.crc32(out))
    return out


def snapshot_seeds():
    def peer(v6=False):
        ip = rbytes(16) if v6 else rbytes(4)
        return (ip, rng.randrange(1, 65536), rbytes(20), rng.randrange(2), rng.randrange(2), rng.randrange(4000))
    def torrent(n):
        return (rbytes(20), rng.randrange(100), [peer(rng.randrange(2) == 1) for _ in range(n)])
    valid = [
        snapshot_file(1_700_000_000, None, []),
        snapshot_file(1_700_000_000, (1, 2), [[]]),
        snapshot_file(1_700_000_001, None, [[torrent(1)]]),
        snapshot_file(1_700_000_002, (7, 9), [[torrent(2), torrent(0)], [torrent(3)]]),
        snapshot_file(1_700_000_003, None, [[torrent(5) for _ in range(4)]]),
    ]
    for i, v in enumerate(valid):
        put("snapshot", f"valid-{i}", v)
        put("snapshot", f"truncated-{i}", v[: len(v) // 2])
        flipped = bytearray(v)
        flipped[len(v) // 3] ^= 0x40
        put("snapshot", f"flipped-{i}", bytes(flipped))
    put("snapshot", "version-2", b"SHOALSNP" + struct.pack("<I", 2) + valid[0][12:])
    put("snapshot", "huge-length", b"SHOALSNP" + struct.pack("<I", 1) + struct.pack("<I", 0xFFFFFFF0))
    put("snapshot", "foreign", b"GIF89a\x00\x00")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_seeds():
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, padding
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    except ImportError:
        print("no cryptography package: jwt seeds left as they are", file=sys.stderr)
        return
    fx = os.path.join(ROOT, "tests", "fixtures", "jwt")
    rsa_key = serialization.load_pem_private_key(open(os.path.join(fx, "rsa.pem"), "rb").read(), None)
    ec_key = serialization.load_pem_private_key(open(os.path.join(fx, "ec.pem"), "rb").read(), None)
    ih_hex = "11" * 20

    def sign(alg, kid, claims):
        header = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            header["kid"] = kid
        signing = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
        if alg == "RS256":
            sig = rsa_key.sign(signing, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(ec_key.sign(signing, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing.decode() + "." + b64(sig)

    good = {"iss": "https://issuer.example", "aud": ["shoal"], "infohash": ih_hex}
    tokens = {
        "valid-rs256": sign("RS256", "test-rsa", good),
        "valid-es256": sign("ES256", "test-ec", good),
        "valid-aud-string": sign("ES256", "test-ec", dict(good, aud="shoal")),
        "valid-exp-nbf": sign("RS256", "test-rsa", dict(good, exp=1_900_000_000, nbf=1_700_000_000.5)),
        "expired": sign("ES256", "test-ec", dict(good, exp=1_000_000_000)),
        "not-yet": sign("ES256", "test-ec", dict(good, nbf=1_900_000_000)),
        "wrong-issuer": sign("RS256", "test-rsa", dict(good, iss="x")),
        "wrong-audience": sign("RS256", "test-rsa", dict(good, aud=["a", "b"])),
        "wrong-infohash": sign("ES256", "test-ec", dict(good, infohash="22" * 20)),
        "no-kid": sign("ES256", None, good),
        "unknown-kid": sign("ES256", "nope", good),
        "alg-mismatch": sign("ES256", "test-rsa", good),
        "claims-types": sign("ES256", "test-ec", {"iss": 1, "aud": {"x": 1}, "exp": "soon"}),
        "none-alg": b64(b'{"alg":"none","kid":"test-ec"}') + "." + b64(json.dumps(good).encode()) + ".",
        "two-parts": "eyJhbGciOiJIUzI1NiJ9.e30",
        "garbage": "not a token",
    }
    for name, t in tokens.items():
        put("jwt", name, t)
    put("jwt", "jwks", b"\x00" + open(os.path.join(fx, "jwks.json"), "rb").read())
    put("jwt", "jwks-empty", b'\x00{"keys":[]}')
    put("jwt", "jwks-odd", b'\x00{"keys":[{"kty":"oct","kid":"k","k":"AAAA"},{"kty":"EC","crv":"P-384","kid":"e"}]}')


def loadtest_udp_seeds():
    # ask: kind (0 connect, 1 announce, 2 scrape), scrape count, numwant, family
    put("loadtest_udp", "connect", bytes([0, 0, 0, 0]) + struct.pack(">II", 0, 5) + rbytes(8))
    put("loadtest_udp", "connect-long", bytes([0, 0, 0, 0]) + struct.pack(">II", 0, 5) + rbytes(9))
    for n in (0, 1, 5, 30):
        put("loadtest_udp", f"announce4-{n}", bytes([1, 0, 30, 0]) + struct.pack(">IIIII", 1, 5, 1800, 3, 4) + rbytes(6 * n))
        put("loadtest_udp", f"announce6-{n}", bytes([1, 0, 30, 1]) + struct.pack(">IIIII", 1, 5, 1800, 3, 4) + rbytes(18 * n))
    put("loadtest_udp", "announce-odd", bytes([1, 0, 30, 0]) + struct.pack(">IIIII", 1, 5, 1800, 3, 4) + rbytes(7))
    for n in (1, 3, 74):
        put("loadtest_udp", f"scrape-{n}", bytes([2, n, 0, 0]) + struct.pack(">II", 2, 5) + rbytes(12 * n))
    put("loadtest_udp", "error", bytes([1, 0, 30, 0]) + struct.pack(">II", 3, 5) + b"bad connection id")
    put("loadtest_udp", "wrong-action", bytes([2, 1, 0, 0]) + struct.pack(">II", 1, 5) + rbytes(12))
    put("loadtest_udp", "short", bytes([1, 0, 0, 0, 0, 0, 0]))


def bstr(b):
    return str(len(b)).encode() + b":" + b


def loadtest_http_seeds():
    def resp(body, status=b"200 OK", extra=b""):
        return b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    ann = lambda peers4, peers6=b"": b"d8:completei3e10:incompletei4e8:intervali1800e12:min intervali900e5:peers" + bstr(peers4) + (b"6:peers6" + bstr(peers6) if peers6 else b"") + b"e"
    bodies = {
        "announce-0": ann(b""), "announce-5": ann(rbytes(30)), "announce-dual": ann(rbytes(12), rbytes(36)),
        "announce-dict": b"d8:intervali1800e5:peersld2:ip9:127.0.0.17:peer id20:" + rbytes(20) + b"4:porti6881eeee",
        "announce-odd": ann(rbytes(7)),
        "failure": b"d14:failure reason15:malformed HTTPe",
        "scrape-1": b"d5:filesd20:" + rbytes(20) + b"d8:completei1e10:downloadedi2e10:incompletei3eeee",
        "scrape-0": b"d5:filesdee", "crlf": ann(b"") + b"\r\n",
        "nested": b"d1:ald1:bli1ei-2e0:eee1:ci0ee", "bad-int": b"d1:ai-0ee", "bad-len": b"d1:a99:xe",
    }
    for name, body in bodies.items():
        kind = 1 if name.startswith("scrape") else 0
        put("loadtest_http", f"{name}-body", bytes([kind, 30, 2]) + body)
        put("loadtest_http", f"{name}-resp", bytes([kind, 30, 2]) + resp(body))
    put("loadtest_http", "status-400", bytes([0, 30, 0]) + resp(bodies["failure"], b"400 Bad Request", b"Connection: close\r\n"))
    put("loadtest_http", "chunked", bytes([0, 30, 0]) + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    put("loadtest_http", "two-lengths", bytes([0, 30, 0]) + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")


def private_control_seeds():
    pk = "0123456789abcdef0123456789abcdef"
    ih = "".join(f"%{b:02X}" for b in rbytes(20))
    for i, q in enumerate([
        f"action=add_torrent&info_hash={ih}&id=42&freetorrent=1",
        f"action=update_torrent&info_hash={ih}&freetorrent=2",
        "action=update_torrents&info_hashes=" + ih * 2 + "&freetorrent=0",
        f"action=delete_torrent&info_hash={ih}&reason=3",
        f"action=add_user&passkey={pk}&id=7&visible=0",
        f"action=update_user&passkey={pk}&can_leech=0&visible=1",
        f"action=remove_users&passkeys={pk}{pk}",
        f"action=change_passkey&oldpasskey={pk}&newpasskey={pk[::-1]}",
        f"action=add_token&info_hash={ih}&userid=7",
        "action=add_whitelist&peer_id=-qB4", "action=edit_whitelist&old_peer_id=-qB&new_peer_id=-TR",
        "action=info_torrent", "action=nonsense", "",
    ]):
        put("private_control", f"c-{i:02}", q)


def private_journal_seeds():
    # bincode 1 (fixed-width little-endian) of shoal::private::batch::Batch.
    def ip(v4):
        return b"\x01" + struct.pack("<I", 0) + v4 if v4 is not None else b"\x00"
    def batch(users, peers, snatches, torrents, tokens=()):
        out = struct.pack("<Q", len(users))
        for uid, up, down in users:
            out += struct.pack("<IQQ", uid, up, down)
        out += struct.pack("<Q", len(tokens))
        for uid, tid, down in tokens:
            out += struct.pack("<IIQ", uid, tid, down)
        out += struct.pack("<Q", len(peers))
        for uid, tid, pid, active, addr in peers:
            out += struct.pack("<II", uid, tid) + pid + bytes([active])
            out += struct.pack("<QQQQQQI", 5, 6, 7, 1, 2, 30, 4) + ip(addr) + struct.pack("<Q", 1700000000)
        out += struct.pack("<Q", len(snatches))
        for uid, tid, addr in snatches:
            out += struct.pack("<IIQ", uid, tid, 1700000000) + ip(addr)
        out += struct.pack("<Q", len(torrents))
        for tid, s, l, n in torrents:
            out += struct.pack("<IIII", tid, s, l, n)
        return out
    put("private_journal", "empty", batch([], [], [], []))
    put("private_journal", "users", batch([(1, 10, 5), (2, 0, 7)], [], [], []))
    put("private_journal", "all", batch([(1, 10, 5)], [(1, 2, rbytes(20), 1, bytes([10, 0, 0, 1]))],
                                        [(1, 2, None)], [(2, 1, 0, 1)], [(1, 2, 100)]))
    put("private_journal", "hidden-peer", batch([], [(3, 4, rbytes(20), 0, None)], [], [(4, 0, 0, 0)]))


for seeds in (udp_seeds, query_seeds, head_seeds, route_seeds, client_ip_seeds, config_seeds,
              snapshot_seeds, jwt_seeds, loadtest_udp_seeds, loadtest_http_seeds,
              private_control_seeds, private_journal_seeds):
    seeds()
