"""One ONNX model per precision for every backend: fp16 conversion (fp32 I/O), INT8 as explicit Q/DQ
(onnxruntime static quantization), calibration images, and which file a backend runs for a precision."""
