#!/usr/bin/env python3
"""User and system CPU per response, drainpipe beside its peers, in one run.

Usage: bench/cpu_split.py [ROUNDS] [SECONDS]

What `bench/run.sh` reports as CPU µs per response is user plus system time.
The system part is the kernel's work for the same two syscalls per response
(one read, one write) and is nearly the same for every server; only the user
part is the server's own code. This splits the two, so a CPU target can be
checked against what is left to win: a target below the kernel's share alone
cannot be met by any user-space change.

Scenarios (server pinned to CPU 0, load on CPU 1, `wrk -t1 -c64`, the servers
alternating round by round, medians of ROUNDS runs of SECONDS, default 3 × 5):
  keepalive  drainpipe origin, bench/hyper-hello, nginx (`return 200`)
  proxy      drainpipe proxy and nginx (`proxy_pass`, keepalive 64) in front
             of the same `drainpipe origin` (also on CPU 0; only the
             proxy's own process is counted)
Prints, per server, requests/s, user and system µs per response.
"""
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from callgrind import wait_port  # noqa: E402  (one way to wait for a server)
from compare import CLK, free_port, load  # noqa: E402  (one way to load and pick ports)
from run import nginx_conf  # noqa: E402  (one nginx configuration)

ROOT = Path(__file__).resolve().parent.parent
DRAINPIPE = ROOT / "target" / "release" / "drainpipe"
HYPER = ROOT / "bench" / "hyper-hello" / "target" / "release" / "hyper-hello"
OUT = ROOT / "bench" / "out" / "cpu-split"


def spawn(args):
    p = subprocess.Popen(["taskset", "-c", "0", *map(str, args)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p


def ticks(pid):
    """(user, system) clock ticks of `pid`, all its threads together."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def nginx(port, upstream=None):
    d = OUT / ("nginx-proxy" if upstream else "nginx")
    d.mkdir(parents=True, exist_ok=True)
    (d / "nginx.conf").write_text(nginx_conf(d, port, upstream))
    return ["nginx", "-p", d, "-e", d / "error.log", "-c", d / "nginx.conf"]


def worker_pid(proc, name):
    """nginx's one worker (the master only forks it); others: the process."""
    if name != "nginx":
        return proc.pid
    for _ in range(100):
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                              text=True).stdout.split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("nginx started no worker")


def one(scenario, name, seconds):
    procs = []
    try:
        port = free_port()
        if scenario == "keepalive":
            cmd = {"drainpipe": [DRAINPIPE, "origin", "--listen", f"127.0.0.1:{port}"],
                   "hyper": [HYPER, f"127.0.0.1:{port}"],
                   "nginx": nginx(port)}[name]
        else:
            oport = free_port()
            procs.append(spawn([DRAINPIPE, "origin", "--listen", f"127.0.0.1:{oport}"]))
            wait_port(oport)
            cmd = {"drainpipe": [DRAINPIPE, "proxy", "--listen", f"127.0.0.1:{port}",
                                 "--upstream", f"127.0.0.1:{oport}"],
                   "nginx": nginx(port, f"127.0.0.1:{oport}")}[name]
        server = spawn(cmd)
        procs.append(server)
        wait_port(port)
        pid = worker_pid(server, name)
        load(scenario, f"http://127.0.0.1:{port}/", 1, None)  # warm-up
        u0, s0 = ticks(pid)
        done, rps = load(scenario, f"http://127.0.0.1:{port}/", seconds, None)
        u1, s1 = ticks(pid)
        per = 1e6 / CLK / max(done, 1)
        return rps, (u1 - u0) * per, (s1 - s0) * per
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    plan = {"keepalive": ["drainpipe", "hyper", "nginx"], "proxy": ["drainpipe", "nginx"]}
    if not HYPER.exists():
        plan["keepalive"].remove("hyper")
        print(f"cpu_split.py: {HYPER} not built (cd bench/hyper-hello && cargo build --release); "
              "left out", file=sys.stderr)
    for scenario, names in plan.items():
        runs = {n: [] for n in names}
        for _ in range(rounds):
            for n in names:
                runs[n].append(one(scenario, n, seconds))
        for n in names:
            rps, user, system = (statistics.median(r[i] for r in runs[n]) for i in range(3))
            print(f"{scenario:10} {n:10} {rps:10.0f} req/s  user {user:5.2f}  system "
                  f"{system:5.2f}  total {user + system:5.2f} µs/response", flush=True)


if __name__ == "__main__":
    main()
