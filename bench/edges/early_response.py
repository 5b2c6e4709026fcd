#!/usr/bin/env python3
# Usage: python3 bench/edges/early_response.py PATH/TO/drainpipe
# Figure for issue 12 item 2: an upstream that answers 413 right after the head and stops
# reading; a client uploads 20 MB through `drainpipe proxy`; time until the client sees 413.
import socket, subprocess, sys, threading, time, os
BIN = sys.argv[1]
up = socket.socket(); up.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
up.bind(("127.0.0.1", 0)); up.listen(16); up_port = up.getsockname()[1]
def upstream():
    while True:
        c, _ = up.accept()
        def one(c):
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d: return
                buf += d
            c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
            time.sleep(60)
        threading.Thread(target=one, args=(c,), daemon=True).start()
threading.Thread(target=upstream, daemon=True).start()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([BIN, "proxy", "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{up_port}"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
p.stdout.readline()
time.sleep(0.3)
c = socket.create_connection(("127.0.0.1", port)); c.settimeout(20)
total = 20 * 1024 * 1024
c.sendall(f"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n".encode())
t0 = time.monotonic()
def pump():
    chunk = b"x" * 65536
    try:
        for _ in range(total // 65536): c.sendall(chunk)
    except OSError: pass
threading.Thread(target=pump, daemon=True).start()
got = b""
try:
    while b"too large" not in got:
        d = c.recv(4096)
        if not d: break
        got += d
    line = got.split(b"\r\n")[0].decode(); print(f"early answer: {line!r} after {time.monotonic()-t0:.3f} s")
except socket.timeout:
    print(f"no answer within 20 s (got {got[:40]!r})")
p.terminate(); p.wait()
