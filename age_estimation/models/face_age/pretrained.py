"""``face-age-v1`` by name: the converted face-age network, its weights cached beside its ONNX asset.

The first load converts ``age-v1.onnx`` (``convert.py``, needs the ``onnx`` package) and writes the Keras
weights to ``<assets dir>/face-age-v1.<onnx sha256[:12]>.weights.h5``; later loads read that file and need
neither ``onnx`` nor the ONNX file's parsing. The name carries the source's checksum, so another ONNX
file never loads stale weights. A missing asset is an ``AssetError`` naming ``age-estimation assets``.
"""

from __future__ import annotations

import os
from pathlib import Path

from age_estimation.models.face_age.convert import convert_onnx
from age_estimation.models.face_age.resnet import CHIP_SIZE, FaceAgeResNet
from age_estimation.video.face_models import FACE_AGE, asset_path, assets_dir

FACE_AGE_V1 = "face-age-v1"
PRETRAINED = (FACE_AGE_V1,)


def weights_cache() -> Path:
    """Where the converted Keras weights of ``face-age-v1`` are cached."""
    return assets_dir() / f"{FACE_AGE_V1}.{FACE_AGE.sha256[:12]}.weights.h5"


def load_face_age(name: str = FACE_AGE_V1) -> FaceAgeResNet:
    """The pretrained network ``name`` with its 81-way softmax (converted once, then from the cache)."""
    if name not in PRETRAINED:
        raise ValueError(f"{name}: not a pretrained face-age model ({', '.join(PRETRAINED)})")
    source = asset_path(FACE_AGE)
    cache = weights_cache()
    if cache.is_file():
        model = FaceAgeResNet()
        model.build((None, CHIP_SIZE, CHIP_SIZE, 3))
        try:
            model.load_weights(cache)
            return model
        except (OSError, ValueError):
            pass  # a damaged cache: convert again below
    model = convert_onnx(source)
    _save_weights(model, cache)
    return model


def _save_weights(model: FaceAgeResNet, cache: Path) -> None:
    """Write the weights atomically (a temporary file, then a rename); a read-only cache is skipped."""
    tmp = cache.with_name(f".{os.getpid()}.{cache.name}")
    try:
        model.save_weights(tmp)
        tmp.replace(cache)
    except OSError:
        tmp.unlink(missing_ok=True)


def face_age_backbone(stages: int, weights: str | None = FACE_AGE_V1, name: str = "face_age_backbone") -> FaceAgeResNet:
    """The network without its top, cut after ``stages`` residual stages, giving its feature map.

    ``weights`` ``"face-age-v1"`` copies the pretrained network's stem and stages; None leaves them at
    their random initial values (a model rebuilt from its config before its own weights are loaded).
    """
    backbone = FaceAgeResNet(include_top=False, pooling=None, stages=stages, name=name)
    backbone.build((None, CHIP_SIZE, CHIP_SIZE, 3))
    if weights is None:
        return backbone
    source = load_face_age(weights)
    for mine, theirs in zip([backbone.stem_conv, backbone.stem_affine, *backbone.stages],
                            [source.stem_conv, source.stem_affine, *source.stages]):
        mine.set_weights(theirs.get_weights())
    return backbone
