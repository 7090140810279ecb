"""The load-balanced set-up, for real, on loopback: nginx in front of two uvicorn replicas of the service.

    python scripts/loadbalance_test.py --model weights/pneumonia.keras [--requests 3000] [--concurrency 8]

Installs nginx with apt-get when it is missing (needs root), starts two single-worker replicas and nginx
with the shipped retry settings (deploy/nginx/proxy.conf), then checks, printing the counts:

1. failover: a bounded load of predictions through nginx while replica 1 is killed (SIGKILL) and restarted,
   then replica 2 is stopped (SIGTERM) and restarted -- no request may fail;
2. graceful shutdown: batch predictions in flight on a replica when it gets SIGTERM all finish with 200;
3. overload: one replica at concurrency 32 answers what it cannot take with 503 and Retry-After, at once.

Exits 1 when a check fails. Nothing leaves 127.0.0.1; every load is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmark import ROOT, LoadResult, Server, free_port, load, model_folders, multipart_request, service

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams "$upstream_status";
    access_log {tmp}/upstreams.log upstreams;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    upstream classifier {{
        server 127.0.0.1:{replica1} max_fails=0;
        server 127.0.0.1:{replica2} max_fails=0;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        include {proxy_conf};
    }}
}}
"""


def ensure_nginx() -> str:
    if not shutil.which("nginx"):
        print("installing nginx (apt-get)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=True, env=env)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def start_nginx(tmp: Path, replicas: list[Server]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=tmp,
            port=port,
            replica1=replicas[0].port,
            replica2=replicas[1].port,
            proxy_conf=ROOT / "deploy/nginx/proxy.conf",
        )
    )
    nginx = subprocess.Popen([ensure_nginx(), "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx-health", timeout=1):
                return nginx, port
        except OSError:
            time.sleep(0.1)
    nginx.kill()
    raise RuntimeError(f"nginx did not start; see {tmp / 'error.log'}")


async def failover(port: int, request: bytes, replicas: list[Server], total: int, concurrency: int) -> LoadResult:
    """Load through nginx; kill -9 and restart replica 1 at 20 %, SIGTERM and restart replica 2 at 60 %."""
    result = LoadResult()
    running = asyncio.create_task(load("127.0.0.1", port, request, concurrency, total, 300, result=result))

    async def at(fraction: float) -> None:
        while result.done < fraction * total and not running.done():
            await asyncio.sleep(0.01)

    async def cycle(replica: Server, how: signal.Signals, name: str) -> None:
        replica.process.send_signal(how)
        await asyncio.to_thread(replica.process.wait)
        print(f"  {name}: {how.name} at request {result.done}, exit status {replica.process.returncode}", flush=True)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(replica.start)
        print(f"  {name}: restarted, ready in {replica.ready_s:.2f} s, at request {result.done}", flush=True)

    await at(0.2)
    await cycle(replicas[0], signal.SIGKILL, "replica 1")
    await at(0.6)
    await cycle(replicas[1], signal.SIGTERM, "replica 2")
    return await running


async def graceful_shutdown(replica: Server, image: Path) -> tuple[LoadResult, str]:
    """Eight 8-image batch predictions at once; SIGTERM while they run; the server log's last words."""
    request = multipart_request("127.0.0.1", replica.port, "/pneumonia/predict/batch", [image] * 8)
    running = asyncio.create_task(load("127.0.0.1", replica.port, request, 8, 8, 60))
    await asyncio.sleep(0.05)
    replica.process.send_signal(signal.SIGTERM)
    result = await running
    await asyncio.to_thread(replica.process.wait)
    return result, replica.log.read_text().strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "weights/pneumonia.keras")
    parser.add_argument("--image", type=Path, default=ROOT / "fixtures/normal_1.jpeg")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8, help="at most one replica's CLASSIFIER_MAX_IN_FLIGHT")
    args = parser.parse_args()
    model = args.model.resolve()
    failures = []
    with tempfile.TemporaryDirectory() as folder, model_folders(model) as (_, models):
        tmp = Path(folder)
        replicas = []
        for i in (1, 2):
            port = free_port()
            replicas.append(Server(*service(port, 1, models), port, tmp / f"replica{i}.log"))
        nginx = None
        try:
            for replica in replicas:
                replica.start()
            nginx, port = start_nginx(tmp, replicas)
            request = multipart_request("127.0.0.1", port, f"/{model.stem}/predict", [args.image])

            print(f"1. failover: {args.requests} predictions through nginx at concurrency {args.concurrency}")
            result = asyncio.run(failover(port, request, replicas, args.requests, args.concurrency))
            print(f"   {result.summary()} in {result.seconds:.1f} s")
            retried = [line for line in (tmp / "upstreams.log").read_text().splitlines() if "," in line]
            print(f"   nginx sent {len(retried)} of them to the other replica after: {Counter(retried).most_common(4)}")
            if result.failed or result.done != args.requests:
                failures.append("failover")
                print("   nginx's error log ends:", *(tmp / "error.log").read_text().splitlines()[-5:], sep="\n   ")

            print("2. graceful shutdown: SIGTERM with eight 8-image batches in flight on replica 1")
            result, last_words = asyncio.run(graceful_shutdown(replicas[0], args.image))
            print(f"   {result.summary()}; exit status {replicas[0].process.returncode}; log: {last_words}")
            if result.statuses[200] != 8 or "Finished server process" not in last_words:
                failures.append("graceful shutdown")

            print("3. overload: 600 predictions at concurrency 32 straight to replica 2")
            request = multipart_request("127.0.0.1", replicas[1].port, f"/{model.stem}/predict", [args.image])
            result = asyncio.run(load("127.0.0.1", replicas[1].port, request, 32, 600, 60))
            print(f"   {result.summary()}")
            if not result.statuses[503] or result.retry_after != result.statuses[503] or result.errors:
                failures.append("overload")
        finally:
            if nginx:
                nginx.terminate()
                nginx.wait()
            for replica in replicas:
                replica.stop()
    print("FAILED: " + ", ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
