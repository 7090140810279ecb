"""The service's settings: one object, read from ``CLASSIFIER_*`` environment variables.

``CLASSIFIER_MODELS_DIR=/srv/weights CLASSIFIER_LOG_FORMAT=json uvicorn classifier.app:app`` -- docs/service.md
lists every setting. Lists (models, CORS origins, API keys) are comma-separated. API keys are `SecretStr`:
never shown by a repr or a log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from classifier.imaging import MAX_PIXELS
from classifier.inference import Runtime
from classifier.input_check import InputCheckMode
from classifier.paths import WEIGHTS_DIR

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIFIER_", frozen=True)

    models_dir: Path = Field(WEIGHTS_DIR, description="folder holding <name>.keras and its card <name>.json")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="models to serve; empty serves every model in models_dir"
    )
    input_check: InputCheckMode = Field(
        "refuse",
        description="images the input check says are not frontal chest X-rays: answered 422 (refuse), classified "
        "with input_check.chest_xray false (flag), or not checked at all (off); refuse and flag need the check's "
        "files (input-check.*) in models_dir",
    )
    max_upload_mb: float = Field(20.0, gt=0, description="largest request body, in MiB (413 beyond)")
    max_pixels: int = Field(MAX_PIXELS, gt=0, description="largest image, in pixels, checked before decoding (413)")
    max_batch_images: int = Field(16, ge=1, description="most images in one batch request (413 beyond)")
    upload_timeout_s: float = Field(30.0, gt=0, description="time allowed to receive a request body (408 beyond)")
    runtime: Runtime = Field(
        "auto", description="LiteRT for <name>.tflite when exported (auto), or always Keras/TensorFlow"
    )
    inference_threads: int = Field(2, ge=1, description="threads decoding images and running the models")
    model_threads: int = Field(2, ge=1, description="threads one LiteRT inference may use")
    max_in_flight: int = Field(8, ge=1, description="predictions running or queued; beyond, 503 with Retry-After")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with a 503")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed to call the API from a browser; empty: none"
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="keys a client must send (Authorization: Bearer <key>) to the prediction and model routes; "
        "with none here nor in api_keys_file, no key is needed",
    )
    api_keys_file: Path | None = Field(
        None, description="a file of more API keys, one a line (a mounted Kubernetes Secret); read at start"
    )
    host: str = Field("127.0.0.1", description="address `python -m classifier.serve` listens on")
    port: int = Field(5000, ge=1, le=65535, description="port `python -m classifier.serve` listens on")
    workers: int = Field(
        1,
        ge=1,
        description="server processes `python -m classifier.serve` starts; with several, each takes connections "
        "only once its models are loaded",
    )

    @field_validator("models", "cors_origins", "api_keys", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("input_check", "log_level", mode="before")
    @classmethod
    def known_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("api_keys_file")
    @classmethod
    def holds_keys(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_api_keys(path)  # a missing or empty file stops the start, saying which
        return path

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MIB)

    def accepted_api_keys(self) -> list[SecretStr]:
        """`api_keys` and those of `api_keys_file`; none: the routes need no key."""
        return [*self.api_keys, *(read_api_keys(self.api_keys_file) if self.api_keys_file else [])]


def read_api_keys(path: Path) -> list[SecretStr]:
    """The keys in `path`, one a line, blank lines skipped; a `ValueError` when it cannot be read or has none."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the API keys file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    keys = [SecretStr(line.strip()) for line in lines if line.strip()]
    if not keys:
        raise ValueError(f"the API keys file {path} holds no key (one a line)")
    return keys


def describe_invalid(error: ValidationError) -> str:
    """One line naming each bad variable: ``CLASSIFIER_PORT: Input should be a valid integer, ...``."""
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        variable = "CLASSIFIER_" + "_".join(str(part) for part in problem["loc"][:1]).upper()
        problems.append(f"{variable}: {problem['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)
