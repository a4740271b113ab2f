"""The TF Serving client against TF Serving's documented wire formats.

The server binary cannot be installed here (DESIGN §3), so ``serve_rest`` and ``serve_grpc`` decode
requests as TF Serving does (row ``instances`` / columnar ``inputs`` JSON with ``{"b64": ...}`` for
bytes; ``PredictRequest`` TensorProtos), run the exported signature in-process and answer in TF
Serving's response formats; they also sit behind a real HTTP server and a real gRPC server.
"""

import base64
import json
import os
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from age_estimation.inference.runtimes import ServingPredictor
from age_estimation.inference.serving_client import (
    ServingClient,
    ServingError,
    ServingInputError,
    check_inputs,
    encode_jpeg_frames,
    grpc_request,
    parse_grpc_response,
    parse_rest_response,
    rest_columnar_request,
    rest_row_request,
)
from age_estimation.video.landmark_set import LANDMARK_COUNT
from tests.inference.dynamics_run import dynamics_export
from tests.tiny_run import CLIP, CROP, random_clips, random_landmarks

MODEL = "siam"


def _decode_json(value, dtype):
    """A JSON value as TF Serving reads it: {"b64": ...} objects become bytes, numbers stay numbers."""
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_json(v, dtype) for v in value]
    return value


def _to_tensor(value, spec):
    if spec.dtype == tf.string:
        return tf.constant(np.array(value, dtype=object))
    return tf.constant(np.asarray(value, dtype=spec.dtype.as_numpy_dtype))


def serve_rest(signatures, body):
    """(HTTP status, response JSON) for a REST predict body, per TF Serving's REST API."""
    name = body.get("signature_name", "serving_default")
    if name not in signatures:
        return 400, {"error": f'Serving signature name: "{name}" not found in signature def'}
    fn = signatures[name]
    specs = fn.structured_input_signature[1]
    if ("instances" in body) == ("inputs" in body):
        return 400, {"error": "JSON Value: must have exactly one of 'instances' or 'inputs'"}
    try:
        if "instances" in body:
            rows = body["instances"]
            inputs = {k: _to_tensor([_decode_json(r[k], s.dtype) for r in rows], s) for k, s in specs.items()}
        else:
            inputs = {k: _to_tensor(_decode_json(body["inputs"][k], s.dtype), s) for k, s in specs.items()}
        outputs = {k: v.numpy() for k, v in fn(**inputs).items()}
    except (tf.errors.OpError, ValueError, TypeError, KeyError) as err:
        return 400, {"error": getattr(err, "message", str(err))}
    if "instances" in body:
        count = len(next(iter(outputs.values())))
        return 200, {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(count)]}
    return 200, {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def serve_grpc(signatures, request):
    """A PredictResponse for a PredictRequest, as TF Serving's PredictionService answers it."""
    fn = signatures[request.model_spec.signature_name or "serving_default"]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for key, value in fn(**inputs).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


@pytest.fixture(scope="module")
def served(tiny_export):
    """The session's tiny pixel-only model and the signatures of its SavedModel export."""
    return tiny_export.model, tf.saved_model.load(str(tiny_export.savedmodel)).signatures


def serve_http(signatures):
    """A real HTTP server answering REST predict requests with ``signatures``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path not in (f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}/versions/1:predict"):
                return self._reply(404, {"error": f"Servable not found for request: {self.path}"})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._reply(*serve_rest(signatures, body))

        def _reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def serve_grpc_server(signatures):
    """A real gRPC PredictionService answering with ``signatures``; yields its grpc:// URL."""

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            if request.model_spec.name != MODEL:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {request.model_spec.name}")
            return serve_grpc(signatures, request)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"grpc://127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture(scope="module")
def http_url(served):
    yield from serve_http(served[1])


@pytest.fixture(scope="module")
def grpc_url(served):
    yield from serve_grpc_server(served[1])


@pytest.fixture(scope="module")
def dynamics_served(tmp_path_factory):
    """The shared tiny model that reads the landmark stream, and HTTP and gRPC URLs serving its SavedModel."""
    shared = dynamics_export(tmp_path_factory)
    signatures = tf.saved_model.load(str(shared.savedmodel)).signatures
    http, rpc = serve_http(signatures), serve_grpc_server(signatures)
    yield shared.model, next(http), next(rpc)
    for server in (http, rpc):
        next(server, None)


def padded_inputs():
    return {"frames": random_clips(3, seed=11), "lengths": np.array([CLIP, 6, 2], np.int32)}


def keras_ages(model, inputs):
    """The Keras model's ages for ``padded`` signature inputs (a padding frame has no landmarks)."""
    mask = (np.arange(CLIP)[None] < inputs["lengths"][:, None]).astype(np.float32)
    stream = {}
    if "landmarks" in inputs:
        stream = {"landmarks": inputs["landmarks"], "landmark_mask": inputs["landmark_mask"] * mask}
    return np.asarray(model({"frames": inputs["frames"], "mask": mask, **stream})["age"])[:, 0]


def stream_inputs():
    """``padded`` inputs with the landmark stream."""
    landmarks, found = random_landmarks(3, seed=13)
    return {**padded_inputs(), "landmarks": landmarks, "landmark_mask": found}


@pytest.mark.parametrize("build", [rest_row_request, rest_columnar_request])
def test_rest_payloads_decode_as_tf_serving_does(served, build):
    model, signatures = served
    inputs = padded_inputs()
    body = json.loads(json.dumps(build(inputs, "padded")))  # exactly what goes over the wire
    status, response = serve_rest(signatures, body)
    assert status == 200, response
    outputs = parse_rest_response(json.loads(json.dumps(response)))
    direct = signatures["padded"](
        frames=tf.constant(inputs["frames"]), lengths=tf.constant(inputs["lengths"])
    )
    for name in ("age", "temporal_attention", "spatial_attention"):
        np.testing.assert_allclose(outputs[name], direct[name].numpy(), atol=1e-5)
    assert np.max(np.abs(outputs["age"] - keras_ages(model, inputs))) <= 1e-4


def test_rest_jpeg_frames_travel_as_b64(served):
    _, signatures = served
    frames = random_clips(2, seed=12)
    mask = np.ones((2, CLIP), np.float32)
    mask[1, 5:] = 0
    jpegs = encode_jpeg_frames(frames, mask)
    assert jpegs[1, 5] == b"" and jpegs[0, 0][:2] == b"\xff\xd8"
    body = json.loads(json.dumps(rest_row_request({"jpeg_frames": jpegs}, "jpeg")))
    assert set(body["instances"][0]["jpeg_frames"][0]) == {"b64"}
    status, response = serve_rest(signatures, body)
    assert status == 200, response
    direct = signatures["jpeg"](jpeg_frames=tf.constant(jpegs.tolist()))
    np.testing.assert_allclose(parse_rest_response(response)["age"], direct["age"].numpy(), atol=1e-5)
    assert np.all(parse_rest_response(response)["temporal_attention"][1, 5:] == 0)


def test_grpc_request_survives_the_wire(served):
    model, signatures = served
    inputs = padded_inputs()
    request = grpc_request(inputs, MODEL, "padded", version=1)
    wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert (wire.model_spec.name, wire.model_spec.signature_name, wire.model_spec.version.value) == (
        MODEL,
        "padded",
        1,
    )
    assert wire.inputs["frames"].dtype == tf.uint8.as_datatype_enum
    assert wire.inputs["lengths"].dtype == tf.int32.as_datatype_enum
    response = predict_pb2.PredictResponse.FromString(serve_grpc(signatures, wire).SerializeToString())
    outputs = parse_grpc_response(response)
    assert np.max(np.abs(outputs["age"] - keras_ages(model, inputs))) <= 1e-4


@pytest.mark.parametrize("fmt", ["columnar", "row"])
def test_client_over_http(served, http_url, fmt):
    model, _ = served
    inputs = padded_inputs()
    client = ServingClient(f"{http_url}/v1/models/{MODEL}/versions/1", rest_format=fmt, crop_size=CROP)
    assert (client.model_name, client.version, client.protocol) == (MODEL, 1, "rest")
    outputs = client.predict(inputs, signature="padded")
    assert np.max(np.abs(outputs["age"] - keras_ages(model, inputs))) <= 1e-4
    assert outputs["spatial_attention"].shape == (3, CLIP, CROP // 2, CROP // 2)


def test_client_over_grpc_and_predictor(served, http_url, grpc_url):
    model, _ = served
    inputs = padded_inputs()
    outputs = ServingClient(grpc_url, model_name=MODEL).predict(inputs, signature="padded")
    assert np.max(np.abs(outputs["age"] - keras_ages(model, inputs))) <= 1e-4
    mask = (np.arange(CLIP)[None] < inputs["lengths"][:, None]).astype(np.float32)
    for url in (http_url, grpc_url):
        predictor = ServingPredictor(url, model_name=MODEL, spec={"crop_size": CROP})
        got = predictor.predict(inputs["frames"], mask)
        assert np.max(np.abs(got["age"] - keras_ages(model, inputs))) <= 1e-4


def test_bad_inputs_fail_before_anything_is_sent():
    client = ServingClient("http://127.0.0.1:9", crop_size=CROP)  # nothing listens there
    frames = random_clips(1)
    with pytest.raises(ServingInputError, match="must be uint8, got float32"):
        client.predict({"frames": frames.astype(np.float32)})
    with pytest.raises(ServingInputError, match=f"the model needs {CROP}"):
        client.predict({"frames": np.zeros((1, 2, 40, 40, 3), np.uint8)})
    with pytest.raises(ServingInputError, match=r"takes inputs \['frames', 'lengths'\]"):
        client.predict({"frames": frames}, signature="padded")
    with pytest.raises(ServingInputError, match="lengths must lie in"):
        client.predict({"frames": frames, "lengths": np.array([CLIP + 1])}, signature="padded")
    with pytest.raises(ServingInputError, match="rank 5"):
        client.predict({"frames": frames[0]})
    with pytest.raises(ServingError, match="cannot reach the server"):
        client.predict({"frames": frames})


def test_server_errors_are_reported_with_the_url(http_url, grpc_url):
    wrong_crop = {"frames": np.zeros((1, 2, CROP + 8, CROP + 8, 3), np.uint8)}
    with pytest.raises(ServingError, match="HTTP 400"):
        ServingClient(http_url).predict(wrong_crop)
    with pytest.raises(ServingError, match="NOT_FOUND"):
        ServingClient(grpc_url, model_name="other").predict({"frames": random_clips(1)})
    with pytest.raises(ValueError, match="must start with"):
        ServingClient("ftp://host:1")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["columnar", "row", "grpc"])
def test_the_landmark_stream_travels_over_rest_and_grpc(dynamics_served, protocol):
    model, http_url, grpc_url = dynamics_served
    inputs = stream_inputs()
    if protocol == "grpc":
        client = ServingClient(grpc_url, model_name=MODEL, landmark_points=LANDMARK_COUNT)
        wire = predict_pb2.PredictRequest.FromString(grpc_request(inputs, MODEL, "padded").SerializeToString())
        assert wire.inputs["landmarks"].dtype == tf.float32.as_datatype_enum
        assert [d.size for d in wire.inputs["landmarks"].tensor_shape.dim] == [3, CLIP, LANDMARK_COUNT, 2]
    else:
        client = ServingClient(http_url, rest_format=protocol, crop_size=CROP, landmark_points=LANDMARK_COUNT)
        build = rest_columnar_request if protocol == "columnar" else rest_row_request
        body = json.loads(json.dumps(build(inputs, "padded")))
        sent = body["inputs"] if protocol == "columnar" else body["instances"][0]
        assert {"landmarks", "landmark_mask"} <= set(sent)
    outputs = client.predict(inputs, signature="padded")
    diff = float(np.max(np.abs(outputs["age"] - keras_ages(model, inputs))))
    print(protocol, "serving parity with landmarks", diff)
    assert diff <= 1e-4
    jpeg = client.predict({"jpeg_frames": encode_jpeg_frames(inputs["frames"]), "landmarks": inputs["landmarks"],
                           "landmark_mask": inputs["landmark_mask"]}, signature="jpeg")
    assert jpeg["age"].shape == (3,)
    mask = (np.arange(CLIP)[None] < inputs["lengths"][:, None]).astype(np.float32)
    predictor = ServingPredictor(grpc_url if protocol == "grpc" else http_url, model_name=MODEL,
                                 spec={"crop_size": CROP, "landmark_points": LANDMARK_COUNT})
    assert predictor.client.landmark_points == LANDMARK_COUNT
    got = predictor.predict(inputs["frames"], mask, test_time_flip=False, landmarks=inputs["landmarks"],
                            landmark_mask=inputs["landmark_mask"])
    assert np.max(np.abs(got["age"] - keras_ages(model, inputs))) <= 1e-4


def test_landmark_inputs_are_checked_before_anything_is_sent():
    inputs = stream_inputs()
    arrays = check_inputs({**inputs, "landmarks": inputs["landmarks"].astype(np.float64)}, "padded", CROP,
                          LANDMARK_COUNT)
    assert arrays["landmarks"].dtype == np.float32 and arrays["landmark_mask"].dtype == np.float32
    with pytest.raises(ServingInputError, match=r"takes inputs \['frames', 'landmark_mask', 'landmarks', 'lengths'\]"):
        check_inputs(padded_inputs(), "padded", CROP, LANDMARK_COUNT)
    with pytest.raises(ServingInputError, match=r"takes inputs \['frames', 'lengths'\]"):
        check_inputs(inputs, "padded", CROP)  # a pixel-only model takes no stream
    with pytest.raises(ServingInputError, match=r"landmarks must be \(B, T, K, 2\)"):
        check_inputs({**inputs, "landmarks": inputs["landmarks"][:, :, :4]}, "padded", CROP, LANDMARK_COUNT)
    with pytest.raises(ServingInputError, match=r"landmark_mask must be \(B, T\)"):
        check_inputs({**inputs, "landmark_mask": inputs["landmark_mask"][:, :4]}, "padded", CROP, LANDMARK_COUNT)
    with pytest.raises(ServingInputError, match="landmarks must be float32"):
        check_inputs({**inputs, "landmarks": inputs["landmarks"].astype(str)}, "padded", CROP, LANDMARK_COUNT)


@pytest.mark.serving
@pytest.mark.skipif(not os.environ.get("TF_SERVING_URL"), reason="set TF_SERVING_URL to a running TF Serving")
def test_real_tf_serving_server():
    """Against a real server serving an export of this project (e.g. the commands in export/README.md)."""
    client = ServingClient(os.environ["TF_SERVING_URL"], model_name=os.environ.get("TF_SERVING_MODEL", MODEL))
    metadata = client.metadata() if client.protocol == "rest" else None
    crop = 64
    if metadata:
        frames_shape = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"][
            "frames"
        ]
        crop = int(frames_shape["tensor_shape"]["dim"][2]["size"])
    outputs = client.predict({"frames": np.full((2, 4, crop, crop, 3), 128, np.uint8)})
    assert outputs["age"].shape == (2,) and np.all(np.isfinite(outputs["age"]))
    np.testing.assert_allclose(outputs["temporal_attention"].sum(axis=1), 1.0, rtol=1e-4)
