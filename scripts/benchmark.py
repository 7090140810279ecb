"""Benchmark the service side by side with the article's endpoint, in one run, with one client.

    python scripts/benchmark.py --image ../shared/data/samples/normal_1.jpeg --model weights/pneumonia.keras

For each server -- the article's naive endpoint (model built and loaded per request), its load-once fix
(``model.predict`` per request), the service on TensorFlow and the service on LiteRT, with 1 and 2 workers --
it measures the time from process start to ``/readyz`` 200, latency (p50/p99) one request at a time,
throughput at concurrency 8 and 32 (the service's in-flight bound raised to 64 so that it queues rather than
refuses), and the resident memory of each worker; then model-only images/s.
Every HTTP figure comes from the same light asyncio client sending the same multipart upload over keep-alive
connections, and the servers' CPU time per request (read from /proc: on a shared machine it moves much less than
the times do). Prints Markdown tables (and the machine's load, as the CPU is shared) and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import mimetypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: import the project's packages
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from classifier.inference import TYPICALITY_SUFFIX  # noqa: E402
from classifier.input_check import CHECK_NAME, check_files  # noqa: E402


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    retry_after: int = 0
    """503 answers that said when to retry."""
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1e3) if self.latencies else float("nan")

    @property
    def ok_per_second(self) -> float:
        return self.statuses[200] / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values()) + sum(n for status, n in self.statuses.items() if status != 200)

    def summary(self) -> dict:
        return {
            "requests": self.done,
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "ok_per_s": round(self.ok_per_second, 1),
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "503_with_retry_after": self.retry_after,
        }


def multipart_request(
    host: str, port: int, path: str, images: Sequence[Path], headers: Mapping[str, str] | None = None
) -> bytes:
    """A complete keep-alive HTTP/1.1 POST uploading each of `images` as a form field ``image_file``."""
    boundary = "benchmark-boundary-7d1f"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image_file"; filename="{image.name}"\r\n'
        f"Content-Type: {mimetypes.guess_type(image.name)[0] or 'application/octet-stream'}\r\n\r\n".encode()
        + image.read_bytes()
        + b"\r\n"
        for image in images
    )
    body += f"--{boundary}--\r\n".encode()
    return request_head(host, port, path, f"multipart/form-data; boundary={boundary}", len(body), headers) + body


def request_head(
    host: str, port: int, path: str, content_type: str, length: int, headers: Mapping[str, str] | None = None
) -> bytes:
    """The request line and headers of an HTTP/1.1 POST of `length` bytes, with `headers` added."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {content_type}",
             f"Content-Length: {length}", *(f"{name}: {value}" for name, value in (headers or {}).items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body (always with Content-Length here)."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if "content-length" not in headers:
        raise ValueError("response without Content-Length")
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, body


async def load(
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    total: int,
    seconds: float,
    timeout: float = 30.0,
    result: LoadResult | None = None,
) -> LoadResult:
    """Send `request` `total` times (or for `seconds`, whichever ends first) over `concurrency` connections.

    Pass `result` to watch the counts while it runs.
    """
    result, sent = result or LoadResult(), 0
    deadline = time.perf_counter() + seconds

    def take() -> bool:
        nonlocal sent
        if sent >= total or time.perf_counter() > deadline:
            return False
        sent += 1
        return True

    async def connection() -> None:
        writer = None
        while take():
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                await writer.drain()
                status, headers, _ = await asyncio.wait_for(read_response(reader), timeout)
            except (OSError, EOFError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
                result.errors[type(exc).__name__] += 1
                keep_alive = False
            else:
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] += 1
                result.retry_after += status == 503 and "retry-after" in headers
                keep_alive = headers.get("connection", "").lower() != "close"
            if not keep_alive and writer is not None:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU time the processes used so far (from /proc), all their threads."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return ticks / os.sysconf("SC_CLK_TCK")


STARTED = ("worker listening on", "loaded model")
"""What each worker of the service logs once it takes connections, and once its model is ready."""


@dataclass
class Server:
    """A server process on a loopback port, started and timed to readiness."""

    command: list[str]
    env: dict[str, str]
    port: int
    log: Path
    models: int = 1
    """Models each worker of ``classifier.serve`` loads."""
    process: subprocess.Popen | None = None
    ready_s: float = float("nan")

    def start(self, timeout: float = 120.0) -> Server:
        started = time.perf_counter()
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                self.command, env={**os.environ, **self.env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command} exited; see {self.log}")
            if math.isnan(self.ready_s) and self._ready():
                self.ready_s = time.perf_counter() - started
            log = self.log.read_text()
            listening, loaded = (log.count(s) for s in STARTED)
            if not math.isnan(self.ready_s) and min(listening, loaded // self.models) >= self.listening:
                return self
            time.sleep(0.02)
        raise RuntimeError(f"{self.command} not ready in {timeout} s; see {self.log}")

    @property
    def listening(self) -> int:
        """Workers of ``classifier.serve`` (none for other servers) that must say "worker listening on" and
        "loaded model" (for each of `models`) in the log: each has a socket of its own, so wait for them all after
        the first /readyz 200, or the first ones take every connection and the late ones answer 503 while loading."""
        return int(self.env.get("CLASSIFIER_WORKERS", 0))

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/readyz"
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status == 200
        return False

    def worker_pids(self) -> list[int]:
        """The serving processes: the spawned workers of ``classifier.serve``, or the server itself when it has none."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        return workers or [pid]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def naive_server(port: int, mode: str, model: Path) -> tuple[list[str], dict[str, str]]:
    """The article-style endpoint (scripts/naive_service.py) under uvicorn, one worker."""
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "scripts"), "naive_service:app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    return command, {"NAIVE_MODE": mode, "NAIVE_MODEL": str(model), "PYTHONPATH": str(ROOT)}


def service(
    port: int, workers: int, models: Path, max_in_flight: int = 8, input_check: str = "refuse"
) -> tuple[list[str], dict[str, str]]:
    """The service as the container runs it: ``python -m classifier.serve``, set up by the environment."""
    env = {"CLASSIFIER_HOST": "127.0.0.1", "CLASSIFIER_PORT": str(port), "CLASSIFIER_WORKERS": str(workers),
           "CLASSIFIER_MODELS_DIR": str(models), "CLASSIFIER_MAX_IN_FLIGHT": str(max_in_flight),
           "CLASSIFIER_INPUT_CHECK": input_check}  # fmt: skip
    return [sys.executable, "-m", "classifier.serve"], env


def model_only(model: Path, image: Path, seconds: float) -> list[dict]:
    """Images/s of the network alone on the preprocessed image, per runtime and batch size.

    `model` is ``<name>.keras`` with its export ``<name>.tflite`` beside it.
    """
    import keras

    from classifier.inference import load_model
    from classifier.model import with_attention
    from classifier.preprocessing import preprocess

    def rate(call: Callable[[np.ndarray], object], batch: np.ndarray) -> float:
        call(batch)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            call(batch)
            calls += 1
        return calls * len(batch) / (time.perf_counter() - started)

    network = with_attention(keras.saving.load_model(model))
    one = preprocess(image.read_bytes(), network.input_shape[1])[np.newaxis]
    runtimes: dict[str, Callable[[np.ndarray], object]] = {
        "Keras model.predict": lambda x: network.predict(x, verbose=0),
        "Keras direct call (eager)": lambda x: network(x, training=False),
        "TensorFlow compiled function": load_model(model, "keras").predict,
        "LiteRT, 1 thread": load_model(model, "litert", threads=1).predict,
        "LiteRT, 2 threads": load_model(model, "litert", threads=2).predict,
    }
    return [
        {"runtime": name, "batch": n, "images_per_s": round(rate(call, np.repeat(one, n, axis=0)), 1)}
        for name, call in runtimes.items()
        for n in (1, 64)
    ]


def machine_load() -> dict:
    """Load average and the busiest other processes: the CPU is shared."""
    top = subprocess.run(
        ["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[1:6]
    return {"loadavg": Path("/proc/loadavg").read_text().split()[:3], "top": [line[:120] for line in top]}


@contextlib.contextmanager
def model_folders(model: Path) -> Iterator[tuple[Path, Path]]:
    """Two copies of the model and the input check beside it: Keras only (the service falls back to TensorFlow)
    and with their LiteRT exports."""
    with tempfile.TemporaryDirectory() as tmp:
        keras_dir, litert_dir = Path(tmp, "keras"), Path(tmp, "litert")
        check = model.with_name(CHECK_NAME)
        for folder in (keras_dir, litert_dir):
            folder.mkdir()
            for path in (model.with_suffix(".keras"), model.with_suffix(".json"), *check_files(model.parent)):
                shutil.copy(path, folder)
            shutil.copy(check.with_suffix(".keras"), folder)
            statistics = model.with_name(model.stem + TYPICALITY_SUFFIX)
            if statistics.is_file():
                shutil.copy(statistics, folder)
        shutil.copy(check.with_suffix(".tflite"), litert_dir)
        export = model.with_suffix(".tflite")
        if export.is_file():
            shutil.copy(export, litert_dir)
        else:
            import keras

            from classifier.export import export_litert

            export_litert(keras.saving.load_model(model), litert_dir / export.name)
        yield keras_dir, litert_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT.parent / "shared/data/samples/normal_1.jpeg")
    parser.add_argument("--model", type=Path, default=ROOT / "weights/pneumonia.keras")
    parser.add_argument("--requests", type=int, default=1000, help="most requests per measurement")
    parser.add_argument("--seconds", type=float, default=10.0, help="longest time per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/benchmark.json")
    parser.add_argument(
        "--servers", default="", help="only the servers whose label contains this text (LiteRT); skips model-only"
    )
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model = args.model.resolve()
    report: dict = {"image": str(args.image), "model": str(model), "load_before": machine_load(), "servers": []}
    path = f"/{model.stem}/predict"

    with model_folders(model) as (keras_dir, litert_dir):
        servers = [
            ("naive (article)", 1, lambda port: naive_server(port, "naive", model)),
            ("load-once, model.predict", 1, lambda port: naive_server(port, "load-once", model)),
            *(
                # in-flight bound above the concurrency: measure throughput, not refusals (loadbalance_test does)
                (f"service, {runtime}", workers, partial(service, workers=workers, models=models, max_in_flight=64))
                for runtime, models in (("TensorFlow", keras_dir), ("LiteRT", litert_dir))
                for workers in (1, 2)
            ),
            # the cost of the input check: the same server with it off
            (
                "service, LiteRT, input check off",
                2,
                partial(service, workers=2, models=litert_dir, max_in_flight=64, input_check="off"),
            ),
        ]
        for label, workers, launch in servers:
            if args.servers not in label:
                continue
            port = free_port()
            log = args.out.with_name(f"benchmark-{len(report['servers'])}.log")
            server = Server(*launch(port), port, log)
            try:
                server.start()
                request = multipart_request("127.0.0.1", port, path, [args.image])
                entry = {"server": label, "workers": workers, "ready_s": round(server.ready_s, 2)}
                asyncio.run(load("127.0.0.1", port, request, 2 * workers, 20, args.seconds))  # warm up
                for concurrency in (1, 8, 32):
                    cpu_before = cpu_seconds(server.worker_pids())
                    result = asyncio.run(load("127.0.0.1", port, request, concurrency, args.requests, args.seconds))
                    entry[f"c{concurrency}"] = result.summary()
                    # CPU per answer: what the request costs the server, little moved by other work on the machine
                    cpu_ms = (cpu_seconds(server.worker_pids()) - cpu_before) * 1e3 / max(result.done, 1)
                    entry[f"c{concurrency}"]["cpu_ms_per_request"] = round(cpu_ms, 2)
                entry["rss_mb"] = [round(rss_mb(pid)) for pid in server.worker_pids()]
            finally:
                server.stop()
            report["servers"].append(entry)
            print(json.dumps(entry), flush=True)
        if not args.servers:
            report["model_only"] = model_only(litert_dir / model.name, args.image, min(args.seconds, 5.0))
    report["load_after"] = machine_load()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)


def print_tables(report: dict) -> None:
    columns = ["server", "workers", "ready (s)", "p50 (ms)", "p99 (ms)", "req/s at 8", "req/s at 32", "non-200 at 32",
               "CPU ms/request at 8", "RSS/worker (MB)"]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |\n" + "| --- " * len(columns) + "|")
    for s in report["servers"]:
        c1, c8, c32 = s["c1"], s["c8"], s["c32"]
        row = [s["server"], s["workers"], s["ready_s"], c1["p50_ms"], c1["p99_ms"], c8["ok_per_s"], c32["ok_per_s"],
               c32["requests"] - c32["statuses"].get(200, 0), c8["cpu_ms_per_request"], max(s["rss_mb"])]  # fmt: skip
        print("| " + " | ".join(str(value) for value in row) + " |")
    if "model_only" in report:
        print_model_only(report["model_only"])
    print(f"\nload average before {report['load_before']['loadavg']}, after {report['load_after']['loadavg']}")
    for line in report["load_before"]["top"]:
        print("  ", line)


def print_model_only(figures: list[dict]) -> None:
    print("\n| model only | batch 1 (images/s) | batch 64 (images/s) |\n| --- | --- | --- |")
    rates: dict[str, dict[int, float]] = {}
    for row in figures:
        rates.setdefault(row["runtime"], {})[row["batch"]] = row["images_per_s"]
    for name, by_batch in rates.items():
        print(f"| {name} | {by_batch[1]} | {by_batch[64]} |")


if __name__ == "__main__":
    main()
