#!/usr/bin/env python3
"""A/B of two drainpipe binaries on the hot paths, in one run.

Usage: bench/compare.py OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS] [SCENARIO,...]

For a change to a hot path: both binaries with their default flags, the server
pinned to CPU 0 and the load to CPU 1 (as bench/run.py does), the two binaries
alternating round by round so drift hits both alike. Scenarios:
  keepalive  wrk -t1 -c64 GET / on `drainpipe origin`
  pipelined  the same with 16 requests per write (wrk Lua script)
  proxy      wrk -t1 -c64 through `drainpipe proxy` to `drainpipe origin`
             (proxy and origin both on CPU 0, the same binary)
  close      ab -c64 without -k (a new connection per request)
Prints, per scenario and binary, the median requests/s and server CPU
microseconds per response (utime+stime from /proc), and NEW ÷ OLD, then the
ratio of each round's back-to-back pair and their median. A comma
list of scenario names runs only those (more rounds of one noisy scenario).
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK = os.sysconf("SC_CLK_TCK")
PIPELINE = (
    "init = function(args)\n"
    "  local r = {}\n"
    "  for i = 1, 16 do r[i] = wrk.format(nil, '/') end\n"
    "  req = table.concat(r)\n"
    "end\n"
    "request = function() return req end\n"
)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(args):
    p = subprocess.Popen(["taskset", "-c", "0", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    p.stdout.readline()
    time.sleep(0.3)
    return p


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def load(kind, url, seconds, script):
    if kind == "close":
        out = subprocess.run(["taskset", "-c", "1", "ab", "-q", "-c", "64", "-t", str(seconds),
                              "-n", "10000000", url], capture_output=True, text=True).stdout
        done = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))
        rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
        return done, rps
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True).stdout
    done = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return done, rps


def one(binary, kind, seconds, script):
    port = free_port()
    procs = [start([binary, "origin", "--listen", f"127.0.0.1:{port}"])]
    target = port
    if kind == "proxy":
        pport = free_port()
        procs.append(start([binary, "proxy", "--listen", f"127.0.0.1:{pport}",
                            "--upstream", f"127.0.0.1:{port}"]))
        target = pport
    try:
        pids = [p.pid for p in procs]
        before = cpu_ticks(pids)
        done, rps = load(kind, f"http://127.0.0.1:{target}/", seconds,
                         script if kind == "pipelined" else None)
        cpu_us = (cpu_ticks(pids) - before) / CLK * 1e6 / max(done, 1)
        return rps, cpu_us
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def main():
    old, new = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    kinds = ["keepalive", "pipelined", "proxy", "close"]
    if len(sys.argv) > 5:
        unknown = set(sys.argv[5].split(",")) - set(kinds)
        if unknown:
            sys.exit(f"compare.py: unknown scenario {sorted(unknown)} (one of {kinds})")
        kinds = [k for k in kinds if k in sys.argv[5].split(",")]
    script = os.path.join(tempfile.mkdtemp(), "pipeline16.lua")
    with open(script, "w") as f:
        f.write(PIPELINE)
    results = {}
    for kind in kinds:
        for _ in range(rounds):
            for name, binary in [("old", old), ("new", new)]:
                results.setdefault((kind, name), []).append(one(binary, kind, seconds, script))
        o, n = results[(kind, "old")], results[(kind, "new")]
        orps, ocpu = statistics.median(r for r, _ in o), statistics.median(c for _, c in o)
        nrps, ncpu = statistics.median(r for r, _ in n), statistics.median(c for _, c in n)
        print(f"{kind:10} old {orps:10.0f} req/s {ocpu:6.2f} us/resp | new {nrps:10.0f} req/s "
              f"{ncpu:6.2f} us/resp | new/old req/s {nrps / orps:.3f}, cpu {ncpu / ocpu:.3f}",
              flush=True)
        # Each round's pair ran back to back: its ratio shows how far the
        # machine's drift reaches (the medians above can differ by more).
        paired = [nr / orr for (orr, _), (nr, _) in zip(o, n)]
        print(f"{'':10} round by round new/old req/s: "
              + " ".join(f"{r:.3f}" for r in paired)
              + f" (median {statistics.median(paired):.3f})", flush=True)


if __name__ == "__main__":
    main()
