"""Schemathesis against the app's own OpenAPI schema: generated requests, valid and not, never get a 5xx,
and every answer matches the documented status codes, content types and response schemas."""

from __future__ import annotations

import time
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from classifier.app import create_app
from classifier.settings import Settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 40


def test_generated_requests_never_get_a_5xx(trained_weights: Path) -> None:
    app = create_app(Settings(models_dir=trained_weights))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    deadline = time.monotonic() + 60
    while not app.state.registry.ready:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /pneumonia/predict", "POST /pneumonia/predict/batch"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        call()
