"""Test-wide settings: quiet TensorFlow, a deterministic seed, and CPU-sized defaults."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")
