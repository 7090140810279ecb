#!/usr/bin/env bash
# The image built and run for real, the way Kubernetes runs it (deploy/k8s/deployment.yaml): read-only root,
# tmpfs /tmp, every capability dropped, no-new-privileges, 512 MiB, 2 workers. Takes a few minutes (the first
# build downloads TensorFlow for the export stage); not part of the test suite.
#
#   bash scripts/container_test.sh                     # docker or podman, whichever answers
#   CONTAINER_ENGINE=podman bash scripts/container_test.sh
#
# Checks, each printed with ok or FAIL: the image keeps its HEALTHCHECK and has no TensorFlow or Keras; the
# container becomes ready (/readyz), classifies a JPEG and the DICOM fixture, passes its HEALTHCHECK, runs as
# uid 10001 with no capabilities on a read-only root; the HEALTHCHECK follows CLASSIFIER_HOST (a second
# container listening only on its own address); SIGTERM with batch predictions in flight answers them all and
# exits 0. Prints the image size and the container's memory. Exits 1 when a check fails.
#
# Settings: IMAGE (default xray-classifier:container-test), CLASSIFIER_API_KEY (sent as a Bearer token),
# CONTAINER_RUN_ARGS (more options for `run`, e.g. "-e CLASSIFIER_LOG_FORMAT=json"), CONTAINER_BUILD_ARGS (more
# options for `build`, e.g. --no-cache), SKIP_BUILD=1 (test IMAGE as it is). Podman keeps a HEALTHCHECK only in
# Docker-format images, so it builds with --format docker.
# Nothing is published beyond 127.0.0.1; the containers are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-xray-classifier:container-test}
NAME=xray-classifier-test-$$
HOST_NAME=classifier-host
BATCHES=8          # batch predictions in flight at SIGTERM, 16 images each: about one worker's in-flight bound
STOP_TIMEOUT_S=30  # as terminationGracePeriodSeconds

engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
    for candidate in docker podman; do
        if command -v "$candidate" >/dev/null && "$candidate" info >/dev/null 2>&1; then engine=$candidate; break; fi
    done
fi
[[ -n $engine ]] || { echo "no docker or podman that answers (install one, or set CONTAINER_ENGINE)" >&2; exit 2; }
auth=()
[[ -n ${CLASSIFIER_API_KEY:-} ]] && auth=(-H "Authorization: Bearer $CLASSIFIER_API_KEY")
read -r -a run_args <<< "${CONTAINER_RUN_ARGS:-}"
read -r -a build_args <<< "${CONTAINER_BUILD_ARGS:-}"
work=$(mktemp -d)
failed=0

cleanup() {
    "$engine" rm -f "$NAME" "$NAME-host" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

check() {  # check NAME COMMAND...: runs the command, prints ok or FAIL with what it printed
    local name=$1; shift
    if output=$("$@" 2>&1); then
        echo "ok    $name${output:+: $output}"
    else
        echo "FAIL  $name: $output"
        failed=$((failed + 1))
    fi
}

predict() {  # predict PORT FILE: the predicted class of one upload
    local answer
    answer=$(curl -sS -w '\n%{http_code}' "${auth[@]}" -F "image_file=@$2" "http://127.0.0.1:$1/pneumonia/predict")
    [[ ${answer##*$'\n'} == 200 ]] || { echo "HTTP ${answer##*$'\n'}: ${answer%$'\n'*}"; return 1; }
    grep -o '"predicted_class":"[^"]*"' <<< "$answer"
}

no_tensorflow() {
    "$engine" exec "$NAME" python -c "import importlib.util as u, sys
found = [m for m in ('tensorflow', 'keras') if u.find_spec(m)]
print(*found)
sys.exit(bool(found))"
}

keeps_healthcheck() {  # podman and buildah drop it from OCI-format images
    local healthcheck
    healthcheck=$("$engine" image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
    echo "$healthcheck"
    [[ $healthcheck == *'"Test":'* ]]
}

healthy() {  # healthy CONTAINER: the image's HEALTHCHECK passes (docker runs it every 10 s; podman without
             # systemd runs it only when asked)
    if [[ $engine == podman ]]; then
        podman healthcheck run "$1" && echo "podman healthcheck run: healthy"
        return
    fi
    local status
    for _ in $(seq 60); do
        status=$(docker inspect --format '{{.State.Health.Status}}' "$1")
        [[ $status == healthy ]] && { echo "docker health status: healthy"; return 0; }
        sleep 1
    done
    echo "docker health status: $status"; return 1
}

process_identity() {  # uid, capabilities and no_new_privs of the server (PID 1)
    local status
    status=$("$engine" exec "$NAME" cat /proc/1/status)
    local uid caps nnp
    uid=$(awk '/^Uid:/ {print $2}' <<< "$status"); caps=$(awk '/^CapEff:/ {print $2}' <<< "$status")
    nnp=$(awk '/^NoNewPrivs:/ {print $2}' <<< "$status")
    echo "uid $uid, effective capabilities $caps, no_new_privs $nnp"
    [[ $uid == 10001 && $caps =~ ^0+$ && $nnp == 1 ]]
}

read_only_root() {
    ! "$engine" exec "$NAME" touch /app/probe 2>/dev/null && "$engine" exec "$NAME" touch /tmp/probe \
        && echo "/app is read-only, /tmp writable"
}

ready() {  # ready PORT: /readyz 200 within 120 s of the start
    for _ in $(seq 240); do
        if curl -fsS -o /dev/null "${auth[@]}" "http://127.0.0.1:$1/readyz" 2>/dev/null; then
            awk -v s="$run_start" -v e="$(date +%s.%N)" 'BEGIN {printf "after %.1f s", e - s}'
            return 0
        fi
        sleep 0.5
    done
    echo "not ready in 120 s; log: $("$engine" logs "$NAME" 2>&1 | tail -5)"; return 1
}

healthcheck_follows_host() {  # the server on the container's own address only: 127.0.0.1 refused, HEALTHCHECK ok
    "$engine" run -d --name "$NAME-host" --hostname "$HOST_NAME" -e CLASSIFIER_HOST="$HOST_NAME" \
        "${run_args[@]}" "$IMAGE" >/dev/null 2>&1
    for _ in $(seq 120); do
        "$engine" logs "$NAME-host" 2>&1 | grep -q "loaded model" && break
        sleep 0.5
    done
    local loopback="import urllib.request as u; u.urlopen('http://127.0.0.1:5000/healthcheck', timeout=2)"
    if "$engine" exec "$NAME-host" python -c "$loopback" 2>/dev/null; then
        echo "the server answers on 127.0.0.1 although CLASSIFIER_HOST=$HOST_NAME"; return 1
    fi
    echo -n "CLASSIFIER_HOST=$HOST_NAME: 127.0.0.1 refused; "
    healthy "$NAME-host"
}

batch() {  # batch PORT N: one 16-image batch prediction; prints the status and the seconds it took
    curl -sS -o "$work/batch$2.json" -w '%{http_code} %{time_total}\n' "${auth[@]}" "${batch_files[@]}" \
        "http://127.0.0.1:$1/pneumonia/predict/batch"
}

stop_with_requests_in_flight() {  # BATCHES batches at once, SIGTERM once they are being classified
    local port=$1 one in_flight started answered exit_code i
    one=$(batch "$port" 0 | awk '{print $2}')  # how long one batch takes alone: wait that long, then stop
    for i in $(seq "$BATCHES"); do batch "$port" "$i" > "$work/batch$i.status" 2>&1 & done
    sleep "$one"
    in_flight=$(jobs -rp | wc -l)
    started=$(date +%s.%N)
    "$engine" stop -t "$STOP_TIMEOUT_S" "$NAME" >/dev/null 2>&1 &
    wait
    answered=$(awk '{print $1}' "$work"/batch*.status | sort | uniq -c \
        | awk '{printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2}')
    exit_code=$("$engine" inspect --format '{{.State.ExitCode}}' "$NAME")
    awk -v s="$started" -v e="$(date +%s.%N)" -v one="$one" \
        'BEGIN {printf "stopped %.1f s after SIGTERM; one batch alone takes %.2f s", e - s, one}'
    echo "; $in_flight of $BATCHES batches in flight at SIGTERM, answered $answered; exit status $exit_code;" \
        "last log line: $("$engine" logs "$NAME" 2>&1 | tail -1)"
    [[ $in_flight -gt 0 && $(cat "$work"/batch*.status | grep -c '^200 ') == "$BATCHES" && $exit_code == 0 ]]
}

echo "engine: $engine ($("$engine" --version))"
if [[ ${SKIP_BUILD:-} != 1 ]]; then
    format=(); [[ $engine == podman ]] && format=(--format docker)
    build_start=$(date +%s)
    "$engine" build "${format[@]}" "${build_args[@]}" -t "$IMAGE" . > "$work/build.log" 2>&1 \
        || { tail -30 "$work/build.log"; exit 1; }
    echo "built $IMAGE in $(( $(date +%s) - build_start )) s"
fi
echo "image size: $(( $("$engine" image inspect --format '{{.Size}}' "$IMAGE") / 1000000 )) MB"
check "image keeps its HEALTHCHECK" keeps_healthcheck

run_start=$(date +%s.%N)
"$engine" run -d --name "$NAME" --read-only --tmpfs /tmp:rw,size=64m --cap-drop ALL \
    --security-opt no-new-privileges --memory 512m -e CLASSIFIER_WORKERS=2 -p 127.0.0.1::5000 \
    "${run_args[@]}" "$IMAGE" > /dev/null 2> "$work/run.log" || { cat "$work/run.log"; exit 1; }
port=$("$engine" port "$NAME" 5000 | head -1 | sed 's/.*://')
check "ready (/readyz 200)" ready "$port"
check "prediction for a JPEG" predict "$port" fixtures/normal_1.jpeg
check "prediction for the DICOM fixture" predict "$port" fixtures/normal_1.dcm
check "HEALTHCHECK" healthy "$NAME"
check "non-root, no capabilities, no-new-privileges" process_identity
check "read-only root filesystem" read_only_root
check "no TensorFlow or Keras in the image" no_tensorflow
echo "memory: $("$engine" stats --no-stream --format '{{.MemUsage}}' "$NAME")"
check "HEALTHCHECK follows CLASSIFIER_HOST" healthcheck_follows_host
jpegs=(fixtures/*.jpeg)
batch_files=()
for i in $(seq 0 15); do batch_files+=(-F "image_file=@${jpegs[i % ${#jpegs[@]}]}"); done
check "SIGTERM with predictions in flight: all answered, exit 0" stop_with_requests_in_flight "$port"

if (( failed )); then echo "$failed check(s) FAILED"; exit 1; fi
echo "all checks passed"
