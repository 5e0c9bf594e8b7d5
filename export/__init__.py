"""Export: checkpoint → verified ONNX (and FP16 / TensorRT) → published Triton model."""
