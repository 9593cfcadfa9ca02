#!/usr/bin/env python3
"""HTTP pipelining floods against a loopback tracker.

    http_pipeline.py HOST PORT CONNECTIONS REQUESTS PID

1. CONNECTIONS connections each write REQUESTS announces back to back
   (one write per batch, no waiting), then read every answer. Counts the
   answers that came back and checks they are all 200.
2. One connection writes announces without ever reading, until the kernel
   buffers are full and the writes stall for 2 s: the server must stop
   reading (TCP back-pressure) rather than queue answers in memory.
   Reports the server's resident memory (from /proc/PID) before and after.
Prints one JSON line.
"""
import json, os, socket, sys, threading, time

host, port, n_conn, n_req, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
assert host in ("127.0.0.1", "::1"), "loopback only"


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def request(i):
    ih = (b"%020d" % (i % 1000))
    q = "".join("%%%02X" % b for b in ih)
    return f"GET /announce?info_hash={q}&peer_id=-PL0001-abcdefghijkl&port={1 + i % 60000}&left=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode()


results = []


def pipeliner(k):
    c = socket.create_connection((host, port), timeout=30)
    batch = b"".join(request(k * n_req + i) for i in range(n_req))
    w = threading.Thread(target=c.sendall, args=(batch,))
    w.start()
    got, ok, buf = 0, 0, b""
    while got < n_req:
        chunk = c.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
            if len(buf) < end + 4 + length:
                break
            ok += head.startswith(b"HTTP/1.1 200")
            got += 1
            buf = buf[end + 4 + length:]
    w.join()
    c.close()
    results.append((got, ok))


rss_before = rss_kib()
t0 = time.monotonic()
threads = [threading.Thread(target=pipeliner, args=(k,)) for k in range(n_conn)]
for t in threads:
    t.start()
for t in threads:
    t.join()
took = time.monotonic() - t0
answered = sum(g for g, _ in results)
ok = sum(o for _, o in results)

# 2: never read.
c = socket.create_connection((host, port))
c.setblocking(False)
one = request(1)
written, stalled_since = 0, None
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        written += c.send(one * 64)
        stalled_since = None
    except BlockingIOError:
        stalled_since = stalled_since or time.monotonic()
        if time.monotonic() - stalled_since > 2:
            break
        time.sleep(0.01)
rss_stalled = rss_kib()
c.close()
print(json.dumps({
    "connections": n_conn, "requests_each": n_req, "answered": answered, "answered_200": ok,
    "seconds": round(took, 2), "answers_per_s": round(answered / took),
    "unread_writer_bytes_accepted": written, "rss_kib_before": rss_before, "rss_kib_unread_writer_stalled": rss_stalled,
}))
