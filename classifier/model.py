"""The CNN: a small grayscale convolutional network with an attention-gated pooling head."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from classifier.preprocessing import IMAGE_SIZE

ATTENTION_LAYER = "attention"
OUTPUT_LAYER = "probabilities"
POOLING_LAYER = "gated_pooling"
SERVED_OUTPUTS = ("probabilities", "attention", "features")
"""What a served model returns for a batch: class probabilities, attention maps, and the pooled features the
model decided on (`model_typicality` compares them with the training set's)."""


@keras.saving.register_keras_serializable(package="classifier")
class GatedAveragePooling(layers.Layer):
    """Global average pooling of features switched on or off by an attention map.

    Takes ``[features, attention]`` with attention in [0, 1] of shape
    (batch, h, w, 1); the gated average is divided by the map's mean so the
    pooled features keep their scale however much of the image is attended.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        features, attention = inputs
        gated = ops.mean(features * attention, axis=(1, 2))
        return gated / (ops.mean(attention, axis=(1, 2)) + self.epsilon)

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return (features_shape[0], features_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def conv_block(x, filters: int, name: str, pool: bool = True):
    """Two 3x3 convolutions with batch normalisation, then (optionally) 2x2 max pooling.

    Batch-norm statistics follow the data with momentum 0.9 (Keras' default 0.99 lags
    far behind on small datasets, whose epochs are a few steps long).
    """
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return layers.MaxPooling2D(name=f"{name}_pool")(x) if pool else x


def build_model(
    classes: tuple[str, ...],
    image_size: int = IMAGE_SIZE,
    filters: tuple[int, ...] = (16, 32, 64, 128),
    dropout: float = 0.5,
    name: str = "classifier",
) -> keras.Model:
    """Image (size, size, 1) in [0, 1] -> class probabilities (softmax over `classes`).

    The last block is not pooled, so the attention map has 1/8 of the input's
    resolution (8x8 for a 64x64 input).
    """
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = inputs
    for i, width in enumerate(filters, start=1):
        x = conv_block(x, width, name=f"block{i}", pool=i < len(filters))
    features = x
    attention = layers.Conv2D(64, 1, activation="relu", name="attention_hidden")(features)
    attention = layers.Conv2D(1, 1, activation="sigmoid", name=ATTENTION_LAYER)(attention)
    x = GatedAveragePooling(name=POOLING_LAYER)([features, attention])
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(64, activation="relu", name="head_dense")(x)
    outputs = layers.Dense(len(classes), activation="softmax", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name=name)


def with_attention(model: keras.Model) -> keras.Model:
    """The same network returning ``(probabilities, attention map)``.

    A single network outputs probabilities and has an `attention` layer; an
    ensemble (see `ensemble`) already returns both.
    """
    if len(model.outputs) == 2:
        return model
    return keras.Model(model.input, [model.output, model.get_layer(ATTENTION_LAYER).output])


def ensemble(members: list[keras.Model], name: str) -> keras.Model:
    """One model averaging its members' probabilities and attention maps: ``(probabilities, attention)``."""
    inputs = keras.Input(members[0].input_shape[1:], name="image")
    outputs = [
        keras.Model(member.input, with_attention(member).outputs, name=f"member{i}")(inputs)
        for i, member in enumerate(members, start=1)
    ]
    probabilities = layers.Average(name="probabilities")([p for p, _ in outputs])
    attention = layers.Average(name=ATTENTION_LAYER)([a for _, a in outputs])
    return keras.Model(inputs, [probabilities, attention], name=name)


def add_class_offsets(model: keras.Model, offsets: tuple[float, ...]) -> None:
    """Add `offsets` to the logits of `model`'s output layer (of each member's, for an average of networks): each
    network's probabilities become softmax(log(probabilities) + offsets) (`classifier.scores.ClassOffsets`)."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)] or [model]
    for member in members:
        output = member.get_layer(OUTPUT_LAYER)
        kernel, bias = output.get_weights()
        output.set_weights([kernel, bias + np.asarray(offsets, dtype=bias.dtype)])


def serving_network(model: keras.Model) -> keras.Model:
    """`model` returning `SERVED_OUTPUTS` by name, what the service runs (exported or in Keras).

    For an average of fold networks (`ensemble`) the probabilities and attention maps are averaged, as the
    ensemble does, and the features are each fold network's, side by side. A model whose outputs are already
    named (the input check's) is served as it is.
    """
    if isinstance(model.output, dict):
        return model
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)] or [model]
    inputs = keras.Input(model.input_shape[1:], name="image")
    outputs = [
        keras.Model(
            member.input,
            [member.outputs[0], member.get_layer(ATTENTION_LAYER).output, member.get_layer(POOLING_LAYER).output],
        )(inputs)
        for member in members
    ]
    if len(outputs) == 1:
        served = outputs[0]
    else:
        served = [
            layers.Average(name="probabilities")([p for p, _, _ in outputs]),
            layers.Average(name=ATTENTION_LAYER)([a for _, a, _ in outputs]),
            layers.Concatenate(name="features")([f for _, _, f in outputs]),
        ]
    return keras.Model(inputs, dict(zip(SERVED_OUTPUTS, served, strict=True)), name=model.name)
