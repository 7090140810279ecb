"""The service's settings: one object, read from ``CLASSIFIER_*`` environment variables.

``CLASSIFIER_MODELS_DIR=/srv/weights CLASSIFIER_LOG_FORMAT=json uvicorn classifier.app:app`` -- the README's
service section lists every setting. Lists (models, CORS origins) are comma-separated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from classifier.imaging import MAX_PIXELS
from classifier.inference import Runtime
from classifier.paths import WEIGHTS_DIR

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIFIER_", frozen=True)

    models_dir: Path = Field(WEIGHTS_DIR, description="folder holding <name>.keras and its card <name>.json")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="models to serve; empty serves every model in models_dir"
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
    host: str = Field("127.0.0.1", description="address `python -m classifier.serve` listens on")
    port: int = Field(5000, ge=1, le=65535, description="port `python -m classifier.serve` listens on")
    workers: int = Field(
        1,
        ge=1,
        description="server processes `python -m classifier.serve` starts; with several, each takes connections "
        "only once its models are loaded",
    )

    @field_validator("models", "cors_origins", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MIB)
