#!/usr/bin/env python3
"""What logging every request costs (issue 16): keep-alive requests/s through
`drainpipe proxy` with and without `[access_log]` (combined, to a file), the
proxy and its origin on CPU 0, wrk -t1 -c64 on CPU 1, rounds alternating.

Usage: bench/access_log_cost.py BINARY [ROUNDS] [SECONDS]
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import free_port, start  # noqa: E402  (the same pinned start-up)


def run(binary, logged, seconds, tmp):
    origin_port, proxy_port = free_port(), free_port()
    config = os.path.join(tmp, "proxy.toml")
    text = (f'[[listener]]\nlisten = "127.0.0.1:{proxy_port}"\n\n'
            f'[[upstream]]\nname = "o"\nservers = ["127.0.0.1:{origin_port}"]\n\n'
            f'[[route]]\npath = "/"\nupstream = "o"\n')
    if logged:
        text += f'\n[access_log]\nformat = "combined"\npath = "{tmp}/access.log"\n'
    with open(config, "w") as f:
        f.write(text)
    procs = [start([binary, "origin", "--listen", f"127.0.0.1:{origin_port}"]),
             start([binary, "proxy", "--config", config])]
    try:
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s",
                              f"http://127.0.0.1:{proxy_port}/"], capture_output=True, text=True).stdout
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    tmp = tempfile.mkdtemp()
    off, on = [], []
    for _ in range(rounds):
        off.append(run(binary, False, seconds, tmp))
        on.append(run(binary, True, seconds, tmp))
    lines = sum(1 for _ in open(os.path.join(tmp, "access.log")))
    a, b = statistics.median(off), statistics.median(on)
    print(f"proxy keep-alive: without access log {a:.0f} req/s, with {b:.0f} req/s: "
          f"{(1 - b / a) * 100:.1f} % cost ({lines} lines written)")


if __name__ == "__main__":
    main()
