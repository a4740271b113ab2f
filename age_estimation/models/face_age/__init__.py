"""The face-age network of dlib-models (``age-v1.onnx``) rebuilt in Keras: layers, ONNX converter, loader."""
