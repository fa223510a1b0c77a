"""INT8 post-training quantization back ends (ONNX Runtime for CPUs, modelopt for TensorRT), FP16, the accuracy gate."""
