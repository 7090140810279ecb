"""Soak test: mixed traffic for a fixed time against ``python -m classifier.serve``, one worker killed midway.

    python scripts/soak_test.py [--minutes 10] [--concurrency 8] [--workers 2] [--api-key KEY]

Starts the service on a loopback port with the shipped models (LiteRT) and JSON logs, waits until every worker
has loaded every model, then sends predictions over `--concurrency` keep-alive connections for `--minutes`,
in a fixed cycle spread over the models: good uploads (the fixtures' JPEGs, a PNG, a 16-bit PNG, the DICOM file
and 4-image batches) and 10 % bad ones (a truncated JPEG, a text file, an image over the pixel limit, a body over
the size limit announced with ``Expect: 100-continue``). Every input comes from fixtures/ or is made from it.
A connection is closed after `--requests-per-connection` requests, as clients come and go, so new connections
keep reaching every worker. At `--kill-at` of the time one worker is SIGKILLed; the supervisor starts another.

Prints a line a minute and, at the end, a Markdown table: requests, status counts, connection errors (no HTTP
answer), p50/p99 of the answered requests, and the resident memory of each worker. Checks the targets and exits
1 when one is missed: no 5xx answer; every good upload answered 200 and every bad one 4xx; connection errors only
while the killed worker is being replaced; the replacement serves; each worker's RSS grows by at most 10 % from
the end of its first minute (the replacement: its first minute after loading) to the end; the last minute's p99
within 1.5x the second's. Writes the figures to --out (JSON) and keeps the server's log beside it.

The client sends ``Authorization: Bearer KEY`` with --api-key (or CLASSIFIER_API_KEY); the server inherits this
process's environment, so settings the service reads from it (CLASSIFIER_*) apply to it too. Nothing leaves
127.0.0.1; the load stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from benchmark import (
    ROOT,
    Server,
    free_port,
    machine_load,
    multipart_request,
    read_response,
    request_head,
    rss_mb,
    service,
)
from PIL import Image

from classifier.registry import ModelRegistry
from classifier.settings import Settings

FIXTURES = ROOT / "fixtures"
MIX = {"jpeg": 16, "png": 7, "png16": 6, "dicom": 4, "batch": 3,
       "truncated": 1, "not-an-image": 1, "too-many-pixels": 1, "too-large-body": 1}  # fmt: skip
"""Requests of each kind in one cycle of 40: the last four kinds (10 %) are bad uploads."""
BAD = ("truncated", "not-an-image", "too-many-pixels", "too-large-body")
MINUTE_S = 60.0
RSS_EVERY_S = 5.0
MAX_RSS_GROWTH = 0.10
MAX_P99_RATIO = 1.5


@dataclass(frozen=True)
class Upload:
    kind: str
    request: bytes
    closes: bool = False
    """Sent without its body (``Expect: 100-continue``): the connection ends with the answer."""

    @property
    def good(self) -> bool:
        return self.kind not in BAD


@dataclass(frozen=True)
class Answer:
    at_s: float
    """When it came back, from the start of the load."""
    upload: Upload
    latency_s: float
    status: int | None = None
    """None: no HTTP answer (the connection failed)."""
    problem: str = ""
    """The exception of a connection error, or the ``detail`` of a 5xx."""


@dataclass(frozen=True)
class Kill:
    victim: int
    at_s: float
    replacement: int
    listening_s: float
    """When the replacement logged that it listens, from the start of the load."""
    ready_s: float
    """When it had loaded every model."""


def make_inputs(folder: Path, max_pixels: int) -> dict[str, list[Path]]:
    """The files of each kind of upload: the fixtures, and images made from them in `folder`."""
    jpegs = sorted(FIXTURES.glob("*.jpeg"))
    gray = Image.open(FIXTURES / "normal_2.jpeg").convert("L")
    png, png16 = folder / "normal_2.png", folder / "normal_2.16bit.png"
    gray.save(png)
    Image.fromarray(np.asarray(gray, np.uint16) * 257).save(png16)  # full 16-bit range
    truncated = folder / "covid_2.truncated.jpeg"
    truncated.write_bytes((FIXTURES / "covid_2.jpeg").read_bytes()[:8000])
    side = int(max_pixels**0.5) + 1  # the radiograph on a canvas just over the pixel limit (a small PNG)
    canvas = Image.new("L", (side, side))
    canvas.paste(gray)
    huge = folder / "normal_2.huge.png"
    canvas.save(huge)
    not_an_image = folder / "notes.jpeg"
    not_an_image.write_bytes((FIXTURES / "README.md").read_bytes())
    dicom = FIXTURES / "normal_1.dcm"
    return {"jpeg": jpegs, "png": [png], "png16": [png16], "dicom": [dicom], "batch": [jpegs[0], png, png16, dicom],
            "truncated": [truncated], "not-an-image": [not_an_image], "too-many-pixels": [huge]}  # fmt: skip


def upload_cycle(
    port: int, models: list[str], inputs: dict[str, list[Path]], max_bytes: int, headers: dict[str, str]
) -> Iterator[Upload]:
    """The uploads, endlessly: the kinds of `MIX` evenly interleaved, each kind's files and the models in turn."""
    order = [kind for _, kind in sorted(((i + 0.5) / n, kind) for kind, n in MIX.items() for i in range(n))]
    built: dict[tuple[str, str, int], Upload] = {}
    for turn in itertools.count():
        for position, kind in enumerate(order):
            model = models[(turn * len(order) + position) % len(models)]
            if kind == "too-large-body":
                key = (kind, model, 0)
                if key not in built:
                    expect, form = {**headers, "Expect": "100-continue"}, "multipart/form-data; boundary=soak"
                    head = request_head("127.0.0.1", port, f"/{model}/predict", form, max_bytes + 1, expect)
                    built[key] = Upload(kind, head, closes=True)
            elif kind == "batch":
                key = (kind, model, 0)
                if key not in built:
                    request = multipart_request("127.0.0.1", port, f"/{model}/predict/batch", inputs[kind], headers)
                    built[key] = Upload(kind, request)
            else:
                files = inputs[kind]
                key = (kind, model, turn % len(files))
                if key not in built:
                    request = multipart_request("127.0.0.1", port, f"/{model}/predict", [files[key[2]]], headers)
                    built[key] = Upload(kind, request)
            yield built[key]


async def send(
    port: int, uploads: Iterator[Upload], seconds: float, per_connection: int, answers: list[Answer], timeout: float
) -> None:
    """One client connection after another until `seconds` have passed, recording every answer."""
    start, writer, sent = time.perf_counter(), None, 0
    while (started := time.perf_counter()) - start < seconds:
        upload = next(uploads)
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                sent = 0
            writer.write(upload.request)
            await writer.drain()
            status, headers, body = await asyncio.wait_for(read_response(reader), timeout)
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            now = time.perf_counter()
            answers.append(Answer(now - start, upload, now - started, problem=type(exc).__name__))
            keep = False
        else:
            now, sent = time.perf_counter(), sent + 1
            problem = json.loads(body).get("detail", "") if status >= 500 else ""
            answers.append(Answer(now - start, upload, now - started, status, problem))
            keep = not upload.closes and sent < per_connection and headers.get("connection", "") != "close"
        if not keep and writer is not None:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def log_entries(text: str) -> list[dict]:
    """The JSON lines of a server log."""
    entries = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries


async def kill_one_worker(server: Server, after_s: float, start: float, models: int) -> Kill:
    """SIGKILL the first worker `after_s` into the load; wait until the supervisor's replacement loaded its models."""
    await asyncio.sleep(after_s)
    before = server.worker_pids()
    victim = before[0]
    with server.log.open() as log:
        log.seek(0, os.SEEK_END)  # the replacement's lines come after
        os.kill(victim, signal.SIGKILL)
        return await replaced(server, log, before, start, models)


async def replaced(server: Server, log: TextIO, before: list[int], start: float, models: int) -> Kill:
    """The supervisor's replacement for the killed worker, once it has loaded its models."""
    victim = before[0]
    killed = time.perf_counter() - start
    print(f"  {killed:.0f} s: SIGKILL to worker {victim}", flush=True)
    said: list[str] = []
    unfinished, listening, deadline = "", 0.0, time.perf_counter() + 120
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        new = [pid for pid in server.worker_pids() if pid not in before]
        if not new:
            continue
        replacement = new[0]
        *lines, unfinished = (unfinished + log.read()).split("\n")  # the last line may be half written
        said += [e["message"] for e in log_entries("\n".join(lines)) if e.get("pid") == replacement]
        if not listening and any(m.startswith("worker listening on") for m in said):
            listening = time.perf_counter() - start
        if sum(m.startswith("loaded model") for m in said) >= models:
            ready = time.perf_counter() - start
            print(
                f"  {ready:.0f} s: worker {replacement} replaced it, listening after {listening - killed:.1f} s, "
                f"models loaded after {ready - killed:.1f} s",
                flush=True,
            )
            return Kill(victim, killed, replacement, listening, ready)
    raise RuntimeError(f"no replacement for worker {victim} loaded its models within 120 s; see {server.log}")


async def sample_rss(server: Server, start: float, seconds: float, samples: list[tuple[float, int, float]]) -> None:
    """(time, pid, RSS in MB) of every worker every `RSS_EVERY_S` seconds."""
    while (now := time.perf_counter() - start) <= seconds:
        with contextlib.suppress(OSError):  # a worker that has just died
            samples.extend((now, pid, rss_mb(pid)) for pid in server.worker_pids())
        await asyncio.sleep(RSS_EVERY_S)


async def soak(
    server: Server, uploads: Iterator[Upload], args: argparse.Namespace, models: int
) -> tuple[list[Answer], list[tuple[float, int, float]], Kill]:
    seconds = args.minutes * MINUTE_S
    answers: list[Answer] = []
    samples: list[tuple[float, int, float]] = []
    start = time.perf_counter()
    clients = [send(server.port, uploads, seconds, args.requests_per_connection, answers, args.timeout)
               for _ in range(args.concurrency)]  # fmt: skip
    progress = asyncio.create_task(report_progress(answers, samples, start, seconds))
    _, kill, *_ = await asyncio.gather(
        sample_rss(server, start, seconds, samples),
        kill_one_worker(server, args.kill_at * seconds, start, models),
        *clients,
    )
    progress.cancel()
    return answers, samples, kill


async def report_progress(
    answers: list[Answer], samples: list[tuple[float, int, float]], start: float, seconds: float
) -> None:
    """A line at the end of each minute."""
    for minute in range(1, minutes_in(seconds)):
        await asyncio.sleep(start + minute * MINUTE_S + 0.5 - time.perf_counter())
        row = minute_row(minute - 1, answers, samples)
        print(
            f"  minute {minute}: {row['requests']} requests, {row['statuses']}, {row['connection_errors']} "
            f"connection errors, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, RSS {row['rss_mb']}",
            flush=True,
        )


def minutes_in(seconds: float) -> int:
    return max(1, math.ceil(seconds / MINUTE_S))


def minute_row(minute: int, answers: list[Answer], samples: list[tuple[float, int, float]], last: bool = False) -> dict:
    """The figures of one minute (from 0); the `last` one also holds the answers that came after the time."""
    start, end = minute * MINUTE_S, math.inf if last else (minute + 1) * MINUTE_S
    these = [a for a in answers if start <= a.at_s < end]
    answered = [a.latency_s for a in these if a.status is not None]
    rss: dict[int, float] = {}
    for at, pid, mb in samples:
        if start <= at < end:
            rss[pid] = round(mb)  # the last sample of the minute
    return {
        "minute": minute + 1,
        "requests": len(these),
        "statuses": dict(sorted(Counter(a.status for a in these if a.status is not None).items())),
        "connection_errors": sum(a.status is None for a in these),
        "p50_ms": round(float(np.percentile(answered, 50)) * 1e3, 1) if answered else None,
        "p99_ms": round(float(np.percentile(answered, 99)) * 1e3, 1) if answered else None,
        "rss_mb": rss,
    }


def rss_growth(samples: list[tuple[float, int, float]], kill: Kill) -> dict[int, dict]:
    """Each worker's RSS at the end of its first minute (the replacement's counted from its models' load) and at
    its last sample, and the growth between them."""
    growth = {}
    for pid in dict.fromkeys(pid for _, pid, _ in samples):
        mine = [(at, mb) for at, p, mb in samples if p == pid]
        born = kill.ready_s if pid == kill.replacement else 0.0
        baseline = [mb for at, mb in mine if at <= born + MINUTE_S]
        if pid == kill.victim or not baseline or mine[-1][0] < born + 2 * MINUTE_S:
            continue  # killed, or too short-lived to tell
        growth[pid] = {"after_first_minute_mb": round(baseline[-1], 1), "last_mb": round(mine[-1][1], 1),
                       "growth": round(mine[-1][1] / baseline[-1] - 1, 3)}  # fmt: skip
    return growth


def check(report: dict, answers: list[Answer], kill: Kill) -> list[str]:
    """The targets missed, each as one line."""
    missed = []
    answered = [a for a in answers if a.status is not None]
    five = Counter(f"{a.status} {a.problem}" for a in answered if a.status >= 500)
    if five:
        missed.append(f"5xx answers: {dict(five)}")
    wrong_good = Counter(a.status for a in answered if a.upload.good and a.status != 200)
    if wrong_good:
        missed.append(f"good uploads not answered 200: {dict(wrong_good)}")
    wrong_bad = Counter(a.status for a in answered if not a.upload.good and not 400 <= a.status < 500)
    if wrong_bad:
        missed.append(f"bad uploads not answered 4xx: {dict(wrong_bad)}")
    outside = [a for a in answers if a.status is None and not kill.at_s <= a.at_s <= kill.ready_s + 1.0]
    if outside:
        missed.append(f"{len(outside)} connection errors outside the replacement of the killed worker, the first "
                      f"at {outside[0].at_s:.1f} s: {outside[0].problem}")  # fmt: skip
    if not report["served_by_replacement"]:
        missed.append(f"the replacement worker {kill.replacement} answered no request")
    for pid, rss in report["rss_growth"].items():
        if rss["growth"] > MAX_RSS_GROWTH:
            missed.append(f"worker {pid} RSS grew {rss['growth']:.0%} (over {MAX_RSS_GROWTH:.0%})")
    minutes = report["minutes"]
    if len(minutes) >= 3 and minutes[-1]["p99_ms"] > MAX_P99_RATIO * minutes[1]["p99_ms"]:
        missed.append(f"p99 of the last minute {minutes[-1]['p99_ms']} ms over {MAX_P99_RATIO}x the second's "
                      f"{minutes[1]['p99_ms']} ms")  # fmt: skip
    return missed


def print_table(report: dict) -> None:
    print("\n| minute | requests | statuses | connection errors | p50 (ms) | p99 (ms) | RSS per worker (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in report["minutes"]:
        statuses = ", ".join(f"{status}: {n}" for status, n in row["statuses"].items())
        rss = ", ".join(f"{pid}: {mb}" for pid, mb in row["rss_mb"].items())
        print(f"| {row['minute']} | {row['requests']} | {statuses} | {row['connection_errors']} | {row['p50_ms']} "
              f"| {row['p99_ms']} | {rss} |")  # fmt: skip
    kill = report["kill"]
    print(f"\nworker {kill['victim']} SIGKILLed at {kill['at_s']:.0f} s; worker {kill['replacement']} listening "
          f"{kill['listening_s'] - kill['at_s']:.1f} s later, models loaded {kill['ready_s'] - kill['at_s']:.1f} s "
          f"later; it answered {report['served_by_replacement']} requests")  # fmt: skip
    print(f"requests by kind: {report['kinds']}")
    print(f"RSS growth after the first minute: {report['rss_growth']}")
    print(f"CPU {report['cpu']}; load average before {report['load_before']['loadavg']}, "
          f"after {report['load_after']['loadavg']}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8, help="at most one worker's CLASSIFIER_MAX_IN_FLIGHT")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-at", type=float, default=0.5, help="when to SIGKILL a worker, as a share of the time")
    parser.add_argument("--requests-per-connection", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=30.0, help="longest wait for one answer, in seconds")
    parser.add_argument("--api-key", default=os.environ.get("CLASSIFIER_API_KEY"), help="sent as a Bearer token")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/soak.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    models = [served.name for served in ModelRegistry.discover(ROOT / "weights", [])]  # the input check is no model
    limits = Settings()
    command, env = service(free_port(), args.workers, ROOT / "weights", max_in_flight=limits.max_in_flight)
    env.update(CLASSIFIER_LOG_FORMAT="json", CLASSIFIER_RUNTIME="litert")
    server = Server(command, env, int(env["CLASSIFIER_PORT"]), args.out.with_suffix(".server.log"), len(models))
    report: dict = {"command": " ".join(sys.argv), "cpu": cpu_model(), "load_before": machine_load()}
    with tempfile.TemporaryDirectory() as folder:
        inputs = make_inputs(Path(folder), limits.max_pixels)
        uploads = upload_cycle(server.port, models, inputs, limits.max_upload_bytes, headers)
        try:
            server.start()
            print(
                f"{args.workers} workers serving {', '.join(models)} on port {server.port}, ready in "
                f"{server.ready_s:.1f} s; {args.minutes:g} minutes at concurrency {args.concurrency}",
                flush=True,
            )
            answers, samples, kill = asyncio.run(soak(server, uploads, args, len(models)))
        finally:
            server.stop()
    served = Counter(e["pid"] for e in log_entries(server.log.read_text()) if "route" in e)
    minutes = minutes_in(args.minutes * MINUTE_S)
    report.update(
        load_after=machine_load(),
        minutes=[minute_row(m, answers, samples, last=m == minutes - 1) for m in range(minutes)],
        kinds=dict(Counter(a.upload.kind for a in answers)),
        kill=asdict(kill),
        served_by_pid=dict(served),
        served_by_replacement=served[kill.replacement],
        rss_growth=rss_growth(samples, kill),
        connection_errors=dict(Counter(a.problem for a in answers if a.status is None)),
    )
    missed = check(report, answers, kill)
    report["missed"] = missed
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    print("\n" + ("MISSED:\n  " + "\n  ".join(missed) if missed else "all targets met"))
    return 1 if missed else 0


def cpu_model() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")


if __name__ == "__main__":
    sys.exit(main())
