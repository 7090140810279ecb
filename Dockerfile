# The inference service: docker build -t xray-classifier . && docker run -p 5000:5000 xray-classifier
# Port, workers and every other setting come from CLASSIFIER_* variables (-e CLASSIFIER_WORKERS=2).

# Build stage: TensorFlow exports each shipped model and the input check to LiteRT (weights/<name>.tflite), so the
# served export always matches the weights in the image. TensorFlow stays in this stage. The .npz files are the
# input check's and the models' feature statistics.
FROM python:3.11-slim AS export
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY classifier/ classifier/
COPY weights/ weights/
RUN python -m classifier.export weights/*.keras

# Serving stage: LiteRT instead of TensorFlow, no training, test or data packages, a non-root user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt ./
COPY deploy/requirements.txt deploy/
RUN pip install -r deploy/requirements.txt \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY classifier/ classifier/
COPY routers/ routers/
COPY --from=export /app/weights/*.json /app/weights/*.tflite /app/weights/*.npz weights/
USER 10001:10001
ENV CLASSIFIER_HOST=0.0.0.0 CLASSIFIER_PORT=5000 CLASSIFIER_WORKERS=1 CLASSIFIER_RUNTIME=litert
EXPOSE 5000
# GET /healthcheck on the address the server listens on (CLASSIFIER_HOST, loopback for 0.0.0.0 or ::). Podman and
# buildah keep a HEALTHCHECK only in Docker-format images: podman build --format docker.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "-m", "classifier.healthcheck"]
CMD ["python", "-m", "classifier.serve"]
