"""A TF Serving client for the exported SIAM signatures: REST (row and columnar JSON) and gRPC.

Wire formats follow TF Serving's documentation: REST ``POST /v1/models/<name>[/versions/<v>]:predict``
with ``{"signature_name", "instances": [...]}`` (row) or ``{"signature_name", "inputs": {...}}``
(columnar); binary strings travel as ``{"b64": ...}``. gRPC sends a ``tensorflow.serving.PredictRequest``
to ``PredictionService/Predict`` (stubs from ``tensorflow-serving-api``). Inputs are checked against
the signature before anything is sent, so a wrong dtype or shape fails here with a clear message.
A model that reads the landmark stream (``landmark_points`` K > 0) takes ``landmarks`` float32
(B, T, K, 2) and ``landmark_mask`` float32 (B, T) in every signature, beside its frames.

URL forms: ``http://host:8501`` or ``https://...`` (REST), ``grpc://host:8500`` (gRPC); a REST URL may
carry ``/v1/models/<name>[/versions/<v>]``, which sets the model name and version.

Example:
    >>> client = ServingClient("http://localhost:8501", model_name="siam")
    >>> client.predict({"frames": clips})["age"]
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import cv2
import numpy as np
import requests

# Each signature's inputs: name -> (dtype kind, rank). "bytes" means a string tensor.
SIGNATURES: dict[str, dict[str, tuple[str, int]]] = {
    "serving_default": {"frames": ("uint8", 5)},
    "padded": {"frames": ("uint8", 5), "lengths": ("int32", 1)},
    "jpeg": {"jpeg_frames": ("bytes", 2)},
}
# The inputs every signature adds for a model that reads the landmark stream.
LANDMARK_SIGNATURE_INPUTS: dict[str, tuple[str, int]] = {"landmarks": ("float32", 4), "landmark_mask": ("float32", 2)}
REST_FORMATS = ("columnar", "row")


class ServingInputError(ValueError):
    """Inputs do not match the signature (names, dtype or shape); nothing was sent."""


class ServingError(RuntimeError):
    """The server answered with an error or could not be reached; the message names the URL."""


def signature_inputs(signature: str, landmark_points: int = 0) -> dict[str, tuple[str, int]]:
    """The inputs of ``signature`` (name -> (dtype kind, rank)) for a model reading ``landmark_points`` K."""
    if signature not in SIGNATURES:
        raise ServingInputError(f"unknown signature {signature!r}; the export has {', '.join(SIGNATURES)}")
    return {**SIGNATURES[signature], **(LANDMARK_SIGNATURE_INPUTS if landmark_points else {})}


def check_inputs(
    inputs: dict[str, Any], signature: str, crop_size: int | None = None, landmark_points: int = 0
) -> dict[str, np.ndarray]:
    """Validate ``inputs`` against ``signature`` (with the landmark stream of K = ``landmark_points``
    points when K > 0) and return them as arrays of the exact dtype."""
    expected = signature_inputs(signature, landmark_points)
    if set(inputs) != set(expected):
        raise ServingInputError(
            f"signature {signature!r} takes inputs {sorted(expected)}, got {sorted(inputs)}"
        )
    arrays = {}
    for name, (kind, rank) in expected.items():
        value = np.asarray(inputs[name])
        if kind == "bytes":
            if value.dtype.kind not in "SO" or not all(isinstance(v, bytes) for v in value.ravel()):
                raise ServingInputError(
                    f"{signature}.{name} must hold bytes (JPEG data), got dtype {value.dtype}"
                )
            value = value.astype(object)
        elif value.dtype != np.dtype(kind):
            if kind == "int32" and value.dtype.kind in "iu" and value.size and value.min() >= 0:
                value = value.astype(np.int32)
            elif kind == "float32" and value.dtype.kind in "fiu":
                value = value.astype(np.float32)
            else:
                raise ServingInputError(f"{signature}.{name} must be {kind}, got {value.dtype}")
        if value.ndim != rank:
            raise ServingInputError(f"{signature}.{name} must have rank {rank}, got shape {value.shape}")
        arrays[name] = value
    _check_shapes(arrays, signature, crop_size, landmark_points)
    return arrays


def _check_shapes(arrays: dict[str, np.ndarray], signature: str, crop_size: int | None, landmark_points: int) -> None:
    batch = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(batch.values())) > 1:
        raise ServingInputError(f"{signature}: inputs disagree on the batch size: {batch}")
    if landmark_points:
        clips = arrays.get("frames", arrays.get("jpeg_frames"))
        steps = clips.shape[:2]
        if arrays["landmarks"].shape != (*steps, landmark_points, 2):
            raise ServingInputError(f"{signature}.landmarks must be (B, T, K, 2) = {(*steps, landmark_points, 2)}, "
                                    f"got {arrays['landmarks'].shape}")
        if arrays["landmark_mask"].shape != steps:
            raise ServingInputError(f"{signature}.landmark_mask must be (B, T) = {steps}, "
                                    f"got {arrays['landmark_mask'].shape}")
    frames = arrays.get("frames")
    if frames is not None:
        if frames.shape[-1] != 3 or frames.shape[2] != frames.shape[3]:
            raise ServingInputError(
                f"{signature}.frames must be (B, T, S, S, 3) RGB crops, got {frames.shape}"
            )
        if crop_size and frames.shape[2] != crop_size:
            raise ServingInputError(
                f"{signature}.frames crops are {frames.shape[2]} px; the model needs {crop_size}"
            )
        if "lengths" in arrays and (arrays["lengths"].min() < 1 or arrays["lengths"].max() > frames.shape[1]):
            raise ServingInputError(f"{signature}.lengths must lie in [1, T={frames.shape[1]}]")


def rest_row_request(inputs: dict[str, np.ndarray], signature: str = "serving_default") -> dict[str, Any]:
    """TF Serving REST row format: one object per batch entry holding every named input."""
    batch = len(next(iter(inputs.values())))
    instances = [{name: _to_json(value[i]) for name, value in inputs.items()} for i in range(batch)]
    return {"signature_name": signature, "instances": instances}


def rest_columnar_request(
    inputs: dict[str, np.ndarray], signature: str = "serving_default"
) -> dict[str, Any]:
    """TF Serving REST columnar format: each named input as one whole (batched) value."""
    return {"signature_name": signature, "inputs": {name: _to_json(value) for name, value in inputs.items()}}


def parse_rest_response(
    body: dict[str, Any], output_names: tuple[str, ...] = ("age",)
) -> dict[str, np.ndarray]:
    """Outputs of a REST predict response (row ``predictions`` or columnar ``outputs``) as arrays."""
    if "error" in body:
        raise ServingError(str(body["error"]))
    if "outputs" in body:
        outputs = body["outputs"]
        if not isinstance(outputs, dict):
            outputs = {output_names[0]: outputs}
        return {name: np.asarray(value, dtype=np.float32) for name, value in outputs.items()}
    if "predictions" in body:
        rows = body["predictions"]
        if rows and isinstance(rows[0], dict):
            return {name: np.asarray([row[name] for row in rows], dtype=np.float32) for name in rows[0]}
        return {output_names[0]: np.asarray(rows, dtype=np.float32)}
    raise ServingError(f"unexpected response without 'outputs' or 'predictions': {list(body)}")


def grpc_request(
    inputs: dict[str, np.ndarray],
    model_name: str,
    signature: str = "serving_default",
    version: int | None = None,
) -> Any:
    """A ``tensorflow.serving.PredictRequest`` carrying ``inputs`` as TensorProtos."""
    # TensorFlow and the serving protos load only for gRPC, so the REST client stays light.
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request


def parse_grpc_response(response: Any) -> dict[str, np.ndarray]:
    """Outputs of a ``PredictResponse`` as arrays."""
    # TensorFlow loads only for gRPC, so the REST client stays light.
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


@dataclass
class ServingClient:
    """Calls one model on a TF Serving server over REST or gRPC (chosen by the URL scheme)."""

    url: str
    model_name: str = "siam"
    version: int | None = None
    timeout: float = 60.0
    rest_format: str = "columnar"
    crop_size: int | None = None
    landmark_points: int = 0  # K of the landmark stream the served model reads; 0 = pixels only

    def __post_init__(self) -> None:
        parsed = urlparse(self.url if "://" in self.url else f"http://{self.url}")
        if parsed.scheme not in ("http", "https", "grpc"):
            raise ValueError(f"{self.url}: server URL must start with http://, https:// or grpc://")
        if self.rest_format not in REST_FORMATS:
            raise ValueError(f"rest_format must be one of {REST_FORMATS}, got {self.rest_format!r}")
        match = re.search(r"/v1/models/([^/:]+)(?:/versions/(\d+))?", parsed.path)
        if match:
            self.model_name = match.group(1)
            self.version = int(match.group(2)) if match.group(2) else self.version
        self.protocol = "grpc" if parsed.scheme == "grpc" else "rest"
        self.host = parsed.netloc
        self.base = f"{parsed.scheme}://{parsed.netloc}"

    @property
    def model_url(self) -> str:
        """REST URL of the model (and version)."""
        version = f"/versions/{self.version}" if self.version is not None else ""
        return f"{self.base}/v1/models/{self.model_name}{version}"

    def predict(self, inputs: dict[str, Any], signature: str = "serving_default") -> dict[str, np.ndarray]:
        """Validate ``inputs`` for ``signature``, send them, and return the named outputs as arrays."""
        arrays = check_inputs(inputs, signature, self.crop_size, self.landmark_points)
        if self.protocol == "grpc":
            return self._predict_grpc(arrays, signature)
        build = rest_columnar_request if self.rest_format == "columnar" else rest_row_request
        return parse_rest_response(self._post(f"{self.model_url}:predict", build(arrays, signature)))

    def metadata(self) -> dict[str, Any]:
        """The model's signature metadata (REST ``GET .../metadata``)."""
        try:
            response = requests.get(f"{self.model_url}/metadata", timeout=self.timeout)
        except requests.RequestException as err:
            raise ServingError(f"{self.model_url}: cannot reach the server: {err}") from err
        return response.json()

    def _post(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = requests.post(url, json=payload, timeout=self.timeout)
        except requests.RequestException as err:
            raise ServingError(f"{url}: cannot reach the server: {err}") from err
        try:
            body = response.json()
        except ValueError as err:
            raise ServingError(
                f"{url}: HTTP {response.status_code}, not JSON: {response.text[:200]}"
            ) from err
        if response.status_code != 200:
            raise ServingError(f"{url}: HTTP {response.status_code}: {body.get('error', body)}")
        return body

    def _predict_grpc(self, arrays: dict[str, np.ndarray], signature: str) -> dict[str, np.ndarray]:
        # grpc and the serving protos are optional: only gRPC URLs need them.
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        request = grpc_request(arrays, self.model_name, signature, self.version)
        options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
        with grpc.insecure_channel(self.host, options=options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            try:
                response = stub.Predict(request, timeout=self.timeout)
            except grpc.RpcError as err:
                raise ServingError(f"grpc://{self.host}: {err.code().name}: {err.details()}") from err
        return parse_grpc_response(response)


def encode_jpeg_frames(frames: np.ndarray, mask: np.ndarray | None = None, quality: int = 95) -> np.ndarray:
    """(B, T, S, S, 3) uint8 RGB -> (B, T) JPEG bytes for the ``jpeg`` signature; padding becomes b""."""
    frames = np.asarray(frames)
    out = np.empty(frames.shape[:2], dtype=object)
    for b in range(frames.shape[0]):
        for t in range(frames.shape[1]):
            if mask is not None and mask[b, t] == 0:
                out[b, t] = b""
                continue
            ok, data = cv2.imencode(
                ".jpg", cv2.cvtColor(frames[b, t], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
            )
            if not ok:
                raise ValueError(f"JPEG encoding failed for clip {b} frame {t}")
            out[b, t] = data.tobytes()
    return out


def _to_json(value: Any) -> Any:
    """A numpy value as JSON: numbers as lists, bytes as TF Serving's ``{"b64": ...}`` objects."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    value = np.asarray(value)
    if value.dtype == object:
        return _to_json(value.item()) if value.ndim == 0 else [_to_json(v) for v in value]
    return value.tolist()
