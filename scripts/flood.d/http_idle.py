#!/usr/bin/env python3
"""Idle connections and slowloris clients against a loopback tracker, while
a fresh client announces on a new connection every 100 ms.

    http_idle.py HOST PORT IDLE SLOW SECONDS

IDLE connections open and send nothing; SLOW connections trickle a request
head one byte a second and never finish it. Prints one JSON line: fresh
announces answered and their latency (p50, p99, max), how many idle and
slow connections the server had closed by the end, and when the slow ones
were cut.
"""
import json, os, socket, sys, time

host, port, n_idle, n_slow, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
assert host in ("127.0.0.1", "::1"), "loopback only"
family = socket.AF_INET6 if ":" in host else socket.AF_INET


def open_conn():
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    return s


idle = [open_conn() for _ in range(n_idle)]
slow = [open_conn() for _ in range(n_slow)]
opened = time.monotonic()
head = b"GET /announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0 HTTP/1.1\r\nX-Slow: " + b"z" * 10000


def closed(s):
    """Closed by the server: end of stream or an error. Open: no data yet."""
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def fresh():
    ih = os.urandom(20)
    q = "".join("%%%02X" % b for b in ih)
    req = f"GET /announce?info_hash={q}&peer_id=-FL0001-abcdefghijkl&port=6881&left=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    t0 = time.monotonic()
    try:
        c = socket.create_connection((host, port), timeout=10)
        c.sendall(req)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
        c.close()
        ok = got.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    return ok, time.monotonic() - t0


latencies, answered, asked = [], 0, 0
slow_cut_at = {}
at = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    tick = time.monotonic()
    # One byte a second on each slow connection.
    if at < len(head) and time.monotonic() - start >= at:
        for i, s in enumerate(slow):
            if i in slow_cut_at:
                continue
            try:
                s.send(head[at:at + 1])
            except (BlockingIOError, OSError):
                pass
            if closed(s):
                slow_cut_at[i] = time.monotonic() - opened
        at += 1
    ok, lat = fresh()
    asked += 1
    answered += ok
    latencies.append(lat)
    time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
for i, s in enumerate(slow):
    if i not in slow_cut_at and closed(s):
        slow_cut_at[i] = time.monotonic() - opened
idle_closed = sum(closed(s) for s in idle)
latencies.sort()
pick = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)
cuts = sorted(slow_cut_at.values())
print(json.dumps({
    "idle": n_idle, "slowloris": n_slow, "seconds": seconds,
    "fresh_answered": answered, "fresh_asked": asked,
    "fresh_ms_p50": pick(0.5), "fresh_ms_p99": pick(0.99), "fresh_ms_max": pick(1.0),
    "idle_closed_by_server": idle_closed, "slow_cut": len(cuts),
    "slow_cut_s_first": round(cuts[0], 1) if cuts else None, "slow_cut_s_last": round(cuts[-1], 1) if cuts else None,
}))
