#!/usr/bin/env python3
"""Side-by-side benchmarks of issue 7: drainpipe beside nginx, h2o, HAProxy and hyper.

Run through `bench/run.sh` (same arguments). One command: checks for the peers, builds
drainpipe and bench/hyper-hello in release mode, runs every scenario with each server
pinned to CPU 0 (one worker/thread) and the load pinned to CPU 1, and writes
bench/BENCHMARKS.md. Raw outputs, configs and server logs go to bench/out/ (gitignored).

Scenarios (ids for --only):
  memory     idle keep-alive connections: KiB of server memory per connection at 10,000
  proxy      reverse proxy: wrk -t1 -c64 through drainpipe, nginx and HAProxy to one origin
  keepalive  plaintext keep-alive: wrk -t1 -c64, GET / -> Hello, World!
  pipelined  pipelined depth 16: wrk -t1 -c64 with a Lua script of 16 requests
  ab         a new connection per request (ab, no -k) and HTTP/1.0 keep-alive (ab -k)
  c10k       10,000 concurrent keep-alive connections: wrk -t1 -c10000 --latency
  tls-keepalive   TLS keep-alive: wrk -t1 -c64 https://, drainpipe (rustls) beside nginx (OpenSSL)
                  and hyper + tokio-rustls
  tls-handshakes  new TLS connections/s (ECDSA P-256), resumption off and on: drainpipe bench
                  --strategy parallel (a connection per request) against each server
  tls-proxy       TLS listener -> TLS upstream: wrk -t1 -c64 https:// through drainpipe and nginx
  tls-memory      idle TLS keep-alive connections: KiB per connection (idle_memory.py --tls)
  two-cores  both cores, two workers each (issue 17): drainpipe --threads 2, nginx
             worker_processes 2, HAProxy nbthread 2, h2o num-threads 2, all on CPUs 0,1 with
             wrk -t2 -c64 on the same two CPUs; requests/s and server CPU per response

For every figure: server CPU per response (utime+stime of the server's processes from
/proc/PID/stat over the run, divided by the responses) and syscalls per response (perf
stat on the raw_syscalls:sys_enter tracepoint, or strace -c when perf cannot, in a
separate shorter window so that the throughput runs are not traced).
"""

import argparse
import atexit
import ctypes
import datetime
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
HYPER_DIR = HERE / "hyper-hello"
DRAINPIPE = ROOT / "target" / "release" / "drainpipe"
HYPER = HYPER_DIR / "target" / "release" / "hyper-hello"
IDLE_MEMORY = HERE / "idle_memory.py"

SERVER_CPU = "0"
LOAD_CPU = "1"
# The two-cores scenario: the servers (two workers each) and the load share both CPUs.
BOTH_CPUS = "0,1"
TWO_CORE_WORKERS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")
HELLO = b"Hello, World!"
IDLE_CONNECTIONS = 10000

# Debian packages that provide each peer tool.
PEERS = {
    "wrk": "wrk",
    "ab": "apache2-utils",
    "nginx": "nginx",
    "h2o": "h2o",
    "haproxy": "haproxy",
}
HELPERS = {"taskset": "util-linux", "ss": "iproute2", "perf": "linux-perf", "strace": "strace"}

SCENARIOS = ["memory", "proxy", "keepalive", "pipelined", "ab", "c10k",
             "tls-keepalive", "tls-handshakes", "tls-proxy", "tls-memory", "two-cores"]
TLS_SCENARIOS = [s for s in SCENARIOS if s.startswith("tls-")]

# Syscalls itemised in the breakdown (the total comes from raw_syscalls:sys_enter).
SYSCALLS = [
    "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
    "epoll_wait", "epoll_pwait", "epoll_ctl", "accept", "accept4", "close", "shutdown",
    "setsockopt", "getsockopt", "futex", "openat", "newfstat", "newfstatat", "statx",
    "sendfile64", "pread64", "mmap", "munmap", "madvise", "brk", "ioctl", "fcntl",
    "getsockname", "getpeername", "connect", "socket", "io_uring_enter", "sched_yield",
]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- processes

CHILDREN = []  # every Popen this script started; all are ended on exit
_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    # If this runner dies (even by SIGKILL), the direct child gets SIGTERM.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def spawn(cmd, stdout=None, stderr=None, cwd=None, server=False):
    p = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        start_new_session=True,  # own process group: stop() ends the whole group
        # Servers only (they are started while no helper thread runs, so the
        # preexec hook is safe); load tools end by themselves and inherit the
        # runner's raised fd limit.
        preexec_fn=_child_setup if server else None,
    )
    CHILDREN.append(p)
    return p


def stop(p, timeout=5.0):
    """End a child and its process group: SIGTERM, then SIGKILL after `timeout`."""
    if p is None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # leftovers (nginx worker, h2o helper)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    if p in CHILDREN:
        CHILDREN.remove(p)


def cleanup():
    for p in list(CHILDREN):
        stop(p, timeout=2)


STOPPING = False


def _on_signal(signum, _frame):
    global STOPPING
    STOPPING = True
    log(f"signal {signum}: stopping every process started by this run")
    cleanup()
    sys.exit(128 + signum)


def run_capture(cmd, timeout, what):
    """Run a load generator (or helper) to completion; return (rc, stdout+stderr)."""
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p)
        raise BenchError(f"{what}: no result after {timeout:.0f} s: {' '.join(map(str, cmd))}")
    if p in CHILDREN:
        CHILDREN.remove(p)
    return p.returncode, out.decode(errors="replace")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=15):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def children_of(pid):
    """pid and all its descendants."""
    parents = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def cpu_busy_ticks(cpu):
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                return sum(v[:8]) - idle
    return 0


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- servers

class Running:
    """A server started by this script."""

    def __init__(self, name, proc, port, log_path, config_text=None, cmd=None):
        self.name = name
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.config_text = config_text
        self.cmd = cmd
        self.url = f"http://127.0.0.1:{port}/"

    def tls(self):
        """Serves TLS: its URL becomes https://."""
        self.url = f"https://127.0.0.1:{self.port}/"
        return self

    def pids(self):
        return children_of(self.proc.pid)

    def serving_pid(self):
        """The process that serves connections (nginx: the worker, else the leader)."""
        if self.name.startswith("nginx"):
            for pid in self.pids():
                if "worker process" in cmdline(pid):
                    return pid
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        stop(self.proc)


def wait_listening(running, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not running.alive():
            raise BenchError(
                f"{running.name} exited with code {running.proc.returncode} before listening on "
                f"127.0.0.1:{running.port}; log {running.log_path}:\n{tail(running.log_path)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", running.port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    else:
        running.stop()
        raise BenchError(f"{running.name} did not listen on 127.0.0.1:{running.port} within {timeout:.0f} s")
    if running.name.startswith("nginx"):
        for _ in range(100):
            if running.serving_pid() != running.proc.pid:
                break
            time.sleep(0.05)


def check_hello(running):
    """GET / must answer 200 with exactly Hello, World!"""
    if running.url.startswith("https://"):
        import ssl
        ctx = ssl.create_default_context(cafile=str(TLS_DIR / "ca.pem"))
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", running.port, timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
    except OSError as e:
        raise BenchError(f"{running.name}: GET {running.url} failed: {e}")
    finally:
        conn.close()
    if resp.status != 200 or body != HELLO:
        raise BenchError(f"{running.name}: GET {running.url} gave {resp.status} {body[:80]!r}, expected 200 {HELLO!r}")


def server_dir(name):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def launch(name, cmd, config_text=None):
    d = server_dir(name)
    log_path = d / "server.log"
    logf = open(log_path, "ab")
    logf.write(f"\n=== {time.strftime('%F %T')} {' '.join(map(str, cmd))}\n".encode())
    logf.flush()
    proc = spawn(cmd, stdout=logf, stderr=subprocess.STDOUT, server=True)
    logf.close()
    return proc, log_path


def start_drainpipe_origin(port, name="drainpipe"):
    cmd = ["taskset", "-c", SERVER_CPU, DRAINPIPE, "origin", "--listen", f"127.0.0.1:{port}"]
    proc, lp = launch(name, cmd)
    return Running(name, proc, port, lp, cmd=cmd)


def start_drainpipe_two_cores(port, name="drainpipe"):
    cmd = ["taskset", "-c", BOTH_CPUS, DRAINPIPE, "--threads", str(TWO_CORE_WORKERS), "origin",
           "--listen", f"127.0.0.1:{port}"]
    proc, lp = launch(name + "-2", cmd)
    return Running(name, proc, port, lp, cmd=cmd)


def start_hyper(port, name="hyper"):
    cmd = ["taskset", "-c", SERVER_CPU, HYPER, f"127.0.0.1:{port}"]
    proc, lp = launch(name, cmd)
    return Running(name, proc, port, lp, cmd=cmd)


def nginx_conf(d, port, upstream=None, tls=False, workers=1):
    common = f"""# generated by bench/run.py
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{
    # nginx starts closing idle keep-alive connections once fewer than 1/16 of
    # worker_connections are free: 16384 keeps 10,000 idle connections open.
    worker_connections 16384;
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # nginx's default closes a keep-alive connection after 1000 requests; lift it so
    # that every server keeps its connections for the whole run.
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
"""
    listen = f"127.0.0.1:{port}"
    if workers > 1:
        # A listening socket per worker (SO_REUSEPORT), as drainpipe's workers have.
        listen += " reuseport"
    if tls:
        # The same certificate, protocols and resumption as drainpipe's listener:
        # TLS 1.2 and 1.3, a session cache and tickets.
        listen += f""" ssl;
        ssl_certificate {TLS_DIR}/leaf.pem;
        ssl_certificate_key {TLS_DIR}/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on"""
    scheme = "https" if tls else "http"
    upstream_tls = f"""
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {TLS_DIR}/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;""" if tls else ""
    if upstream is None:
        return common + f"""    server {{
        listen {listen};
        location / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}
}}
"""
    return common + f"""    upstream origin {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass {scheme}://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";{upstream_tls}
        }}
    }}
}}
"""


def start_nginx(port, upstream=None, name=None, tls=False, workers=1, cpus=SERVER_CPU):
    name = name or ("nginx-proxy" if upstream else "nginx") + ("-tls" if tls else "")
    d = server_dir(name + (f"-{workers}" if workers > 1 else ""))
    conf = nginx_conf(d, port, upstream, tls, workers)
    (d / "nginx.conf").write_text(conf)
    cmd = ["taskset", "-c", cpus, "nginx", "-p", d, "-e", d / "error.log", "-c", d / "nginx.conf"]
    proc, lp = launch(d.name, cmd)
    r = Running(name, proc, port, lp, config_text=conf, cmd=cmd)
    return r.tls() if tls else r


# --------------------------------------------------------------------------- TLS

TLS_DIR = OUT / "tls"


def make_tls_certs():
    """A CA and a leaf for localhost signed by it, ECDSA P-256 (openssl), in bench/out/tls/:
    ca.pem, leaf.pem (chain: leaf then CA), leaf.key."""
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    d = TLS_DIR
    (d / "leaf.ext").write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "30", "-subj", "/CN=drainpipe bench CA"],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", d / "leaf.key", "-out", d / "leaf.csr", "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", d / "leaf.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
         "-CAcreateserial", "-out", d / "leaf-only.pem", "-days", "30", "-extfile", d / "leaf.ext"],
    ]
    for cmd in steps:
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise BenchError(f"openssl failed: {' '.join(map(str, cmd))}\n{p.stderr[-800:]}")
    (d / "leaf.pem").write_text((d / "leaf-only.pem").read_text() + (d / "ca.pem").read_text())


def start_drainpipe_tls_origin(port, name="drainpipe"):
    cmd = ["taskset", "-c", SERVER_CPU, DRAINPIPE, "origin", "--listen", f"127.0.0.1:{port}",
           "--tls-cert", TLS_DIR / "leaf.pem", "--tls-key", TLS_DIR / "leaf.key"]
    proc, lp = launch(name, cmd)
    return Running(name, proc, port, lp, cmd=cmd).tls()


def start_hyper_tls(port, name="hyper"):
    cmd = ["taskset", "-c", SERVER_CPU, HYPER, f"127.0.0.1:{port}", TLS_DIR / "leaf.pem", TLS_DIR / "leaf.key"]
    proc, lp = launch(name + "-tls", cmd)
    return Running(name, proc, port, lp, cmd=cmd).tls()


def start_nginx_tls(port, name="nginx"):
    return start_nginx(port, name=name, tls=True)


def start_drainpipe_tls_proxy(port, upstream_port, name="drainpipe-proxy-tls"):
    cmd = ["taskset", "-c", SERVER_CPU, DRAINPIPE, "proxy", "--listen", f"127.0.0.1:{port}",
           "--upstream", f"https://localhost:{upstream_port}", "--upstream-ca", TLS_DIR / "ca.pem",
           "--tls-cert", TLS_DIR / "leaf.pem", "--tls-key", TLS_DIR / "leaf.key"]
    proc, lp = launch(name, cmd)
    return Running(name, proc, port, lp, cmd=cmd).tls()


def parse_bench_json(text):
    """`drainpipe bench --json` (one strategy): responses, rate, errors, handshakes."""
    line = next((l for l in text.splitlines() if l.startswith("{")), None)
    if line is None:
        raise BenchError("could not parse drainpipe bench output:\n" + text[-1500:])
    j = json.loads(line)
    errors = {k: v for k, v in j.get("errors_by_kind", {}).items() if v}
    if j.get("non_2xx"):
        errors["non-2xx"] = j["non_2xx"]
    return {
        "responses": j["requests"],
        "seconds": j["elapsed_s"],
        "rps": j["rps"],
        "errors": errors,
        "p50_ms": j["latency_ms"]["p50"],
        "p99_ms": j["latency_ms"]["p99"],
        "handshakes_full": j["tls_handshakes"]["full"],
        "handshakes_resumed": j["tls_handshakes"]["resumed"],
    }


def start_h2o(port, name="h2o", threads=1, cpus=SERVER_CPU):
    d = server_dir(name + (f"-{threads}" if threads > 1 else ""))
    (d / "hello.txt").write_bytes(HELLO)
    conf = f"""# generated by bench/run.py
listen:
  host: 127.0.0.1
  port: {port}
num-threads: {threads}
max-connections: 11000
error-log: {d}/error.log
hosts:
  default:
    paths:
      /:
        file.file: {d}/hello.txt
        file.mime.settypes:
          text/plain: .txt
"""
    (d / "h2o.conf").write_text(conf)
    cmd = ["taskset", "-c", cpus, "h2o", "-c", d / "h2o.conf"]
    proc, lp = launch(d.name, cmd)
    return Running(name, proc, port, lp, config_text=conf, cmd=cmd)


def start_haproxy(port, upstream, name="haproxy"):
    d = server_dir(name)
    conf = f"""# generated by bench/run.py
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:{port}
    default_backend origin

backend origin
    http-reuse always
    server origin {upstream}
"""
    (d / "haproxy.cfg").write_text(conf)
    cmd = ["taskset", "-c", SERVER_CPU, "haproxy", "-db", "-f", d / "haproxy.cfg"]
    proc, lp = launch(name, cmd)
    return Running(name, proc, port, lp, config_text=conf, cmd=cmd)


def start_haproxy_hello(port, name="haproxy", threads=TWO_CORE_WORKERS, cpus=BOTH_CPUS):
    """HAProxy answering `GET /` itself (no backend): `http-request return`, the same body
    bytes as the other servers."""
    d = server_dir(f"{name}-hello-{threads}")
    conf = f"""# generated by bench/run.py
global
    nbthread {threads}
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout client 60s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string "{HELLO.decode()}"
"""
    (d / "haproxy.cfg").write_text(conf)
    cmd = ["taskset", "-c", cpus, "haproxy", "-db", "-f", d / "haproxy.cfg"]
    proc, lp = launch(d.name, cmd)
    return Running(name, proc, port, lp, config_text=conf, cmd=cmd)


def start_drainpipe_proxy(port, upstream, name="drainpipe-proxy"):
    cmd = ["taskset", "-c", SERVER_CPU, DRAINPIPE, "proxy",
           "--listen", f"127.0.0.1:{port}", "--upstream", upstream]
    proc, lp = launch(name, cmd)
    return Running(name, proc, port, lp, cmd=cmd)


def start(starter, *args, **kw):
    port = free_port()
    r = starter(port, *args, **kw)
    wait_listening(r)
    check_hello(r)
    return r


# --------------------------------------------------------------------------- load tools

def parse_wrk(text):
    res = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if m:
        res["responses"] = int(m.group(1))
        scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
        res["seconds"] = float(m.group(2)) * scale
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    errors = {}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        for k, v in zip(["connect", "read", "write", "timeout"], m.groups()):
            if int(v):
                errors[k] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m and int(m.group(1)):
        errors["non-2xx"] = int(m.group(1))
    res["errors"] = errors
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
            res[f"p{pct}_ms"] = float(m.group(1)) * scale
    if "rps" not in res or "responses" not in res:
        raise BenchError("could not parse wrk output:\n" + text[-1500:])
    return res


def parse_ab(text):
    res = {}

    def num(pattern, conv=int):
        m = re.search(pattern, text)
        return conv(m.group(1)) if m else None

    res["responses"] = num(r"Complete requests:\s+(\d+)")
    res["rps"] = num(r"Requests per second:\s+([\d.]+)", float)
    res["seconds"] = num(r"Time taken for tests:\s+([\d.]+)", float)
    errors = {}
    failed = num(r"Failed requests:\s+(\d+)")
    if failed:
        detail = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text)
        errors["failed"] = failed
        if detail:
            for k, v in zip(["connect", "receive", "length", "exceptions"], detail.groups()):
                if int(v):
                    errors[f"failed:{k}"] = int(v)
    non2xx = num(r"Non-2xx responses:\s+(\d+)")
    if non2xx:
        errors["non-2xx"] = non2xx
    write_err = num(r"Write errors:\s+(\d+)")
    if write_err:
        errors["write"] = write_err
    for line in text.splitlines():
        if line.startswith("apr_") or "Connection reset" in line or "timed out" in line.lower():
            errors["ab: " + line.strip()[:100]] = 1
    res["errors"] = errors
    ka = num(r"Keep-Alive requests:\s+(\d+)")
    if ka is not None:
        res["keepalive_requests"] = ka
    if res["responses"] is None or res["rps"] is None:
        raise BenchError("could not parse ab output:\n" + text[-1500:])
    return res


class Syscalls:
    """Counts the syscalls of a set of processes while a load command runs."""

    def __init__(self, prefer=None):
        self.method = None
        if prefer == "strace" and shutil.which("strace"):
            self.method = "strace"
            return
        if shutil.which("perf"):
            rc, out = run_capture(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"], 30, "perf")
            if rc == 0 and re.search(r"^\d+,,raw_syscalls:sys_enter", out, re.M):
                self.method = "perf"
                # Only the tracepoints this kernel has.
                avail = set()
                try:
                    avail = set(Path("/sys/kernel/tracing/available_events").read_text().split())
                except OSError:
                    pass
                self.events = [s for s in SYSCALLS if not avail or f"syscalls:sys_enter_{s}" in avail]
        if self.method is None and shutil.which("strace"):
            self.method = "strace"

    def describe(self):
        if self.method == "perf":
            return ("`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_<name>... -p PIDS -- <load>` "
                    "(tracepoint counters, all threads of the server's processes, exactly over the load command)")
        if self.method == "strace":
            return "`strace -c -f -p PID` attached for the load command's duration"
        return "not measured (neither perf tracepoints nor strace available)"

    def measure(self, pids, load_cmd, timeout, tag, cpus=LOAD_CPU):
        """Returns (load output, {'total': n, 'calls': {name: n}}); the load runs on `cpus`."""
        if self.method == "perf":
            out_file = OUT / "raw" / f"{tag}.perf.csv"
            ev = ",".join(["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in self.events])
            cmd = ["taskset", "-c", cpus, "perf", "stat", "-x,", "-o", out_file, "-e", ev,
                   "-p", ",".join(map(str, pids)), "--"] + load_cmd
            rc, out = run_capture(cmd, timeout, "perf stat")
            counts = {}
            for line in out_file.read_text().splitlines():
                parts = line.split(",")
                if len(parts) >= 3 and parts[0].isdigit():
                    counts[parts[2]] = int(parts[0])
            total = counts.pop("raw_syscalls:sys_enter", None)
            calls = {k.replace("syscalls:sys_enter_", ""): v for k, v in counts.items() if v}
            return rc, out, {"total": total, "calls": calls}
        if self.method == "strace":
            out_file = OUT / "raw" / f"{tag}.strace.txt"
            tracers = [spawn(["strace", "-c", "-f", "-qq", "-o", f"{out_file}.{pid}", "-p", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]
            time.sleep(1.0)
            rc, out = run_capture(["taskset", "-c", cpus] + load_cmd, timeout, "load under strace")
            total, calls = 0, {}
            for pid, t in zip(pids, tracers):
                t.send_signal(signal.SIGINT)
                try:
                    t.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                stop(t)
                try:
                    text = Path(f"{out_file}.{pid}").read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    f = line.split()
                    if len(f) >= 5 and f[-1] != "total" and f[3].isdigit():
                        calls[f[-1]] = calls.get(f[-1], 0) + int(f[3])
                    elif f and f[-1] == "total" and len(f) >= 4 and f[3].isdigit():
                        total += int(f[3])
            return rc, out, {"total": total, "calls": calls}
        rc, out = run_capture(["taskset", "-c", cpus] + load_cmd, timeout, "load")
        return rc, out, {"total": None, "calls": {}}


# --------------------------------------------------------------------------- measuring

class Bench:
    def __init__(self, args, tools):
        self.args = args
        self.tools = tools
        self.quick = args.quick
        self.runs = args.runs
        self.duration = args.duration
        self.window = args.window
        self.results = {}  # scenario -> row name -> data
        self.commands = {}  # scenario -> list of command strings (templates)
        self.problems = []  # (scenario, server, text)
        self.configs = {}  # name -> config text
        self.sys = Syscalls(args.syscall_tool) if args.syscalls else None
        if self.sys and self.sys.method is None:
            self.sys = None
        (OUT / "raw").mkdir(parents=True, exist_ok=True)
        self.raw_index = 0

    # -- helpers
    def have(self, tool):
        return tool in self.tools

    def note_problem(self, scenario, server, text):
        if STOPPING:
            return
        self.problems.append((scenario, server, text))
        log(f"PROBLEM [{scenario}] {server}: {text}")

    def save_raw(self, tag, text):
        self.raw_index += 1
        path = OUT / "raw" / f"{self.raw_index:03d}-{tag}.txt"
        path.write_text(text)
        return path

    def row(self, scenario, name):
        return self.results.setdefault(scenario, {}).setdefault(name, {"runs": [], "sys": None, "extra": {}})

    def record_cmd(self, scenario, text):
        lst = self.commands.setdefault(scenario, [])
        if text not in lst:
            lst.append(text)

    def load_run(self, scenario, server, load_cmd, parser, timeout, cpu_pids=None, extra_pids=None, load_cpus=LOAD_CPU):
        """One measured run: the load on CPU 1 (or on `load_cpus`), the server's CPU time over it.
        With the load on both CPUs (the two-cores scenario), `cpu0_other_pct` and
        `cpu1_other_pct` both hold the busy time of CPUs 0 and 1 outside the server and the
        load tool, as a share of the two CPUs."""
        shared = load_cpus != LOAD_CPU
        if not server.alive():
            raise BenchError(f"{server.name} is not running (exit code {server.proc.returncode}); log: {server.log_path}")
        pids = cpu_pids or server.pids()
        t0 = cpu_ticks(pids)
        e0 = cpu_ticks(extra_pids) if extra_pids else 0
        b0 = cpu_busy_ticks(SERVER_CPU)
        l0 = cpu_busy_ticks(LOAD_CPU)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.time()
        rc, out = run_capture(["taskset", "-c", load_cpus] + load_cmd, timeout, load_cmd[0])
        wall = time.time() - w0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t1 = cpu_ticks(pids)
        e1 = cpu_ticks(extra_pids) if extra_pids else 0
        b1 = cpu_busy_ticks(SERVER_CPU)
        l1 = cpu_busy_ticks(LOAD_CPU)
        # CPU time of the load tool itself (the child just reaped).
        load_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        self.save_raw(f"{scenario}-{server.name}", " ".join(map(str, load_cmd)) + "\n\n" + out)
        try:
            res = parser(out)
        except BenchError as e:
            self.note_problem(scenario, server.name, f"load tool exited {rc}: {e}")
            return None
        server_ticks = t1 - t0
        res["cpu_us"] = server_ticks / CLK_TCK * 1e6 / res["responses"] if res["responses"] else None
        if extra_pids:
            res["extra_cpu_us"] = (e1 - e0) / CLK_TCK * 1e6 / res["responses"] if res["responses"] else None
        # CPU 0 time not spent in the measured processes (other load, softirq, ...)
        res["cpu0_other_pct"] = max(0.0, (b1 - b0 - server_ticks - (e1 - e0)) / CLK_TCK / wall * 100) if wall > 0 else None
        # CPU 1 time not spent in the load tool, and how busy the load tool was.
        res["cpu1_other_pct"] = max(0.0, ((l1 - l0) / CLK_TCK - load_cpu) / wall * 100) if wall > 0 else None
        if shared and wall > 0:
            other = ((b1 - b0 + l1 - l0 - server_ticks - (e1 - e0)) / CLK_TCK - load_cpu) / wall * 100 / 2
            res["cpu0_other_pct"] = res["cpu1_other_pct"] = max(0.0, other)
        res["load_cpu_pct"] = load_cpu / wall * 100 if wall > 0 else None
        res["server_cpu_pct"] = server_ticks / CLK_TCK / wall * 100 if wall > 0 else None
        res["rc"] = rc
        if rc != 0:
            res["errors"][f"exit code {rc}"] = 1
        if res["errors"]:
            self.note_problem(scenario, server.name,
                              f"{', '.join(f'{k}={v}' for k, v in res['errors'].items())} "
                              f"(command: taskset -c {LOAD_CPU} {' '.join(map(str, load_cmd))})")
        if not server.alive():
            self.note_problem(scenario, server.name, f"server exited with code {server.proc.returncode} during the run; log tail:\n{tail(server.log_path)}")
        return res

    def syscall_window(self, scenario, server, load_cmd, parser, timeout, pids=None, load_cpus=LOAD_CPU):
        if not self.sys or not server.alive():
            return None
        pids = pids or server.pids()
        rc, out, sc = self.sys.measure(pids, load_cmd, timeout, f"{scenario}-{server.name}-{self.raw_index + 1}",
                                       cpus=load_cpus)
        self.save_raw(f"{scenario}-{server.name}-syscalls", " ".join(map(str, load_cmd)) + "\n\n" + out + "\n\n" + json.dumps(sc, indent=1))
        try:
            res = parser(out)
        except BenchError as e:
            self.note_problem(scenario, server.name, f"syscall window: {e}")
            return None
        if not res.get("responses") or sc["total"] is None:
            return None
        n = res["responses"]
        return {
            "per_response": sc["total"] / n,
            "calls": {k: v / n for k, v in sc["calls"].items()},
            "responses": n,
            "method": self.sys.method,
        }

    # -- command builders
    def wrk_cmd(self, url, conns=64, duration=None, script=None, latency=False, threads=1):
        cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration or self.duration}s"]
        if script:
            cmd += ["-s", str(script)]
        if latency:
            cmd += ["--latency", "--timeout", "10s"]
        return cmd + [url]

    def ab_cmd(self, url, n, keepalive):
        return ["ab", "-q", "-s", "10", "-r"] + (["-k"] if keepalive else []) + ["-n", str(n), "-c", "64", url]

    # -- origin servers
    def origin_starters(self):
        s = [("drainpipe", start_drainpipe_origin)]
        if self.have("nginx"):
            s.append(("nginx", start_nginx))
        if self.have("h2o"):
            s.append(("h2o", start_h2o))
        s.append(("hyper", start_hyper))
        return s

    def start_origins(self):
        servers = []
        for name, starter in self.origin_starters():
            try:
                servers.append(start(starter))
                log(f"{name} listening on {servers[-1].url} (pid {servers[-1].serving_pid()})")
            except BenchError as e:
                self.note_problem("start", name, str(e))
        for s in servers:
            self.remember(s)
        return servers

    def remember(self, server, tag=None):
        """Keep a server's command line and config for the report (under `tag`, default its name)."""
        tag = tag or server.name
        if server.config_text:
            self.configs[tag] = server.config_text
        self.configs.setdefault("_cmd_" + tag, " ".join(map(str, server.cmd)))

    # -- scenarios
    def run_memory(self, scenario="memory", starters=None, tls=False):
        log(f"scenario {scenario}: idle keep-alive connections{' over TLS' if tls else ''}, fresh server each")
        count = IDLE_CONNECTIONS
        flag = ["--tls"] if tls else []
        self.record_cmd(scenario, f"taskset -c {LOAD_CPU} python3 bench/idle_memory.py SERVER_PID 127.0.0.1:PORT {count}"
                        + (" --tls" if tls else ""))
        for name, starter in starters or self.origin_starters():
            for rep in range(self.args.memory_runs):
                try:
                    server = start(starter)
                except BenchError as e:
                    self.note_problem(scenario, name, str(e))
                    break
                self.remember(server)
                try:
                    pid = server.serving_pid()
                    pids = server.pids()
                    t0 = cpu_ticks(pids)
                    rc, out = run_capture(["taskset", "-c", LOAD_CPU, sys.executable, IDLE_MEMORY, str(pid),
                                           f"127.0.0.1:{server.port}", str(count)] + flag, 300, "idle_memory.py")
                    t1 = cpu_ticks(pids)
                    self.save_raw(f"{scenario}-{name}", out)
                    kv = dict(re.findall(r"(\w+)=([\d.]+)", out))
                    if rc != 0 or "kib_per_connection" not in kv:
                        self.note_problem(scenario, name, f"idle_memory.py exited {rc}: {out.strip()[-400:]}")
                        continue
                    res = {
                        "kib": float(kv["kib_per_connection"]),
                        "rss_before": int(kv["rss_before_kib"]),
                        "rss_after": int(kv["rss_after_kib"]),
                        "still_open": int(kv.get("still_open", count)),
                        "responses": count + 1,
                        "cpu_us": (t1 - t0) / CLK_TCK * 1e6 / (count + 1),
                        "errors": {},
                    }
                    if res["still_open"] < count:
                        res["errors"]["closed before measurement"] = count - res["still_open"]
                        self.note_problem(scenario, name, f"{count - res['still_open']} of {count} idle connections were closed by the server before the measurement")
                    self.row(scenario, name)["runs"].append(res)
                    log(f"  {name}: {res['kib']:.2f} KiB/connection (RSS {res['rss_before']} -> {res['rss_after']} KiB), still open {res['still_open']}")
                finally:
                    server.stop()

    def run_origin_scenarios(self, wanted):
        servers = self.start_origins()
        if not servers:
            return
        try:
            lua = OUT / "pipeline16.lua"
            lua.write_text(
                "-- 16 pipelined GET / per write (wrk counts each response)\n"
                "init = function(args)\n"
                "  local r = {}\n"
                "  for i = 1, 16 do r[i] = wrk.format(nil, \"/\") end\n"
                "  req = table.concat(r)\n"
                "end\n"
                "request = function()\n"
                "  return req\n"
                "end\n"
            )
            self.configs["pipeline16.lua"] = lua.read_text()
            plan = []
            if "keepalive" in wanted and self.have("wrk"):
                plan.append(("keepalive", lambda s, d: self.wrk_cmd(s.url, duration=d), parse_wrk,
                             f"taskset -c {LOAD_CPU} wrk -t1 -c64 -d{self.duration}s http://127.0.0.1:PORT/"))
            if "pipelined" in wanted and self.have("wrk"):
                plan.append(("pipelined", lambda s, d: self.wrk_cmd(s.url, duration=d, script=lua), parse_wrk,
                             f"taskset -c {LOAD_CPU} wrk -t1 -c64 -d{self.duration}s -s bench/out/pipeline16.lua http://127.0.0.1:PORT/"))
            if "ab" in wanted and self.have("ab"):
                # About 3.5 s (a new connection each) and 10 s (keep-alive) per run
                # at the rates seen here: a 1 s run (20,000 and 100,000, before)
                # varied by ±15 % from run to run. Without -k each request leaves
                # a TIME_WAIT on the server (it closes first), so that count
                # stays moderate.
                n_close, n_ka = (5000, 25000) if self.quick else (60000, 1000000)
                plan.append(("ab-close", lambda s, d, n=n_close: self.ab_cmd(s.url, n if d is None else max(1000, n // 4), False), parse_ab,
                             f"taskset -c {LOAD_CPU} ab -q -s 10 -r -n {n_close} -c 64 http://127.0.0.1:PORT/"))
                plan.append(("ab-keepalive", lambda s, d, n=n_ka: self.ab_cmd(s.url, n if d is None else max(5000, n // 10), True), parse_ab,
                             f"taskset -c {LOAD_CPU} ab -q -s 10 -r -k -n {n_ka} -c 64 http://127.0.0.1:PORT/"))
            if "c10k" in wanted and self.have("wrk"):
                plan.append(("c10k", lambda s, d: self.wrk_cmd(s.url, conns=10000, duration=d, latency=True), parse_wrk,
                             f"taskset -c {LOAD_CPU} wrk -t1 -c10000 -d{self.duration}s --latency --timeout 10s http://127.0.0.1:PORT/"))
            self.run_plan(plan, servers)
        finally:
            for s in servers:
                if not s.alive():
                    self.note_problem("server", s.name, f"exited with code {s.proc.returncode}; log tail:\n{tail(s.log_path)}")
                s.stop()

    def run_plan(self, plan, servers, load_cpus=LOAD_CPU):
        """Each (scenario, make command, parser, command template) of `plan` against every
        server, runs interleaved server by server, then a syscall window each; the load
        runs on `load_cpus`."""
        for scenario, make, parser, template in plan:
            log(f"scenario {scenario}: {self.runs} run(s) per server, servers interleaved")
            self.record_cmd(scenario, template)
            for rep in range(self.runs):
                for s in servers:
                    if not s.alive():
                        continue
                    res = self.load_run(scenario, s, make(s, None), parser, timeout=self.duration + 300,
                                        load_cpus=load_cpus)
                    if res:
                        self.row(scenario, s.name)["runs"].append(res)
                        log(f"  run {rep + 1} {s.name}: {fmt_rate(res['rps'])}/s, CPU {res['cpu_us']:.2f} µs/resp"
                            + (f", p99 {res['p99_ms']:.1f} ms" if "p99_ms" in res else "")
                            + (f", TLS handshakes {res['handshakes_full']} full / {res['handshakes_resumed']} resumed"
                               if "handshakes_full" in res else "")
                            + f" [CPU% server {fmt(res['server_cpu_pct'], 0)}, load {fmt(res['load_cpu_pct'], 0)},"
                              f" other {fmt(res['cpu0_other_pct'], 0)}/{fmt(res['cpu1_other_pct'], 0)}]"
                            + (f", errors {res['errors']}" if res["errors"] else ""))
                    time.sleep(0.5)
            if self.sys:
                for s in servers:
                    sc = self.syscall_window(scenario, s, make(s, self.window), parser, timeout=self.window + 300,
                                             load_cpus=load_cpus)
                    if sc:
                        self.row(scenario, s.name)["sys"] = sc
                        log(f"  syscalls {s.name}: {sc['per_response']:.2f}/resp ({top_calls(sc['calls'], 3)})")
                    time.sleep(0.5)

    def run_two_cores(self):
        """Scenario two-cores (issue 17): every server with two workers on CPUs 0 and 1,
        the load (one wrk command for all) on the same two CPUs."""
        if not self.have("wrk"):
            return
        scenario = "two-cores"
        log(f"scenario {scenario}: two workers each on CPUs {BOTH_CPUS}, wrk -t2 -c64 on the same CPUs")
        starters = [("drainpipe", start_drainpipe_two_cores)]
        if self.have("nginx"):
            starters.append(("nginx", lambda p: start_nginx(p, workers=TWO_CORE_WORKERS, cpus=BOTH_CPUS)))
        if self.have("haproxy"):
            starters.append(("haproxy", start_haproxy_hello))
        if self.have("h2o"):
            starters.append(("h2o", lambda p: start_h2o(p, threads=TWO_CORE_WORKERS, cpus=BOTH_CPUS)))
        servers = []
        for name, starter in starters:
            try:
                servers.append(start(starter))
                self.remember(servers[-1], tag=f"{name} (two-cores)")
                log(f"{name} listening on {servers[-1].url} (pids {servers[-1].pids()})")
            except BenchError as e:
                self.note_problem(scenario, name, str(e))
        try:
            plan = [(scenario, lambda s, d: self.wrk_cmd(s.url, duration=d, threads=TWO_CORE_WORKERS), parse_wrk,
                     f"taskset -c {BOTH_CPUS} wrk -t{TWO_CORE_WORKERS} -c64 -d{self.duration}s http://127.0.0.1:PORT/")]
            self.run_plan(plan, servers, load_cpus=BOTH_CPUS)
        finally:
            for s in servers:
                if not s.alive():
                    self.note_problem(scenario, s.name, f"exited with code {s.proc.returncode}; log tail:\n{tail(s.log_path)}")
                s.stop()

    def run_proxy(self, tls=False):
        """Scenario proxy, or tls-proxy with `tls`: TLS on the listener and to the origin."""
        if not self.have("wrk"):
            return
        scenario = "tls-proxy" if tls else "proxy"
        log(f"scenario {scenario}: wrk -t1 -c64 through each proxy to one drainpipe origin (proxy and origin on CPU 0)")
        try:
            origin = start(start_drainpipe_tls_origin if tls else start_drainpipe_origin, name=scenario + "-origin")
        except BenchError as e:
            self.note_problem(scenario, "origin", str(e))
            return
        self.remember(origin)
        upstream = f"127.0.0.1:{origin.port}"
        if tls:
            proxies = [("drainpipe", lambda p: start_drainpipe_tls_proxy(p, origin.port))]
        else:
            proxies = [("drainpipe", lambda p: start_drainpipe_proxy(p, upstream))]
        if self.have("nginx"):
            proxies.append(("nginx", lambda p: start_nginx(p, upstream=upstream, tls=tls)))
        if self.have("haproxy") and not tls:
            proxies.append(("haproxy", lambda p: start_haproxy(p, upstream)))
        scheme, tls_flags = ("https", " --tls-cert leaf.pem --tls-key leaf.key") if tls else ("http", "")
        self.record_cmd(scenario, f"taskset -c {SERVER_CPU} drainpipe origin --listen 127.0.0.1:ORIGIN{tls_flags}")
        self.record_cmd(scenario, f"taskset -c {LOAD_CPU} wrk -t1 -c64 -d{self.duration}s {scheme}://127.0.0.1:PROXY/")
        try:
            for rep in range(self.runs):
                for name, starter in proxies:
                    try:
                        proxy = start(starter)
                    except BenchError as e:
                        self.note_problem(scenario, name, str(e))
                        continue
                    try:
                        self.remember(proxy)
                        counter = UpstreamCounter(origin.port)
                        counter.begin()
                        res = self.load_run(scenario, proxy, self.wrk_cmd(proxy.url), parse_wrk,
                                            timeout=self.duration + 300, extra_pids=origin.pids())
                        counter.end()
                        if res:
                            res["upstream_conns"] = counter.opened
                            res["upstream_max_open"] = counter.max_open
                            self.row(scenario, name)["runs"].append(res)
                            log(f"  run {rep + 1} {name}: {fmt_rate(res['rps'])}/s, proxy CPU {res['cpu_us']:.2f} µs/req, "
                                f"origin CPU {res['extra_cpu_us']:.2f} µs/req, upstream connections {counter.opened} "
                                f"(max {counter.max_open} open) [CPU% proxy {fmt(res['server_cpu_pct'], 0)}, load {fmt(res['load_cpu_pct'], 0)},"
                                f" other {fmt(res['cpu0_other_pct'], 0)}/{fmt(res['cpu1_other_pct'], 0)}]"
                                + (f", errors {res['errors']}" if res["errors"] else ""))
                        if rep == self.runs - 1 and self.sys:
                            sc = self.syscall_window(scenario, proxy, self.wrk_cmd(proxy.url, duration=self.window), parse_wrk,
                                                     timeout=self.window + 300)
                            if sc:
                                self.row(scenario, name)["sys"] = sc
                                log(f"  syscalls {name}: {sc['per_response']:.2f}/req ({top_calls(sc['calls'], 3)})")
                    finally:
                        proxy.stop()
                    time.sleep(0.5)
        finally:
            origin.stop()


def tls_origin_starters(bench):
    s = [("drainpipe", start_drainpipe_tls_origin)]
    if bench.have("nginx"):
        s.append(("nginx", start_nginx_tls))
    if HYPER.exists():
        s.append(("hyper", start_hyper_tls))
    return s


def run_tls(bench, wanted):
    """The TLS scenarios (issue 14): keep-alive, new connections with resumption off and
    on, TLS -> TLS proxy, idle memory; drainpipe (rustls, ring) beside nginx (OpenSSL),
    one certificate (ECDSA P-256, signed by a CA both verify with)."""
    make_tls_certs()
    bench.configs["_cmd_tls-certificates"] = ("openssl: a CA and a leaf for localhost, ECDSA P-256 "
                                              "(bench/run.py make_tls_certs)")
    if "tls-memory" in wanted:
        bench.run_memory("tls-memory", tls_origin_starters(bench), tls=True)
    servers = []
    if "tls-keepalive" in wanted or "tls-handshakes" in wanted:
        for name, starter in tls_origin_starters(bench):
            try:
                servers.append(start(starter))
                bench.remember(servers[-1])
            except BenchError as e:
                bench.note_problem("tls", name, str(e))
    try:
        plan = []
        if "tls-keepalive" in wanted and bench.have("wrk"):
            plan.append(("tls-keepalive", lambda s, d: bench.wrk_cmd(s.url, duration=d), parse_wrk,
                         f"taskset -c {LOAD_CPU} wrk -t1 -c64 -d{bench.duration}s https://127.0.0.1:PORT/"))
        if "tls-handshakes" in wanted:
            for scen, extra in (("tls-new-full", ["--no-resumption"]), ("tls-new-resumed", [])):
                plan.append((scen, lambda s, d, extra=extra: [
                    str(DRAINPIPE), "bench", f"https://localhost:{s.port}/", "--ca", str(TLS_DIR / "ca.pem"),
                    "--strategy", "parallel", "-c", "16", "--duration", str(d or bench.duration), "--json"] + extra,
                    parse_bench_json,
                    f"taskset -c {LOAD_CPU} drainpipe bench https://localhost:PORT/ --ca ca.pem --strategy parallel "
                    f"-c 16 --duration {bench.duration} --json" + (" --no-resumption" if extra else "")))
        bench.run_plan(plan, servers)
    finally:
        for s in servers:
            s.stop()
    if "tls-proxy" in wanted:
        bench.run_proxy(tls=True)


class UpstreamCounter:
    """Distinct TCP connections to the origin port seen during a run: established ones
    sampled with `ss` every 0.1 s, plus those that reached TIME_WAIT during the run."""

    def __init__(self, port):
        self.port = port
        self.seen = set()
        self.max_open = 0
        self.opened = 0
        self._stop = threading.Event()

    def _ss(self, state):
        try:
            out = subprocess.run(
                ["ss", "-tnH", "state", state, f"( dport = :{self.port} or sport = :{self.port} )"],
                capture_output=True, text=True, timeout=10).stdout
        except (subprocess.TimeoutExpired, OSError):
            return set()
        ports = set()
        for line in out.splitlines():
            f = line.split()
            if len(f) < 4:
                continue
            local, peer = f[2].rsplit(":", 1)[1], f[3].rsplit(":", 1)[1]
            # the proxy's end is the port that is not the origin's
            ports.add(int(peer) if int(local) == self.port else int(local))
        return ports

    def _loop(self):
        while not self._stop.is_set():
            est = self._ss("established")
            self.seen |= est
            self.max_open = max(self.max_open, len(est))
            self._stop.wait(0.1)

    def begin(self):
        self.tw_before = self._ss("time-wait")
        self.seen |= self._ss("established")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def end(self):
        self._stop.set()
        self._thread.join(timeout=15)
        est = self._ss("established")
        self.seen |= est
        tw = self._ss("time-wait") - self.tw_before
        self.opened = len(self.seen | tw)


# --------------------------------------------------------------------------- report

def fmt_rate(x):
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def top_calls(calls, n):
    items = sorted(calls.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v:.2f}" for k, v in items) if items else "—"


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


SCENARIO_TITLES = {
    "keepalive": ("1. Plaintext keep-alive", "`wrk -t1 -c64`, `GET /` → `Hello, World!`. wrk's single core on CPU 1 is "
                  "likely the limit here, so **server CPU per response** is what separates the servers."),
    "pipelined": ("2. Pipelined, depth 16", "`wrk -t1 -c64` with a Lua script that writes 16 `GET /` at once; figures are responses/s."),
    "ab-close": ("3a. A new connection per request", "`ab` without `-k` (HTTP/1.0, the server closes after each response), 64 concurrent."),
    "ab-keepalive": ("3b. HTTP/1.0 keep-alive", "`ab -k` (HTTP/1.0 with `Connection: Keep-Alive`), 64 concurrent. "
                     "`ka reqs` is ab's count of responses that kept the connection."),
    "memory": ("4. Idle keep-alive connections", f"{IDLE_CONNECTIONS:,} connections that have each served one `GET /` and sit idle; "
               "growth of the serving process's VmRSS ÷ connections, measured 5 s after the last response was read "
               "(`bench/idle_memory.py`, a fresh server each time; every idle-memory figure here uses this definition). "
               "CPU is per response while the connections were set up."),
    "proxy": ("5. Reverse proxy", "`wrk -t1 -c64` through the proxy to one drainpipe origin; proxy **and** origin share CPU 0. "
              "CPU columns are the proxy's (the origin's is shown separately); syscalls are the proxy's. "
              "`upstream conns` = distinct connections to the origin seen during a run (`ss` sampled every 0.1 s plus new TIME_WAIT entries)."),
    "tls-keepalive": ("7. TLS keep-alive", "`wrk -t1 -c64 https://`, `GET /` → `Hello, World!` over TLS (one certificate, "
                      "ECDSA P-256; drainpipe: rustls with ring; nginx: OpenSSL; hyper: tokio-rustls with ring, "
                      "`bench/hyper-hello ADDR CERT KEY`)."),
    "tls-new-full": ("8a. New TLS connections, full handshakes", "`drainpipe bench --strategy parallel -c 16 --no-resumption` "
                     "(a new connection per request, `Connection: close`, every handshake full); the same client for "
                     "every server, on CPU 1."),
    "tls-new-resumed": ("8b. New TLS connections, resumed sessions", "As 8a with resumption on (the client resumes the session "
                        "of its earlier connections: TLS 1.3 tickets)."),
    "tls-proxy": ("9. TLS listener → TLS upstream proxy", "`wrk -t1 -c64 https://` through the proxy to one drainpipe TLS origin "
                  "(verified with the CA, SNI `localhost`, pooled); proxy **and** origin share CPU 0. Columns as in 5."),
    "tls-memory": ("10. Idle TLS keep-alive connections", f"{IDLE_CONNECTIONS:,} TLS connections that have each served one "
                   "`GET /` and sit idle (`bench/idle_memory.py --tls`); as 4 otherwise."),
    "two-cores": ("11. Both cores, two workers each", f"Every server on CPUs {BOTH_CPUS} (`taskset -c {BOTH_CPUS}`) with "
                  f"{TWO_CORE_WORKERS} workers: drainpipe `--threads {TWO_CORE_WORKERS}` (a socket per worker, SO_REUSEPORT), "
                  f"nginx `worker_processes {TWO_CORE_WORKERS}` with `listen … reuseport`, HAProxy `nbthread {TWO_CORE_WORKERS}` "
                  f"answering `Hello, World!` itself (`http-request return`), h2o `num-threads: {TWO_CORE_WORKERS}`; "
                  f"`GET /` → `Hello, World!`. The load, `wrk -t{TWO_CORE_WORKERS} -c64`, runs on the same two CPUs, so a server "
                  "that spends less CPU per response leaves more to wrk: **server CPU per response** is the figure compared. "
                  "`other load %` is the two CPUs' busy time outside the server and wrk, as a share of both."),
    "c10k": ("6. 10,000 concurrent keep-alive connections", "`wrk -t1 -c10000 --latency --timeout 10s` (wrk, not `drainpipe bench`): "
             "throughput and latency percentiles over the run, connection set-up included."),
}

# Which direction is better for each metric.
HIGHER = "higher"
LOWER = "lower"


def best_peer(rows, key, direction):
    vals = [(v, name) for name, v in rows.items() if name != "drainpipe" and v is not None]
    if not vals:
        return None, None
    return (max if direction == HIGHER else min)(vals)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def scenario_table(b, scen):
    rows = b.results.get(scen, {})
    if not rows:
        return "_not run (see Problems and Missing peers)_\n"
    order = [n for n in ["drainpipe", "nginx", "h2o", "haproxy", "hyper"] if n in rows] + \
        [n for n in rows if n not in ["drainpipe", "nginx", "h2o", "haproxy", "hyper"]]
    med = {n: {} for n in order}
    for n in order:
        runs = rows[n]["runs"]
        for key in ["rps", "cpu_us", "p50_ms", "p99_ms", "kib", "extra_cpu_us", "upstream_conns", "upstream_max_open",
                    "keepalive_requests", "responses", "cpu0_other_pct", "cpu1_other_pct", "load_cpu_pct",
                    "server_cpu_pct"]:
            med[n][key] = median_of(runs, key)
        sc = rows[n]["sys"]
        med[n]["sys"] = sc["per_response"] if sc else None
        med[n]["calls"] = top_calls(sc["calls"], 4) if sc else "—"
        errs = {}
        for r in runs:
            for k, v in r.get("errors", {}).items():
                errs[k] = errs.get(k, 0) + v
        med[n]["errors"] = ", ".join(f"{k} {v}" for k, v in errs.items()) if errs else "0"
        med[n]["nruns"] = len(runs)

    def col_ratio(key, direction):
        best, _ = best_peer({n: med[n][key] for n in order}, key, direction)
        return {n: ratio(med[n][key], best) for n in order}

    lines = []
    if scen in ("memory", "tls-memory"):
        r_kib = col_ratio("kib", LOWER)
        r_cpu = col_ratio("cpu_us", LOWER)
        lines.append("| server | KiB per idle connection | ÷ best peer | RSS before → after (KiB) | still open | CPU µs/response (setup) | ÷ best peer | problems |")
        lines.append("|---|---:|---:|---|---:|---:|---:|---|")
        for n in order:
            runs = rows[n]["runs"]
            rss = f"{runs[0]['rss_before']} → {runs[0]['rss_after']}" if runs else "—"
            still = median_of(runs, "still_open")
            lines.append(f"| {n} | {fmt(med[n]['kib'])} | {fmt(r_kib[n])} | {rss} | {fmt(still, 0)} | "
                         f"{fmt(med[n]['cpu_us'])} | {fmt(r_cpu[n])} | {med[n]['errors']} |")
        return "\n".join(lines) + "\n"

    r_rps = col_ratio("rps", HIGHER)
    r_cpu = col_ratio("cpu_us", LOWER)
    r_sys = col_ratio("sys", LOWER)
    unit = "responses/s" if scen == "pipelined" else "requests/s"
    head = f"| server | {unit} (median) | ÷ best peer | runs | CPU µs/resp | ÷ best peer | syscalls/resp | ÷ best peer | main syscalls per response |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    extra_head = ""
    extra_sep = ""
    if scen in ("proxy", "tls-proxy"):
        extra_head = " origin CPU µs/req | upstream conns | max open upstream |"
        extra_sep = "---:|---:|---:|"
    if scen == "c10k":
        r_p99 = col_ratio("p99_ms", LOWER)
        extra_head = " p50 ms | p99 ms | p99 ÷ best peer |"
        extra_sep = "---:|---:|---:|"
    if scen == "ab-keepalive":
        extra_head = " ka reqs (median) |"
        extra_sep = "---:|"
    lines.append(head + extra_head + " server / load tool CPU % | other load % CPU 0 / CPU 1 | errors (all runs) |")
    lines.append(sep + extra_sep + "---:|---:|---|")
    for n in order:
        m = med[n]
        line = (f"| {n} | {fmt_rate(m['rps'])} | {fmt(r_rps[n])} | {m['nruns']} | {fmt(m['cpu_us'])} | {fmt(r_cpu[n])} | "
                f"{fmt(m['sys'])} | {fmt(r_sys[n])} | {m['calls']} |")
        if scen in ("proxy", "tls-proxy"):
            line += f" {fmt(m['extra_cpu_us'])} | {fmt(m['upstream_conns'], 0)} | {fmt(m['upstream_max_open'], 0)} |"
        if scen == "c10k":
            line += f" {fmt(m['p50_ms'], 1)} | {fmt(m['p99_ms'], 1)} | {fmt(r_p99[n])} |"
        if scen == "ab-keepalive":
            line += f" {fmt(m['keepalive_requests'], 0)} |"
        line += (f" {fmt(m['server_cpu_pct'], 0)} / {fmt(m['load_cpu_pct'], 0)} |"
                 f" {fmt(m['cpu0_other_pct'], 0)} / {fmt(m['cpu1_other_pct'], 0)} | {m['errors']} |")
        lines.append(line)
    return "\n".join(lines) + "\n"


def targets(b):
    """The open issues' targets (17, 14), judged from the medians of this run."""
    out = []

    def med(scen, name, key):
        rows = b.results.get(scen, {})
        if name not in rows:
            return None
        if key == "sys":
            sc = rows[name]["sys"]
            return sc["per_response"] if sc else None
        return median_of(rows[name]["runs"], key)

    def best(scen, key, direction):
        rows = b.results.get(scen, {})
        vals = {n: median_of(r["runs"], key) for n, r in rows.items()}
        return best_peer(vals, key, direction)

    def disturbed(scen, names):
        """Worst median 'other load' of these rows, when above 10 %."""
        rows = b.results.get(scen, {})
        worst = 0.0
        for n in names:
            if n in rows:
                for k in ("cpu0_other_pct", "cpu1_other_pct"):
                    worst = max(worst, median_of(rows[n]["runs"], k) or 0.0)
        return f" (disturbed: other load up to {worst:.0f} %)" if worst > 10 else ""

    def check(label, scen, key, direction, goal, cmp):
        dp = med(scen, "drainpipe", key)
        bv, bn = best(scen, key, direction)
        r = ratio(dp, bv)
        if r is None:
            out.append(f"| {label} | {fmt(dp)} | — | — | {goal} | not evaluated (no drainpipe or peer figure) |")
            return
        ok = cmp(r)
        f = fmt_rate if key == "rps" else fmt
        out.append(f"| {label} | {f(dp)} | {f(bv)} ({bn}) | {r:.2f} | {goal} | {'**met**' if ok else '**not met**'}"
                   f"{disturbed(scen, ['drainpipe', bn])} |")

    out.append("| target | drainpipe | best peer | ratio | goal | result |")
    out.append("|---|---:|---:|---:|---|---|")
    # Issue 17's goals (they replace issue 7's, which they tighten).
    check("keep-alive requests/s", "keepalive", "rps", HIGHER, "≥ 1.05", lambda r: r >= 1.05)
    check("keep-alive server CPU µs/response", "keepalive", "cpu_us", LOWER, "≤ 0.90", lambda r: r <= 0.90)
    check("pipelined ×16 responses/s", "pipelined", "rps", HIGHER, "≥ 1.10", lambda r: r >= 1.10)
    check("new connection per request (ab, no -k) requests/s", "ab-close", "rps", HIGHER, "≥ 1.00", lambda r: r >= 1.00)
    check("HTTP/1.0 keep-alive (ab -k) requests/s", "ab-keepalive", "rps", HIGHER, "≥ 1.00", lambda r: r >= 1.00)
    # Idle memory: ≤ nginx's, and twenty times below hyper's.
    dp = med("memory", "drainpipe", "kib")
    ng = med("memory", "nginx", "kib")
    hy = med("memory", "hyper", "kib")
    if dp is not None and ng is not None:
        r = ratio(dp, ng)
        out.append(f"| idle memory KiB/connection vs nginx | {fmt(dp)} | {fmt(ng)} (nginx) | {fmt(r)} | ≤ 1.00 | "
                   f"{'**met**' if dp <= ng else '**not met**'} |")
    else:
        out.append("| idle memory KiB/connection vs nginx | — | — | — | ≤ 1.00 | not evaluated (no figure) |")
    if dp is not None and hy is not None:
        r = ratio(dp, hy)
        out.append(f"| idle memory KiB/connection vs hyper | {fmt(dp)} | {fmt(hy)} (hyper) | {fmt(r)} | ≤ 0.05 (20× below) | "
                   f"{'**met**' if r is not None and r <= 0.05 else '**not met**'} |")
    else:
        out.append("| idle memory KiB/connection vs hyper | — | — | — | ≤ 0.05 | not evaluated (no figure) |")
    check("reverse proxy requests/s", "proxy", "rps", HIGHER, "≥ 1.20", lambda r: r >= 1.20)
    check("reverse proxy CPU µs/proxied request", "proxy", "cpu_us", LOWER, "≤ 0.85", lambda r: r <= 0.85)
    # Issue 14 (TLS): the peers are nginx (OpenSSL) and hyper + tokio-rustls.
    check("TLS keep-alive server CPU µs/response", "tls-keepalive", "cpu_us", LOWER, "≤ 1.00", lambda r: r <= 1.00)
    check("new TLS connections/s, full handshakes", "tls-new-full", "rps", HIGHER, "≥ 1.00", lambda r: r >= 1.00)
    check("new TLS connections/s, resumed", "tls-new-resumed", "rps", HIGHER, "≥ 1.00", lambda r: r >= 1.00)
    check("TLS → TLS proxy requests/s", "tls-proxy", "rps", HIGHER, "≥ 1.00", lambda r: r >= 1.00)
    # Issue 17: both cores, two workers each; CPU per response compared (the issue sets no figure).
    check("two cores, two workers: server CPU µs/response", "two-cores", "cpu_us", LOWER, "≤ 1.00", lambda r: r <= 1.00)
    return "\n".join(out) + "\n"


def sh(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info():
    lscpu = sh(["lscpu"])
    model = re.search(r"Model name:\s+(.*)", lscpu)
    cpus = re.search(r"^CPU\(s\):\s+(\d+)", lscpu, re.M)
    hyp = re.search(r"Hypervisor vendor:\s+(.*)", lscpu)
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {
        "cpu": model.group(1).strip() if model else "?",
        "cores": cpus.group(1) if cpus else str(os.cpu_count()),
        "hypervisor": hyp.group(1).strip() if hyp else "none",
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "kernel": sh(["uname", "-sr"]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def lock_version(lock_text, crate):
    m = re.search(rf'name = "{crate}"\nversion = "([^"]+)"', lock_text)
    return m.group(1) if m else "?"


def versions(tools):
    v = {}
    git = sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock"])
    v["drainpipe"] = f"{sh([str(DRAINPIPE), '--version'])} (git {git}{', uncommitted changes in crates/' if dirty else ''})"
    try:
        lock = (HYPER_DIR / "Cargo.lock").read_text()
        v["hyper"] = (f"hyper {lock_version(lock, 'hyper')}, hyper-util {lock_version(lock, 'hyper-util')}, "
                      f"tokio {lock_version(lock, 'tokio')} (bench/hyper-hello)")
    except OSError:
        v["hyper"] = "?"
    if "nginx" in tools:
        v["nginx"] = sh(["nginx", "-v"]).splitlines()[0]
    if "h2o" in tools:
        v["h2o"] = sh(["h2o", "--version"]).splitlines()[0]
    if "haproxy" in tools:
        v["haproxy"] = sh(["haproxy", "-v"]).splitlines()[0]
    if "wrk" in tools:
        v["wrk"] = sh(["wrk", "-v"]).splitlines()[0].split("Copyright")[0].strip()
    if "ab" in tools:
        v["ab"] = sh(["ab", "-V"]).splitlines()[0]
    v["rustc"] = sh(["rustc", "-V"])
    if shutil.which("perf"):
        v["perf"] = sh(["perf", "--version"])
    return v


def write_report(b, info, vers, missing, started, path):
    a = b.args
    L = []
    L.append("# drainpipe benchmarks beside nginx, h2o, HAProxy and hyper\n")
    L.append("Generated by `bench/run.sh` — do not edit by hand; rerun it to regenerate "
             "(prose for the notes section below lives in `bench/notes.md`).\n")
    if a.quick:
        L.append("> **QUICK RUN (`--quick`)**: 1 run of "
                 f"{a.duration} s per figure, smaller `ab` counts — a smoke test, not figures to compare.\n")
    disturbed = []
    for scen, rows in b.results.items():
        for name, row in rows.items():
            o0 = median_of(row["runs"], "cpu0_other_pct")
            o1 = median_of(row["runs"], "cpu1_other_pct")
            worst = max(o0 or 0, o1 or 0)
            if worst > 10:
                disturbed.append(f"{scen}/{name} {worst:.0f} %")
    if disturbed:
        L.append("> **Disturbed run**: other processes used more than 10 % of a benchmark CPU during "
                 f"{len(disturbed)} figure(s) (worst: {', '.join(sorted(disturbed, key=lambda x: -float(x.split()[-2]))[:4])}). "
                 "Compare ratios within a row group with care, and rerun on a quiet machine for figures to keep.\n")
    elapsed = time.time() - started
    L.append("## Machine\n")
    L.append("| | |\n|---|---|")
    L.append(f"| CPU | {info['cpu']} ({info['cores']} CPUs, hypervisor: {info['hypervisor']}) |")
    L.append(f"| memory | {info['memory']} |")
    L.append(f"| kernel | {info['kernel']} |")
    L.append(f"| date | {info['date']} |")
    L.append(f"| load average at start / end | {' '.join(info['loadavg'])} / {' '.join(Path('/proc/loadavg').read_text().split()[:3])} |")
    L.append(f"| duration of this run | {elapsed / 60:.1f} min |")
    L.append("")
    L.append("## Versions\n")
    L.append("| | |\n|---|---|")
    for k, v in vers.items():
        L.append(f"| {k} | {v} |")
    L.append("")
    if missing:
        L.append("## Missing peers\n")
        L.append("Not installed, so their rows are absent: " + ", ".join(f"`{t}`" for t in missing) +
                 f". Install with `apt-get install -y {' '.join(sorted(set(PEERS.get(t, HELPERS.get(t, t)) for t in missing)))}`.\n")
    L.append("## Method\n")
    L.append(f"- Every server is pinned to CPU {SERVER_CPU} with `taskset -c {SERVER_CPU}` and runs one worker/thread: "
             "drainpipe with its default flags (one worker per CPU it may run on: one, pinned), nginx `worker_processes 1`, h2o `num-threads: 1`, "
             "HAProxy `nbthread 1`, hyper on a current-thread tokio runtime. The load (wrk, ab, idle_memory.py) is pinned "
             f"to CPU {LOAD_CPU} with `taskset -c {LOAD_CPU}`. Except in scenario 11 (two-cores): every server "
             f"runs two workers on CPUs {BOTH_CPUS} and the load shares those CPUs.")
    L.append(f"- Throughput: median of {a.runs} run(s) of {a.duration} s (ab: a fixed request count), servers interleaved run by run. "
             "`÷ best peer` divides a row's figure by the best peer's (highest throughput; lowest CPU, syscalls, memory, latency); "
             "for drainpipe's row that is the issue's ratio.")
    L.append("- CPU µs/resp: utime+stime of the server's processes (`/proc/PID/stat`, all threads and children, "
             f"{CLK_TCK} Hz ticks) over the run ÷ responses the load tool completed; median over runs.")
    L.append(f"- Syscalls/resp: {b.sys.describe() if b.sys else 'not measured'}; a separate {a.window} s window "
             "(ab: a quarter of the request count) after the throughput runs, so tracing never touches the throughput figures. "
             "`main syscalls` lists the most frequent ones per response.")
    L.append("- `server / load tool CPU %`: how busy the server's processes (on CPU 0) and wrk/ab (on CPU 1) were during "
             "the run. A load tool near 100 % means the load generator, not the server, set the throughput; then CPU per "
             "response is the figure that separates servers.")
    L.append("- `other load % CPU 0 / CPU 1`: busy time on each CPU outside the server (CPU 0) and outside the load tool "
             "(CPU 1): softirq and anything else running on the machine. More than a few percent means the figure was "
             "disturbed (e.g. a build running at the same time); rerun.")
    L.append("- The peers run their usual best configuration for a hello-world: no access logs; nginx's "
             "`keepalive_requests` (client and upstream) lifted from 1000, so no server closes keep-alive connections mid-run; "
             "h2o serves a static file holding `Hello, World!` (no mruby); hyper enables `pipeline_flush`. "
             "Configs are listed at the end.")
    L.append("")
    L.append("## Results\n")
    for scen in ["keepalive", "pipelined", "ab-close", "ab-keepalive", "memory", "proxy", "c10k",
                 "tls-keepalive", "tls-new-full", "tls-new-resumed", "tls-proxy", "tls-memory", "two-cores"]:
        if scen not in b.results and scen not in b.commands:
            continue
        title, desc = SCENARIO_TITLES[scen]
        L.append(f"### {title}\n")
        L.append(desc + "\n")
        cmds = b.commands.get(scen if not scen.startswith("ab-") else scen, [])
        if cmds:
            L.append("```sh\n" + "\n".join(cmds) + "\n```\n")
        L.append(scenario_table(b, scen))
    L.append("## Targets (issues 17 and 14: drainpipe ÷ best peer, same run)\n")
    L.append(targets(b))
    L.append("## Problems seen during the run\n")
    if b.problems:
        for scen, server, text in b.problems:
            L.append(f"- [{scen}] **{server}**: " + text.replace("\n", "\n  "))
    else:
        L.append("None: no failed requests, socket errors, non-2xx responses or server exits.")
    L.append("")
    notes = HERE / "notes.md"
    if notes.exists():
        L.append("## Notes\n")
        L.append(notes.read_text().strip() + "\n")
    L.append("## Commands and configurations\n")
    L.append("```sh\n" + "\n".join(["bench/run.sh" + (" --quick" if a.quick else "")]) + "\n```\n")
    for k in sorted(b.configs):
        v = b.configs[k]
        if k.startswith("_cmd_"):
            L.append(f"- {k[5:]}: `{v}`")
    L.append("")
    for k in sorted(b.configs):
        if k.startswith("_cmd_"):
            continue
        lang = "lua" if k.endswith(".lua") else ("yaml" if k.startswith("h2o") else "")
        L.append(f"<details><summary>{k}</summary>\n\n```{lang}\n{b.configs[k].rstrip()}\n```\n\n</details>\n")
    L.append(f"Raw outputs of this run: `bench/out/raw/` (not in the repository).\n")
    path.write_text("\n".join(L).replace(str(ROOT) + "/", ""))
    (OUT / "results.json").write_text(json.dumps(
        {"machine": info, "versions": vers, "results": b.results, "problems": b.problems}, indent=1, default=str))


# --------------------------------------------------------------------------- main

def check_tools():
    tools, missing = set(), []
    for t in list(PEERS) + list(HELPERS):
        if shutil.which(t):
            tools.add(t)
        elif t in PEERS:
            missing.append(t)
    if missing:
        pkgs = " ".join(sorted({PEERS[t] for t in missing}))
        log(f"missing peers: {', '.join(missing)} — install with: apt-get install -y {pkgs}  (continuing without them)")
    for t in ("taskset", "ss"):
        if t not in tools:
            raise BenchError(f"`{t}` is required: apt-get install -y {HELPERS[t]}")
    if "perf" not in tools and "strace" not in tools:
        log("neither perf nor strace found: syscalls will not be measured (apt-get install -y linux-perf strace)")
    return tools, missing


def build(args):
    if args.no_build:
        log("--no-build: using the existing binaries")
    else:
        log("building drainpipe (cargo build --release -j2 --bin drainpipe)")
        p = subprocess.run(["cargo", "build", "--release", "-j2", "--bin", "drainpipe"], cwd=ROOT, timeout=1800)
        if p.returncode != 0:
            raise BenchError("cargo build of drainpipe failed (see above); fix it, or rerun with --no-build to use the last binary")
        log("building bench/hyper-hello (cargo build --release -j2)")
        p = subprocess.run(["cargo", "build", "--release", "-j2", "--manifest-path", str(HYPER_DIR / "Cargo.toml")], cwd=HYPER_DIR, timeout=1800)
        if p.returncode != 0:
            raise BenchError("cargo build of bench/hyper-hello failed (see above)")
    if not DRAINPIPE.exists():
        raise BenchError(f"{DRAINPIPE} does not exist: build it (rerun without --no-build)")
    if not HYPER.exists():
        # Only the cleartext origin scenarios start hyper; they note the problem.
        log(f"warning: {HYPER} does not exist (rerun without --no-build): hyper's rows will be missing")


def main():
    ap = argparse.ArgumentParser(description="drainpipe side-by-side benchmarks (issue 7): writes bench/BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 run of 3 s per figure, smaller ab counts")
    ap.add_argument("--runs", type=int, help="runs per throughput figure (default 3; --quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 10; --quick 3)")
    ap.add_argument("--window", type=int, help="seconds of the syscall-counting window (default 3; --quick 2)")
    ap.add_argument("--memory-runs", type=int, help="fresh-server runs of the idle-memory probe (default: as --runs)")
    ap.add_argument("--only", help=f"comma-separated scenarios: {','.join(SCENARIOS)} (default all)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    ap.add_argument("--no-syscalls", dest="syscalls", action="store_false", help="skip the syscall-counting windows")
    ap.add_argument("--syscall-tool", choices=["perf", "strace"],
                    help="how to count syscalls (default: perf tracepoints when they work, else strace -c)")
    ap.add_argument("--out", default=str(HERE / "BENCHMARKS.md"), help="report path (default bench/BENCHMARKS.md)")
    args = ap.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    args.window = args.window or (2 if args.quick else 3)
    args.memory_runs = args.memory_runs or args.runs
    wanted = SCENARIOS if not args.only else [s.strip() for s in args.only.split(",")]
    bad = [s for s in wanted if s not in SCENARIOS]
    if bad:
        raise BenchError(f"unknown scenario(s) {bad}; known: {', '.join(SCENARIOS)}")
    if os.cpu_count() < 2:
        raise BenchError("needs at least 2 CPUs (server on CPU 0, load on CPU 1)")

    atexit.register(cleanup)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    started = time.time()
    # bench/out/ is scratch space for one run: configs, server logs, raw outputs.
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    tools, missing = check_tools()
    build(args)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < IDLE_CONNECTIONS + 200:
        log(f"warning: the fd hard limit is {hard}; 10,000-connection scenarios need about {IDLE_CONNECTIONS + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # This runner (and ss, samplers) stay off the servers' CPU.
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    info = machine_info()
    vers = versions(tools)
    b = Bench(args, tools)
    log(f"syscalls: {b.sys.method if b.sys else 'not measured'}; runs {args.runs} x {args.duration} s")
    try:
        if "memory" in wanted:
            b.run_memory()
        if "proxy" in wanted:
            b.run_proxy()
        origin_scen = [s for s in wanted if s in ("keepalive", "pipelined", "ab", "c10k")]
        if origin_scen:
            b.run_origin_scenarios(origin_scen)
        if "two-cores" in wanted:
            b.run_two_cores()
        tls_scen = [s for s in wanted if s in TLS_SCENARIOS]
        if tls_scen:
            if shutil.which("openssl"):
                run_tls(b, tls_scen)
            else:
                b.note_problem("tls", "openssl", "not installed (apt-get install -y openssl): TLS scenarios skipped")
    except BaseException:
        cleanup()
        partial = OUT / "BENCHMARKS.partial.md"
        write_report(b, info, vers, missing, started, partial)
        log(f"the run did not finish: {args.out} left as it was; what was measured is in {partial}")
        raise
    cleanup()
    out = Path(args.out)
    write_report(b, info, vers, missing, started, out)
    log(f"wrote {out} ({(time.time() - started) / 60:.1f} min)")
    text = out.read_text()
    start_i = text.find("## Results")
    end_i = text.find("## Notes") if "## Notes" in text else text.find("## Commands and configurations")
    print()
    for line in text[:text.find("## Machine")].splitlines():
        if line.startswith(">"):
            print(line)
    print(text[start_i:end_i].rstrip())


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench/run.sh: error: {e}", file=sys.stderr)
        cleanup()
        sys.exit(1)
