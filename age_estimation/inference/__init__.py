"""Inference: a ``Predictor`` per runtime (``runtimes``), videos to ages (``predict``), TF-free ``edge``."""
