"""What the metrics, the upload's SHA-256 and the audit record cost one prediction request, each alone.

    python scripts/request_overhead.py --image "$IMAGE"

Times, best of 5 tight loops, in microseconds: the metric updates of one prediction in memory and in prometheus-client's
multiprocess mode (each in a process of its own: the mode is chosen when prometheus-client is imported), the
SHA-256 of the image, and one audit record written as text and as JSON. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: import the project's packages
REPEAT = 5


def best_us(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=REPEAT)) / number * 1e6


def metric_updates_us() -> float:
    """The updates one prediction makes: the in-flight gauge up and down, a prediction counted, two latencies
    observed, the request counted."""
    from classifier.telemetry import PrometheusMetrics

    metrics = PrometheusMetrics()

    def one_request() -> None:
        metrics.in_flight.set(1)
        metrics.inference_latency.labels("pneumonia").observe(0.006)
        metrics.predictions.labels("pneumonia", "normal").inc()
        metrics.in_flight.set(0)
        metrics.requests.labels("POST", "/pneumonia/predict", "200").inc()
        metrics.latency.labels("POST", "/pneumonia/predict").observe(0.007)

    return best_us(one_request, 20_000)


def audit_record_us(log_format: str, data: bytes) -> float:
    """One record of a classified image, as the shipped pneumonia model answers it."""
    from classifier.audit import Fingerprint, audit
    from classifier.paths import WEIGHTS_DIR
    from classifier.registry import ModelRegistry
    from classifier.schemas import ImageInfo, prediction_schema
    from classifier.telemetry import configure_logging

    [served] = ModelRegistry.discover(WEIGHTS_DIR, ["pneumonia"])
    probabilities = {"normal": 0.9995729327201843, "pneumonia": 0.00042701931670308113}
    answer = prediction_schema(served).build("normal", probabilities, ImageInfo(width=1944, height=1708, format="JPEG"))
    upload = Fingerprint.of(data)
    sys.stderr = io.StringIO()  # the log's stream: kept in memory, emptied after each record
    configure_logging("INFO", log_format)  # type: ignore[arg-type]

    def one_record() -> None:
        audit([answer], [upload], served.name, served.card.version, "127.0.0.1")
        sys.stderr.seek(0)
        sys.stderr.truncate()

    try:
        return best_us(one_record, 2_000)
    finally:
        sys.stderr = sys.__stderr__


def in_a_new_process(multiprocess: bool) -> float:
    """`metric_updates_us` in a fresh interpreter, with or without ``PROMETHEUS_MULTIPROC_DIR``."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = folder
        code = "import request_overhead as r; print(r.metric_updates_us())"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT / "scripts", env=env, capture_output=True, text=True, check=True
        )
        return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="an upload, e.g. the benchmark image")
    args = parser.parse_args()
    data = args.image.read_bytes()
    rows = [
        ("metric updates of one prediction, in memory", in_a_new_process(multiprocess=False)),
        ("the same, multiprocess mode", in_a_new_process(multiprocess=True)),
        (f"SHA-256 of {args.image.name} ({len(data):,} bytes)", best_us(lambda: hashlib.sha256(data).digest(), 200)),
        ("one audit record, text", audit_record_us("text", data)),
        ("one audit record, JSON", audit_record_us("json", data)),
    ]
    print("| part | µs per request |\n| --- | --- |")
    for name, us in rows:
        print(f"| {name} | {us:.1f} |")
    print(f"\nload average {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
