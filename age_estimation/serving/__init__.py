"""Deployment: SavedModel for TF Serving (``savedmodel``), TFLite (``tflite``), the serving ``client``."""
