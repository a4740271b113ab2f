"""ONNX -> Keras: the weights of ``age-v1.onnx`` read with the ``onnx`` package into a ``FaceAgeResNet``.

The graph is walked, not trusted: its input must be (N, 3, 64, 64), its convolutions must be the eleven
of ``resnet.py`` in order with the same kernel, stride and padding, each followed by its per-channel
``Mul``/``Add`` affine, then a ``Gemm`` to 81 classes and a ``Softmax``. Anything else is a
``ConversionError`` that says which node differs, so another file never loads into the wrong network.
Convolution kernels go from ONNX's (O, I, kh, kw) to Keras' (kh, kw, I, O); the graph is NCHW, the
Keras model NHWC (``FaceAgeResNet`` transposes nothing at run time: the weights carry the layout change).

``onnx`` is needed only here (the ``face-age`` extra); the converted weights are cached by
``pretrained.py`` so running the model needs neither ``onnx`` nor onnxruntime.

Example:
    >>> model = convert_onnx(asset_path(FACE_AGE))
    >>> model.predict(chips)  # (N, 81)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from age_estimation.models.face_age.resnet import CHIP_SIZE, NUM_CLASSES, FaceAgeResNet

INSTALL_HINT = "pip install -c constraints.txt -e '.[face-age]'"


class ConversionError(ValueError):
    """The ONNX file is not the face-age network ``FaceAgeResNet`` rebuilds; the message says where."""


def read_onnx(path: str | Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The ONNX graph of ``path`` and its initializers as float32 arrays by name."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ConversionError(f"converting {path} needs the onnx package: {INSTALL_HINT}") from err
    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError and others for a bad file
        raise ConversionError(f"{path}: not a readable ONNX model ({err})") from err
    weights = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer}
    return model.graph, weights


def onnx_weights(path: str | Path) -> list[dict[str, np.ndarray]]:
    """The network's weights in Keras layout, layer by layer: 11 convolutions (``kernel``, ``bias``,
    ``scale``, ``offset``) in graph order, then the classifier (``kernel``, ``bias``)."""
    graph, weights = read_onnx(path)
    _check_input(graph, path)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers: list[dict[str, np.ndarray]] = []
    for node in graph.node:
        if node.op_type == "Conv":
            layers.append(_conv_layer(node, weights, consumers, path))
        elif node.op_type == "Gemm":
            layers.append(_dense_layer(node, weights, path))
    ops = [n.op_type for n in graph.node]
    if ops[-1] != "Softmax":
        raise ConversionError(f"{path}: the graph ends with {ops[-1]}, not the Softmax over {NUM_CLASSES} ages")
    return layers


def convert_onnx(path: str | Path, include_top: bool = True) -> FaceAgeResNet:
    """A built ``FaceAgeResNet`` carrying the weights of the ONNX file at ``path``."""
    layers = onnx_weights(path)
    model = FaceAgeResNet(include_top=include_top)
    model.build((None, CHIP_SIZE, CHIP_SIZE, 3))
    assign_weights(model, layers, str(path))
    return model


def keras_conv_layers(model: FaceAgeResNet) -> list[tuple[Any, Any]]:
    """(Conv2D, ChannelAffine) pairs of ``model`` in graph order: the stem, then two per residual block."""
    pairs = [(model.stem_conv, model.stem_affine)]
    for block in model.stages:
        pairs += [(block.conv1, block.affine1), (block.conv2, block.affine2)]
    return pairs


def assign_weights(model: FaceAgeResNet, layers: list[dict[str, np.ndarray]], origin: str) -> None:
    """Set ``onnx_weights``' arrays on ``model``; a count, kernel or stride that differs is a ``ConversionError``."""
    pairs = keras_conv_layers(model)
    convs, dense = layers[:-1], layers[-1]
    if len(convs) != len(pairs) or "scale" in dense:
        raise ConversionError(f"{origin}: {len(convs)} convolutions and a classifier expected {len(pairs)} and one")
    for index, ((conv, affine), found) in enumerate(zip(pairs, convs)):
        expected = (*conv.kernel.shape, int(conv.strides[0]), conv.padding)
        seen = (*found["kernel"].shape, found["stride"], found["padding"])
        if tuple(expected) != tuple(seen):
            raise ConversionError(f"{origin}: convolution {index} is {seen} (kh, kw, in, out, stride, padding); "
                                  f"the network needs {expected}")
        conv.set_weights([found["kernel"], found["bias"]])
        affine.set_weights([found["scale"], found["offset"]])
    if model.classifier is not None:
        if tuple(model.classifier.kernel.shape) != dense["kernel"].shape:
            raise ConversionError(f"{origin}: classifier is {dense['kernel'].shape}, not {model.classifier.kernel.shape}")
        model.classifier.set_weights([dense["kernel"], dense["bias"]])


def _check_input(graph: Any, path: str | Path) -> None:
    dims = [d.dim_value or d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    if dims[1:] != [3, CHIP_SIZE, CHIP_SIZE]:
        raise ConversionError(f"{path}: input is {dims}, not (N, 3, {CHIP_SIZE}, {CHIP_SIZE}) RGB chips")


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv_layer(node: Any, weights: dict[str, np.ndarray], consumers: dict[str, list[Any]],
                path: str | Path) -> dict[str, Any]:
    """One Conv node with the Mul (scale) and Add (offset) nodes that follow it, in Keras layout."""
    attrs = _attributes(node)
    kernel = weights[node.input[1]]
    size = kernel.shape[-1]
    pads, stride = list(attrs.get("pads", [0] * 4)), int(attrs.get("strides", [1, 1])[0])
    if pads == [0] * 4:
        padding = "valid"
    elif stride == 1 and pads == [size // 2] * 4:
        padding = "same"
    else:
        raise ConversionError(f"{path}: {node.name}: padding {pads} with stride {stride} is not 'same' or 'valid'")
    mul = _only_consumer(node.output[0], "Mul", consumers, path)
    add = _only_consumer(mul.output[0], "Add", consumers, path)
    channels = kernel.shape[0]
    return {
        "kernel": np.transpose(kernel, (2, 3, 1, 0)),
        "bias": weights[node.input[2]] if len(node.input) > 2 else np.zeros(channels, np.float32),
        "scale": _per_channel(mul, weights, channels, path),
        "offset": _per_channel(add, weights, channels, path),
        "stride": stride,
        "padding": padding,
    }


def _dense_layer(node: Any, weights: dict[str, np.ndarray], path: str | Path) -> dict[str, np.ndarray]:
    attrs = _attributes(node)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise ConversionError(f"{path}: {node.name}: a Gemm other than x @ W + b")
    kernel = weights[node.input[1]]
    kernel = kernel.T if attrs.get("transB", 0) else kernel
    return {"kernel": kernel, "bias": weights[node.input[2]]}


def _only_consumer(output: str, op_type: str, consumers: dict[str, list[Any]], path: str | Path) -> Any:
    found = consumers.get(output, [])
    if len(found) != 1 or found[0].op_type != op_type:
        raise ConversionError(f"{path}: {output} feeds {[n.op_type for n in found]}, not one {op_type} (its affine)")
    return found[0]


def _per_channel(node: Any, weights: dict[str, np.ndarray], channels: int, path: str | Path) -> np.ndarray:
    """The (C,) constant of an affine Mul/Add node (stored (1, C, 1, 1))."""
    names = [name for name in node.input if name in weights]
    if len(names) != 1 or weights[names[0]].size != channels:
        raise ConversionError(f"{path}: {node.name}: no per-channel constant of {channels} values")
    return weights[names[0]].reshape(channels)
