"""Compile exported ONNX into device engines (TensorRT). Importing this package never imports TensorRT."""
