"""torch -> ONNX export, simplification, verification against PyTorch, and the deploy bundle."""
