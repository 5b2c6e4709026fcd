#!/usr/bin/env python3
"""Server memory per idle keep-alive connection.

Usage: idle_memory.py PID HOST:PORT [COUNT] [--tls]

The definition every idle-memory figure in bench/BENCHMARKS.md uses: the growth
of the serving process's resident memory (VmRSS of PID) per idle keep-alive
connection, measured SETTLE_SECONDS (5 s) after the connections went idle, at
COUNT (10,000 by default) connections. Each connection makes one `GET /`
request (so it has served a request and sits idle in keep-alive); the clock of
the 5 s starts when the last response was read. The connections stay open
until the measurement is taken (and are counted, so a server that closed them
cannot look smaller than it is). With --tls every connection is TLS (any
certificate accepted; sessions resumed as a client would), so the figure is
per idle TLS keep-alive connection.
"""
import resource
import socket
import ssl
import sys
import time

# Seconds between the last response read and the measurement.
SETTLE_SECONDS = 5


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def main():
    args = [a for a in sys.argv[1:] if a != "--tls"]
    tls = "--tls" in sys.argv[1:]
    pid = int(args[0])
    host, port = args[1].rsplit(":", 1)
    count = int(args[2]) if len(args) > 2 else 10000
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])

    def connect():
        s = socket.create_connection((host, int(port)))
        return context.wrap_socket(s, server_hostname="localhost") if context else s

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 100), max(hard, count + 100)))
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    # Warm up: one connection, so lazily built process state is not counted.
    warm = connect()
    warm.sendall(request)
    warm.recv(4096)
    time.sleep(0.5)
    before = rss_kib(pid)
    conns = []
    for i in range(count):
        s = connect()
        s.sendall(request)
        conns.append(s)
    for c in conns:
        c.settimeout(10)
        if not c.recv(4096):
            raise SystemExit("server closed a connection")
    time.sleep(SETTLE_SECONDS)
    after = rss_kib(pid)
    per = (after - before) / count
    # A server that closed idle connections before the measurement would look
    # smaller than it is: count the connections still open (no EOF pending).
    still_open = 0
    for c in conns:
        if context:
            c = socket.socket(fileno=socket.dup(c.fileno()))
        c.setblocking(False)
        try:
            if c.recv(1, socket.MSG_PEEK):
                still_open += 1  # unexpected bytes, but the connection is open
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    print(
        f"connections={count} rss_before_kib={before} rss_after_kib={after} "
        f"kib_per_connection={per:.2f} still_open={still_open}"
    )
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
