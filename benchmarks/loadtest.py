"""Bounded load test of `flopcast serve` on loopback: N clients x M requests, errors and latency.

    python benchmarks/loadtest.py                      # 32 clients x 400 requests (the issue-13 target)
    python benchmarks/loadtest.py --clients 8 --requests 50 --workers 2
    python benchmarks/loadtest.py --idle 1000          # with 1,000 idle sockets held open (issue 20)

Starts `flopcast serve --port 0` on 127.0.0.1 in a subprocess (or uses --url, which must be a
loopback address), then N client threads each send M requests, each on a new TCP connection (the
case that overflowed the old listen backlog), cycling through a mix of GET listings, a model's
counts, analytic serving and training estimates, a budget and one malformed body (an expected 422).
Stops by itself after --max-seconds. Prints one JSON object: counts of connection errors, 5xx,
unexpected statuses, latency p50 / p99 / max, requests per second. Exit code 1 when any connection
error or 5xx happened.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

SCENARIO = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
            "training": {"seq_len": 4096, "global_batch_seqs": 64},
            "parallel": {"tp": 1, "pp": 1, "dp": 8},
            "inference": {"tp": 1, "dp": 8, "input_tokens": 1024, "output_tokens": 128}}
MIX = [  # (method, path, body, expected status)
    ("GET", "/api/hardware", None, 200),
    ("POST", "/api/infer", json.dumps(SCENARIO), 200),
    ("GET", "/api/model/llama-3.1-8b?seq_len=8192", None, 200),
    ("POST", "/api/train", json.dumps(SCENARIO), 200),
    ("POST", "/api/budget", json.dumps({"hardware": "b200", "days": 90, "power": "100 MW"}), 200),
    ("POST", "/api/infer", json.dumps(SCENARIO | {"cluster": {"num_devices": "eight"}}), 422),
    ("GET", "/api/sites", None, 200),
    ("POST", "/api/infer", "model: llama-3.1-8b\nhardware: h100-sxm\ncluster: {num_devices: 1}\n"
                           "inference: {tp: 1, input_tokens: 512, output_tokens: 64}\n", 200),
]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def start_server(workers: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "flopcast.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    if workers > 1:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "flopcast.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    url = f"http://127.0.0.1:{m.group(1)}"
    for _ in range(100):   # with workers, wait until the port answers
        try:
            c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=2)
            c.request("GET", "/api/sites")
            c.getresponse().read()
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def open_idle(host: str, port: int, n: int) -> list:
    """n TCP connections to the server that never send a byte (the idle-socket attack), held open
    by the caller; the open-files limit is raised for them."""
    import resource
    import socket

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 512:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 512), hard))
    out = []
    for _ in range(n):
        sock = socket.create_connection((host, port), timeout=5)
        out.append(sock)
    return out


def _still_open(sock) -> bool:
    """Whether the server has kept an idle socket open (a closed one reads end-of-file at once)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=400, help="requests per client")
    p.add_argument("--url", default=None, help="a running service on loopback (default: start one)")
    p.add_argument("--workers", type=int, default=1, help="server processes when this script starts it [1]")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long [600]")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request client timeout [60]")
    p.add_argument("--idle", type=int, default=0, help="idle connections held open during the load [0]")
    args = p.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.requests <= 10_000 or not 0 <= args.idle <= 4000:
        raise SystemExit("error: --clients 1..256, --requests 1..10000 and --idle 0..4000 (a bounded test)")
    proc = None
    if args.url is None:
        proc, url = start_server(args.workers)
    else:
        url = args.url
    u = urlparse(url)
    if not _loopback(u.hostname or ""):
        raise SystemExit(f"error: --url must be a loopback address (127.0.0.0/8, ::1, localhost), got {url}")
    latencies: list[float] = []
    counts = {"ok": 0, "connection_errors": 0, "status_5xx": 0, "unexpected_status": 0, "stopped_by_time": 0}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + args.max_seconds

    def client(k: int) -> None:
        for i in range(args.requests):
            if time.monotonic() > deadline:
                with lock:
                    counts["stopped_by_time"] += args.requests - i
                return
            method, path, body, expected = MIX[(k + i) % len(MIX)]
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=args.timeout)
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    counts["connection_errors"] += 1
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if status >= 500:
                    counts["status_5xx"] += 1
                elif status != expected:
                    counts["unexpected_status"] += 1
                    errors.append(f"{method} {path}: {status}")
                else:
                    counts["ok"] += 1

    idle = open_idle(u.hostname or "127.0.0.1", u.port or 80, args.idle)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    idle_open = sum(1 for sock in idle if _still_open(sock))
    for sock in idle:
        sock.close()
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=30)
    lat = sorted(latencies)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 4) if lat else None

    report = {"clients": args.clients, "requests_per_client": args.requests, "workers": args.workers,
              "sent": len(lat) + counts["connection_errors"], **counts, "latency_p50_s": pct(0.50),
              "latency_p99_s": pct(0.99), "latency_max_s": round(lat[-1], 4) if lat else None,
              "wall_s": round(wall, 2), "requests_per_s": round(len(lat) / wall, 1) if wall else None,
              "idle_sockets": len(idle), "idle_still_open_at_end": idle_open, "first_errors": errors[:5]}
    print(json.dumps(report, indent=2))
    return 1 if counts["connection_errors"] or counts["status_5xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
