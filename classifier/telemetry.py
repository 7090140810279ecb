"""Logs, request ids and Prometheus metrics.

`RequestTelemetry` is a pure ASGI middleware: it gives each request an id (the client's ``X-Request-ID`` when
sane, else a new one), echoes it in the response, logs one line per request -- method, route, status and
duration, never the body or file names -- and counts requests and their latency by route.

With ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus-client is first imported (``python -m classifier.serve``
sets it for its workers), every process writes its metrics to files there, and a scrape of any worker sums them
all: prometheus-client's multiprocess mode. Without it (one process), the metrics live in the app's registry.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Literal, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
request_id: ContextVar[str] = ContextVar("request_id", default="-")

log = logging.getLogger("classifier.requests")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = MULTIPROCESS_DIR_VARIABLE in os.environ
"""Whether prometheus-client keeps its values in files (read once, as prometheus-client itself does on import)."""


class PrometheusMetrics:
    """The service's Prometheus metrics, in a registry of their own (one per app).

    In multiprocess mode a counter or histogram sums every worker's values, the dead ones' included (so it never
    goes back); `in_flight` sums the live workers' and `models_ready` is their minimum: a model counts as ready
    only when every live worker has loaded it (the supervisor removes a dead worker's gauges).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "predictions",
            "Images classified, by model and predicted class",
            ["model", "predicted_class"],
            registry=self.registry,
        )
        self.inference_latency = Histogram(
            "inference_duration_seconds",
            "Time to decode and classify the images of one request",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "errors", "Refused requests and rejected images, by kind", ["kind"], registry=self.registry
        )
        self.in_flight = Gauge(
            "inference_in_flight", "Predictions running or queued", registry=self.registry, multiprocess_mode="livesum"
        )
        self.models_ready = Gauge(
            "models_ready",
            "Whether each model is loaded (1) or not (0) in every worker",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )

    def render(self) -> bytes:
        if not MULTIPROCESS:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)
        return generate_latest(every_worker)


class RequestTelemetry:
    def __init__(self, app: ASGIApp, metrics: PrometheusMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = supplied if _VALID_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error answering %s %s", scope["method"], _route_name(scope))
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = _route_name(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                route,
                status,
                elapsed * 1000,
                extra={"method": scope["method"], "route": route, "status": status, "duration_ms": elapsed * 1000},
            )
            request_id.reset(token)


def _route_name(scope: Scope) -> str:
    """The matched route's path template (``/pneumonia/predict``), a mount's path (``/static``) or, for the
    few fixed routes FastAPI adds (``/docs``), the path: few metric labels whatever the requests."""
    if not scope.get("endpoint"):
        return "unmatched"
    return getattr(scope.get("route"), "path", None) or scope.get("root_path") or scope["path"]


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, process id (which worker), the
    request log's ``extra`` fields and an audit record's fields (``extra={"audit": {...}}``)."""

    EXTRA = ("method", "route", "status", "duration_ms", "model")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "pid": record.process,
        }
        entry.update({key: getattr(record, key) for key in self.EXTRA if hasattr(record, key)})
        entry.update(getattr(record, "audit", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _ServiceHandler(logging.StreamHandler):
    """Writes to the current ``sys.stdout`` (looked up at each record, so a redirected stream is followed)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stdout


def configure_logging(level: str, fmt: Literal["text", "json"]) -> None:
    """Send the service's and uvicorn's logs to stdout, one line an event, as text or JSON.

    uvicorn's access log is switched off: `RequestTelemetry` logs each request, with its id.
    python-multipart's is too: its parse warnings quote bytes of the upload, and uploads are never logged.
    """
    handler = _ServiceHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers = [handler]  # the service's log is this one stream, whatever was set up before
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("python_multipart").disabled = True
