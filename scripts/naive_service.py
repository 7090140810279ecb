"""The prediction endpoint as the article wrote it, for the benchmark's side-by-side (never for serving).

``NAIVE_MODE=naive``: the model is built and its weights loaded on every request, then ``model.predict``.
``NAIVE_MODE=load-once``: the usual fix -- loaded once at start-up, ``model.predict`` per request.
Both decode the whole image (no DCT-domain reduction) and answer like the service's ``POST /<model>/predict``:

    NAIVE_MODE=naive NAIVE_MODEL=weights/pneumonia.keras uvicorn --app-dir scripts naive_service:app --port 5001
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from fastapi import FastAPI, File, UploadFile

from classifier.card import ModelCard
from classifier.imaging import decode_image
from classifier.model import build_model
from classifier.preprocessing import preprocess

MODE = os.environ.get("NAIVE_MODE", "naive")
MODEL = Path(os.environ.get("NAIVE_MODEL", "weights/pneumonia.keras"))
CARD = ModelCard.load(MODEL.with_suffix(".json"))

app = FastAPI(title=f"article-style {MODE} service")


def article_model() -> keras.Model:
    """What the article did inside its request handler: build the network, then load the weights into it."""
    model = build_model(tuple(CARD.classes), CARD.input.size)
    model.load_weights(MODEL)
    return model


LOADED = article_model() if MODE == "load-once" else None


@app.get("/readyz")
def readyz() -> dict:
    return {"status": "ready"}


@app.post(f"/{MODEL.stem}/predict")
def predict(image_file: UploadFile = File(...)) -> dict:  # noqa: B008 -- FastAPI's declaration style
    pixels = decode_image(image_file.file.read()).pixels
    model = LOADED or article_model()
    probabilities = model.predict(preprocess(pixels, CARD.input.size)[np.newaxis], verbose=0)[0]
    return {
        "predicted_class": CARD.classes[int(probabilities.argmax())],
        "probabilities": dict(zip(CARD.classes, probabilities.tolist(), strict=True)),
    }
