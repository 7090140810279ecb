"""What several test modules share: fixture paths, generated X-rays and Kaggle folders, a live server.

Nothing here reads ../shared or the network.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from classifier.paths import PROJECT_ROOT

FIXTURES = PROJECT_ROOT / "fixtures"
"""A few small real X-rays (see fixtures/README.md)."""


def synthetic_xray(rng: np.random.Generator, sick: bool, size: int = 96) -> Image.Image:
    """A crude radiograph: dark lungs in a bright body; 'sick' ones get bright patches in the lungs."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = 0.75 - 0.5 * (((x - 0.3) / 0.16) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1)
    body -= 0.5 * (((x - 0.7) / 0.16) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1)
    if sick:
        for _ in range(3):
            cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.65)
            body += 0.45 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / 0.004))
    body += rng.normal(0, 0.05, body.shape)
    return Image.fromarray((np.clip(body, 0, 1) * 255).astype(np.uint8), mode="L")


def write_kaggle_folder(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """`root/train/{NORMAL,PNEUMONIA}` and `root/test/...` with patient-style names, as in the Kaggle zip."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", per_class // 3)):
        for folder, sick in (("NORMAL", False), ("PNEUMONIA", True)):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                name = f"person{i // 2}_bacteria_{i}.jpeg" if sick else f"IM-{i // 2:04d}-{i:04d}.jpeg"
                synthetic_xray(rng, sick).save(root / split / folder / name, quality=92)
    return root


def posed_xray(rng: np.random.Generator, sick: bool, size: int = 128) -> Image.Image:
    """A `synthetic_xray` turned and shifted at random: unlike the generator's own images, no two look alike
    to a perceptual hash, as no two patients' radiographs do."""
    return synthetic_xray(rng, sick, size).rotate(
        float(rng.uniform(-20, 20)), translate=tuple(rng.integers(-20, 20, 2).tolist())
    )


ADULT_ORIGINS = {"nih": "NIH ChestX-ray8/14", "cohen": "ieee8023/covid-chestxray-dataset"}


def write_covid_folder(root: Path, per_class: int = 8, seed: int = 1) -> Path:
    """`root/train/{Covid,Normal,Viral Pneumonia}` as in the Kaggle COVID-19 zip (no patient ids in names)."""
    rng = np.random.default_rng(seed)
    for folder, sick in {"Covid": True, "Normal": False, "Viral Pneumonia": True}.items():
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            posed_xray(rng, sick).save(root / "train" / folder / f"{i:02d}.jpeg", quality=90)
    return root


def write_adult_folder(root: Path, patients: int = 6, seed: int = 2) -> Path:
    """A local source: images of adults from two origins, two per patient, with a metadata.csv."""
    rng = np.random.default_rng(seed)
    rows = ["file,label,patient,source,view,age,sex,finding"]
    for label, sick, origins in (("normal", False, ("nih",)), ("pneumonia", True, ("nih", "cohen")),
                                 ("covid", True, ("cohen",))):  # fmt: skip
        (root / label).mkdir(parents=True, exist_ok=True)
        for patient in range(patients):
            origin = origins[patient % len(origins)]
            age = "" if patient == 0 else str(30 + patient)
            for image in range(2):
                name = f"{label}/{origin}_{patient:03d}_{image}.jpeg"
                synthetic_xray(rng, sick, size=112).save(root / name, quality=90)
                rows.append(f"{name},{label},{origin}-{label}-{patient},{ADULT_ORIGINS[origin]},PA,{age},F,")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def write_data_root(root: Path) -> Path:
    """A data root holding the three sources of the pneumonia and covid datasets, small and generated; one
    image of the children's dataset is also in the COVID-19 one under another name, as in the real data."""
    kermany = write_kaggle_folder(root / "chest_xray")
    covid = write_covid_folder(root / "covid19" / "Covid19-dataset")
    write_adult_folder(root / "adult_cxr")
    shutil.copy(kermany / "train" / "NORMAL" / "IM-0001-0003.jpeg", covid / "train" / "Normal" / "copy.jpeg")
    return root


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app: FastAPI, lifespan: str = "on") -> Iterator[tuple[str, int]]:
    """`app` served by uvicorn on a free loopback port, in a thread; yields the address."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` on a live loopback server (`live_server`), its models loaded; yields its base URL."""
    with live_server(app) as (host, port):
        deadline = time.monotonic() + 60
        while not app.state.registry.ready:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.05)
        yield f"http://{host}:{port}"


def wait_until_ready(client: TestClient, timeout_s: float = 60) -> None:
    """Until the app behind `client` (started: ``with client``) answers ``/readyz`` with 200."""
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


@dataclass
class Stage:
    name: str
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.steps if name == instruction]

    @property
    def env(self) -> dict[str, str]:
        pairs = (pair.split("=", 1) for args in self.args("ENV") for pair in shlex.split(args))
        return dict(pairs)


def healthcheck_command(stage: Stage) -> list[str]:
    """The exec-form command of the stage's HEALTHCHECK (its options before CMD left out)."""
    return json.loads(re.sub(r"^.*?CMD\s+", "", stage.args("HEALTHCHECK")[-1]))


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each a list of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", "", path.read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(name.strip(), base.strip()))
        else:
            stages[-1].steps.append((instruction.upper(), args.strip()))
    return stages
