"""ONNX with fp16-STORED weights and fp32 compute and I/O: half the file size, the same graph.

Each large float32 initializer is stored as float16 and followed by a ``Cast`` back to float32, so
the graph's inputs, outputs and arithmetic stay fp32 (onnxruntime folds the casts when it loads the
model; TensorRT does the same). The only change is rounding each weight to fp16 (relative error
<= 2^-11), which moves a depth map by millimetres to centimetres; ``verify_onnx`` measures it.
"""
from __future__ import annotations

import numpy as np

FP16_SUFFIX = "__fp16"
MIN_ELEMENTS = 16      # tiny tensors (shapes, scalars) stay as they are


def store_weights_fp16(proto, min_elements: int = MIN_ELEMENTS):
    """``proto`` (an onnx.ModelProto, changed in place and returned) with fp16-stored weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    graph_inputs = {i.name for i in graph.input}
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in graph_inputs or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        if not np.isfinite(values).all() or np.abs(values).max(initial=0.0) > 65504.0:
            kept.append(init)                   # out of fp16 range: keep fp32 rather than overflow
            continue
        half = numpy_helper.from_array(values.astype(np.float16), init.name + FP16_SUFFIX)
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)        # casts first: the graph stays topologically sorted
    onnx.checker.check_model(proto)
    return proto
