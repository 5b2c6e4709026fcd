#!/usr/bin/env python3
"""Instructions per request of drainpipe binaries on the hot paths (callgrind).

Usage: bench/callgrind.py SCENARIO BINARY [BINARY...] [--requests N] [--top K] [--cache | --footprint]

SCENARIO is one of:
  keepalive  `drainpipe origin` under callgrind, N keep-alive requests (GET /)
  pipelined  the same, 16 requests in flight per connection
  close      the same with a new connection per request (`Connection:
             close`, 8 at once): accept, serve, close
  http10     HTTP/1.0 keep-alive as `ab -k` makes it (the load is `ab -k -c 8`:
             four header fields, `Connection: Keep-Alive` answered in kind)
  tls-keepalive  keepalive over TLS (bench/run.py's ECDSA P-256 certificate;
             the load's handshakes happen before the counters are zeroed)
  proxy      `drainpipe proxy` under callgrind in front of `drainpipe origin`
             (the origin runs natively), N keep-alive requests through it
  proxy-log  the same with the access log on (combined, to a file): the
             difference from `proxy` is what logging costs

The server runs with `--threads 1` (one thread: a repeatable count) and
`drainpipe bench` (the first binary given) makes the load. A binary named
hyper-hello (bench/hyper-hello/target/release/hyper-hello) is run as that
peer's origin, for keepalive and pipelined. The counters are
zeroed after a warm-up and read when the server exits after exactly N more
requests, so start-up is not counted. Instruction counts do not depend on what else the machine does, so
this is the measurement to use for a hot-path change while other work runs.
Prints instructions per request for each binary and, with --top, the K
functions (self cost) that grew and shrank most from
the first binary to the last (with one binary: its K most expensive).

With --cache, valgrind also simulates the caches (this machine's sizes) and
prints misses per request: first-level instruction and data (I1, D1) and
last-level (LL); with --top, the functions ranked by their own I1 misses.
Two binaries can run the same instructions and differ in time by how much
code and memory each request touches; this shows it where a VM has no
hardware counters. A hot path whose code does not fit the 32 KiB I1 cache
misses on nearly every line it runs, request after request.

With --footprint, callgrind records every instruction's address and the
script prints the hot code: the 64-byte lines run at least once per batch
(a request, or 16 pipelined ones), their total in KiB against the 32 KiB
I1, and, with --top, the functions and source files that hold the most of
them (an inlined helper counts under its own file). The hot footprint, not
the instruction count, is what a change must shrink to miss the
instruction cache less.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import free_port  # noqa: E402  (one way to pick a port)
from run import TLS_DIR, make_tls_certs  # noqa: E402  (one way to make the certificate)


SCENARIOS = ("keepalive", "pipelined", "close", "http10", "tls-keepalive", "proxy", "proxy-log")


def wait_port(port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def load(client, port, requests, scenario, tls=False):
    scheme = "https" if tls else "http"
    if scenario == "http10":
        subprocess.run(["ab", "-q", "-k", "-c", "8", "-n", str(requests),
                        f"http://127.0.0.1:{port}/"],
                       check=True, capture_output=True, timeout=600)
        return
    cmd = [client, "bench", f"{scheme}://127.0.0.1:{port}/", "-c", "8", "-n", str(requests)]
    if tls:
        cmd += ["--insecure"]
    if scenario == "pipelined":
        cmd += ["--strategy", "pipelined", "-d", "16"]
    elif scenario == "close":
        cmd += ["--strategy", "parallel"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)


def certificate():
    """The bench's ECDSA P-256 leaf for localhost/127.0.0.1 (bench/run.py's,
    made once in bench/out/tls/)."""
    if not (TLS_DIR / "leaf.pem").exists():
        make_tls_certs()
    return str(TLS_DIR / "leaf.pem"), str(TLS_DIR / "leaf.key")


def measure(scenario, binary, client, requests, outdir, cache=False, footprint=False):
    out = os.path.join(outdir, f"callgrind.{len(os.listdir(outdir))}")
    procs = []
    try:
        oport = free_port()
        origin = [binary, "--threads", "1", "origin", "--listen", f"127.0.0.1:{oport}"]
        tls = scenario == "tls-keepalive"
        if tls:
            cert, key = certificate()
            origin += ["--tls-cert", cert, "--tls-key", key]
        if "hyper-hello" in os.path.basename(binary):
            # bench/hyper-hello (one current-thread runtime): the peer to
            # compare keepalive and pipelined with, function by function.
            if scenario.startswith("proxy"):
                sys.exit("callgrind.py: hyper-hello is an origin; no proxy scenario")
            origin = [binary, f"127.0.0.1:{oport}"] + (list(certificate()) if tls else [])
        target = oport
        under = origin
        if scenario.startswith("proxy"):
            procs.append(subprocess.Popen(origin, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            wait_port(oport)
            target = free_port()
            under = [binary, "--threads", "1", "proxy", "--listen", f"127.0.0.1:{target}",
                     "--upstream", f"127.0.0.1:{oport}"]
            if scenario == "proxy-log":
                config = os.path.join(outdir, "proxy.toml")
                with open(config, "w") as f:
                    f.write(f'[[listener]]\nlisten = "127.0.0.1:{target}"\n\n'
                            f'[[upstream]]\nname = "o"\nservers = ["127.0.0.1:{oport}"]\n\n'
                            f'[[route]]\npath = "/"\nupstream = "o"\n\n'
                            f'[access_log]\nformat = "combined"\n'
                            f'path = "{outdir}/access.log"\n')
                under = [binary, "--threads", "1", "proxy", "--config", config]
        vg = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                               f"--dump-instr={'yes' if footprint else 'no'}",
                               "--compress-pos=no",
                               f"--cache-sim={'yes' if cache else 'no'}",
                               *under],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(vg)
        wait_port(target)
        load(client, target, 2000, scenario, tls)
        subprocess.run(["callgrind_control", "--zero", str(vg.pid)], check=True,
                       capture_output=True)
        load(client, target, requests, scenario, tls)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    # The termination dump holds what ran since the zeroing (a dump asked for
    # with callgrind_control --dump attributes everything to the outermost
    # frame in valgrind 3.19); the shutdown it includes is a few instructions
    # per request.
    if footprint:
        batch = 16 if scenario == "pipelined" else 1
        return hot_lines(out, requests // batch)
    per, funcs = self_costs(out, requests)
    if not cache:
        return per, funcs, None
    # With --top, the functions are ranked by their own I1 misses.
    return per, self_costs(out, requests, "I1mr")[1], cache_misses(out, requests)


def hot_lines(path, batches):
    """The 64-byte code lines of a --dump-instr=yes, --compress-pos=no
    output run at least once per batch: (their count, {function: lines},
    {source file: lines}). A line shared by two functions counts for each in
    the breakdowns, once in the total."""
    names, files, fn, fi = {}, {}, None, None
    counts, owners = {}, {}
    after_call = False

    def named(table, m):
        if m.group(2):
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), m.group(0))
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = named(names, re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip()))
            elif line.startswith(("fl=", "fi=", "fe=")):
                fi = named(files, re.match(r"f[lie]=\((\d+)\)(?: (.*))?", line.strip()))
            elif line.startswith(("cfn=", "cfi=", "cfl=")):
                m = re.match(r"c(f[nil])=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(3):
                    (names if m.group(1) == "fn" else files)[m.group(2)] = m.group(3)
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith("0x"):
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                addr, ir = int(parts[0], 16), int(parts[2])
                key = addr >> 6
                counts[key] = max(counts.get(key, 0), ir)
                owners.setdefault(key, set()).add((fn, fi))
    hot = [k for k, c in counts.items() if c >= batches]
    by_fn, by_file = {}, {}
    for k in hot:
        for fn in {fn for fn, _ in owners[k]}:
            by_fn[fn] = by_fn.get(fn, 0) + 1
        for fi in {fi for _, fi in owners[k]}:
            by_file[fi] = by_file.get(fi, 0) + 1
    return len(hot), by_fn, by_file


def cache_misses(path, requests):
    """Cache misses per request from a --cache-sim=yes output's totals."""
    events, totals = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("totals:", "summary:")):
                totals = [int(x) for x in line.split()[1:]]
    got = dict(zip(events, totals))

    def per(*names):
        return sum(got.get(n, 0) for n in names) / requests
    return {"I1": per("I1mr"), "D1": per("D1mr", "D1mw"), "LL": per("ILmr", "DLmr", "DLmw")}


def self_costs(path, requests, event="Ir"):
    """Total and per-function self cost (instructions per request, or another
    event's count) of a callgrind output file. The cost line after a `calls=`
    line is the call's inclusive cost and belongs to the callee, so it is
    skipped."""
    names, funcs, current, after_call, total, column = {}, {}, None, False, 0, 1
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                column = 1 + line.split()[1:].index(event)
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                current = names.get(m.group(1), line)
            elif line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) > column and current is not None:
                    cost = int(parts[column])
                    funcs[current] = funcs.get(current, 0) + cost
                    total += cost
    return total / requests, {k: v / requests for k, v in funcs.items()}


def main():
    args = sys.argv[1:]
    requests, top = 20000, 0
    cache = "--cache" in args
    if cache:
        args.remove("--cache")
    footprint = "--footprint" in args
    if footprint:
        args.remove("--footprint")
    if "--requests" in args:
        i = args.index("--requests")
        requests = int(args[i + 1])
        del args[i:i + 2]
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    scenario, binaries = args[0], args[1:]
    if scenario not in SCENARIOS:
        sys.exit(f"callgrind.py: unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    outdir = tempfile.mkdtemp()
    results = []
    if footprint:
        for binary in binaries:
            lines, by_fn, by_file = measure(scenario, binary, binaries[0], requests, outdir,
                                            footprint=True)
            print(f"{scenario:10} {lines:6} hot lines = {lines * 64 / 1024:.1f} KiB  {binary}",
                  flush=True)
            for title, table in (("functions", by_fn), ("source files", by_file)):
                if top:
                    print(f"  hot lines by {title}:")
                    for n, v in sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:top]:
                        print(f"    {v:5}  {n[:150]}")
        return
    for binary in binaries:
        per, funcs, misses = measure(scenario, binary, binaries[0], requests, outdir, cache)
        results.append(funcs)
        extra = ""
        if misses:
            extra = "  misses/request " + " ".join(f"{k} {v:.1f}" for k, v in misses.items())
        print(f"{scenario:10} {per:10.0f} instructions/request{extra}  {binary}", flush=True)
    if top and len(results) == 1:
        print(f"most expensive (self cost), {'I1 misses' if cache else 'instructions'}/request:")
        for n, v in sorted(results[0].items(), key=lambda kv: kv[1], reverse=True)[:top]:
            print(f"  {v:8.0f}  {n[:150]}")
    if top and len(results) > 1:
        first, last = results[0], results[-1]
        names = set(first) | set(last)
        grew = sorted(names, key=lambda n: last.get(n, 0) - first.get(n, 0), reverse=True)
        unit = 'I1 misses' if cache else 'instructions'
        print(f"grew most ({binaries[0]} -> {binaries[-1]}), {unit}/request:")
        for n in grew[:top]:
            print(f"  {first.get(n, 0):8.0f} -> {last.get(n, 0):8.0f}  {n[:150]}")
        print("shrank most:")
        for n in reversed(grew[-top:]):
            print(f"  {first.get(n, 0):8.0f} -> {last.get(n, 0):8.0f}  {n[:150]}")


if __name__ == "__main__":
    main()
