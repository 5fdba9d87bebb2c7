"""Model building, training and ONNX export. Needs the `export` extra (TensorFlow, tf2onnx,
onnx); nothing in scanner/ or plugins/ imports this package."""
