"""The audit trail: one record per image a prediction route classified or refused, on the ``classifier.audit``
logger (written whatever the log level).

A record says which request (its id, from the log line), which model and version, what became of the image --
classified, with the class and every probability, or refused, with the status and the refusal's kind -- the input
check's verdict when the answer or the refusal carries one (an ``input_check`` attribute), the upload's SHA-256
and size, and the client's address. Never the image, never a file name. As JSON lines (``CLASSIFIER_LOG_FORMAT=json``)
each record is one object with these fields at the top level; as text, one readable line.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from classifier.errors import ServiceError
from classifier.schemas import PredictionAnswer

log = logging.getLogger("classifier.audit")
log.setLevel(logging.INFO)  # the record to keep: CLASSIFIER_LOG_LEVEL=WARNING quiets the rest, not this


@dataclass(frozen=True)
class Fingerprint:
    """What identifies an upload without keeping it."""

    sha256: str
    size_bytes: int

    @classmethod
    def of(cls, data: bytes) -> Fingerprint:
        return cls(hashlib.sha256(data).hexdigest(), len(data))


def audit_record(
    index: int, outcome: PredictionAnswer | ServiceError, upload: Fingerprint, model: str, version: str, client: str
) -> dict[str, Any]:
    """The record of the image at `index` of a request (0 for a single prediction), made from what was answered."""
    entry: dict[str, Any] = {"event": "prediction", "model": model, "model_version": version, "index": index}
    if isinstance(outcome, ServiceError):
        entry |= {"outcome": "refused", "status": outcome.status_code, "refusal": outcome.kind}
    else:
        entry |= {
            "outcome": "classified",
            "predicted_class": outcome.predicted_class,
            "probabilities": outcome.probabilities,
        }
    check = getattr(outcome, "input_check", None)
    if check is not None:
        entry["input_check"] = check.model_dump(mode="json") if isinstance(check, BaseModel) else check
    return entry | {"sha256": upload.sha256, "size_bytes": upload.size_bytes, "client": client}


def audit(
    outcomes: Sequence[PredictionAnswer | ServiceError],
    uploads: Sequence[Fingerprint],
    model: str,
    version: str,
    client: str,
) -> None:
    """Log one record per image, in order."""
    for index, (outcome, upload) in enumerate(zip(outcomes, uploads, strict=True)):
        entry = audit_record(index, outcome, upload, model, version, client)
        log.info(_readable(entry), extra={"audit": entry})


def _readable(entry: dict[str, Any]) -> str:
    """The text log's line: ``prediction pneumonia 2026-11-23 #0 classified normal (normal 0.9996, ...) ...``."""
    if entry["outcome"] == "classified":
        shares = ", ".join(f"{name} {p:.4f}" for name, p in entry["probabilities"].items())
        verdict = f"classified {entry['predicted_class']} ({shares})"
    else:
        verdict = f"refused {entry['status']} {entry['refusal']}"
    check = entry.get("input_check")
    checked = f" input check {' '.join(f'{k}={v}' for k, v in check.items())}" if isinstance(check, dict) else ""
    return (
        f"prediction {entry['model']} {entry['model_version']} #{entry['index']} {verdict}{checked}"
        f" sha256 {entry['sha256']} {entry['size_bytes']} bytes from {entry['client']}"
    )
