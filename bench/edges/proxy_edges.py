#!/usr/bin/env python3
# Usage: python3 bench/edges/proxy_edges.py PATH/TO/drainpipe
# Before/after lines for issue 12 items 5, 6, 7, 9 against `drainpipe proxy` (BIN).
import socket, subprocess, sys, threading, time
BIN = sys.argv[1]
def serve(handler):
    up = socket.socket(); up.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    up.bind(("127.0.0.1", 0)); up.listen(16)
    def loop():
        while True:
            c, _ = up.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return up.getsockname()[1]
def head(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d: return None
        buf += d
    return buf.decode(errors="replace")
def upstream(c):
    while True:
        h = head(c)
        if h is None: return
        line = h.split("\r\n")[0]
        low = h.lower()
        if line.startswith("GET /hints"):
            c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
            time.sleep(0.2)
        if "expect: 100-continue" in low:
            c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"); return
        mf = [l for l in low.split("\r\n") if l.startswith("max-forwards:")]
        body = (line + (" " + mf[0] if mf else "")).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
up = serve(upstream)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([BIN, "proxy", "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{up}"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
p.stdout.readline(); time.sleep(0.3)
def ask(raw, wait=1.5):
    c = socket.create_connection(("127.0.0.1", port)); c.settimeout(wait)
    c.sendall(raw); got = b""; t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < wait:
            d = c.recv(4096)
            if not d: break
            got += d
            if got.count(b"\r\n\r\n") and (b" 200 " in got or b" 401 " in got or b" 404 " in got or b" 405 " in got) and got.endswith(tuple([b"\r\n\r\n"])) is False: break
    except socket.timeout: pass
    lines = [l for l in got.decode(errors="replace").split("\r\n") if l.startswith("HTTP/")]
    return lines, got.decode(errors="replace")
print("item 5 (103 relayed):", ask(b"GET /hints HTTP/1.1\r\nHost: a\r\n\r\n")[0])
t0 = time.monotonic()
lines, _ = ask(b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n", 3)
print(f"item 6 (Expect forwarded; upstream refuses):", lines, f"{time.monotonic()-t0:.2f} s")
lines, raw = ask(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n")
print("item 7 (OPTIONS Max-Forwards: 0):", lines, "| upstream saw it" if "OPTIONS /x" in raw else "| answered by the proxy")
lines, raw = ask(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 3\r\n\r\n")
print("item 7 (Max-Forwards: 3 -> upstream got):", raw.split("\r\n\r\n",1)[1][:60] if "\r\n\r\n" in raw else raw)
lines, raw = ask(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
print("item 9 (OPTIONS *):", lines, raw.split("\r\n\r\n",1)[1][:40] if "\r\n\r\n" in raw else "")
p.terminate(); p.wait()
