"""What an ONNX file's inputs and outputs are, and whether a model card matches them.

Read from the graph's declared I/O (onnxruntime with nothing run, else the `onnx` package; no torch),
so a wrong card is refused in a second by `mde-ros card` and before a TensorRT engine build that takes minutes, with one message
that says what to change.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mde_ros.models.card import CardError, ModelCard

Dim = int | str | None  # a static size, a symbolic name, or unknown


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[Dim, ...]
    elem_type: str  # "float", "float16", "int64", ...

    def static(self, axis: int) -> int | None:
        dim = self.shape[axis]
        return dim if isinstance(dim, int) and dim > 0 else None


@dataclass(frozen=True)
class ModelIO:
    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)

    def static_hw(self, name: str) -> tuple[int, int] | None:
        """(H, W) of an (N,3,H,W) input when both are fixed in the graph (a static export), else None."""
        tensor = self.input(name)
        if tensor is None or len(tensor.shape) != 4 or tensor.static(2) is None or tensor.static(3) is None:
            return None
        return tensor.static(2), tensor.static(3)


class ModelIOUnavailable(CardError):
    """Neither onnxruntime nor onnx is installed: the graph cannot be read here."""


_ORT_TYPES = {"tensor(float)": "float", "tensor(float16)": "float16", "tensor(double)": "double",
              "tensor(uint8)": "uint8", "tensor(int64)": "int64", "tensor(int32)": "int32"}


def read_model_io(path: str | Path) -> ModelIO:
    """Graph inputs (initialisers excluded) and outputs of an ONNX file; CardError if unreadable.

    Read through onnxruntime (the runtime has it; optimisations off, nothing run); the `onnx` package
    is the fallback where onnxruntime is absent (a TensorRT-only install).
    """
    path = Path(path)
    if not path.is_file():
        raise CardError(f"ONNX model not found: {path}")
    try:
        import onnxruntime
    except ImportError:
        return _read_with_onnx(path)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # corrupt file, or operators only another provider has: try the graph itself
        try:
            return _read_with_onnx(path)
        except ModelIOUnavailable:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise CardError(f"cannot read ONNX model {path}: {first}") from exc

    def info(arg) -> TensorInfo:
        shape = tuple(d if isinstance(d, (int, str)) or d is None else None for d in (arg.shape or ()))
        return TensorInfo(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))

    return ModelIO(path, tuple(info(a) for a in session.get_inputs()), tuple(info(a) for a in session.get_outputs()))


def _read_with_onnx(path: Path) -> ModelIO:
    try:
        import onnx
    except ImportError as exc:
        raise ModelIOUnavailable(f"cannot read {path}: neither onnxruntime nor onnx is installed") from exc
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several types for a missing or corrupt file
        raise CardError(f"cannot read ONNX model {path}: {exc}") from exc
    initialisers = {init.name for init in proto.graph.initializer}

    def info(value) -> TensorInfo:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in tensor_type.shape.dim)
        elem = onnx.TensorProto.DataType.Name(tensor_type.elem_type).lower() if tensor_type.elem_type else "?"
        return TensorInfo(value.name, shape, elem)

    return ModelIO(path, tuple(info(v) for v in proto.graph.input if v.name not in initialisers),
                   tuple(info(v) for v in proto.graph.output))


def _depth_like(tensor: TensorInfo) -> bool:
    shape = tensor.shape
    return len(shape) == 3 or (len(shape) == 4 and (not isinstance(shape[1], int) or shape[1] in (0, 1)))


def check_model_io(model: str | Path | ModelIO, card: ModelCard) -> ModelIO:
    """CardError (one message, what to change) unless the card fits the ONNX graph.

    Checks: the input and depth output exist (a lone tensor of another name is accepted, as the
    backends do), the input is float (N,3,H,W), the depth and sky outputs are (N,H,W) or (N,1,H,W),
    a static input has the card's size (and then no keep_aspect policy), sizes fit size_multiple.
    """
    io = model if isinstance(model, ModelIO) else read_model_io(model)
    where = f"{io.path.name} / card {card.name!r}"
    names_in = [t.name for t in io.inputs]
    names_out = [t.name for t in io.outputs]
    tensor_in = io.input(card.input_name) or (io.inputs[0] if len(io.inputs) == 1 else None)
    if tensor_in is None:
        raise CardError(f"{where}: input_name {card.input_name!r} is not among the model's inputs {names_in}")
    depth = io.output(card.output_name) or (io.outputs[0] if len(io.outputs) == 1 else None)
    if depth is None:
        raise CardError(f"{where}: output_name {card.output_name!r} is not among the model's outputs "
                        f"{names_out}; name the depth output")
    if card.sky_output is not None and io.output(card.sky_output) is None:
        raise CardError(f"{where}: sky_output {card.sky_output!r} is not among the model's outputs {names_out}")
    if len(tensor_in.shape) != 4 or tensor_in.static(1) not in (None, 3) or tensor_in.elem_type != "float":
        raise CardError(f"{where}: input {tensor_in.name!r} is {tensor_in.elem_type} {list(tensor_in.shape)}; "
                        "expected float32 (N,3,H,W)")
    for role, tensor in (("depth", depth), ("sky", io.output(card.sky_output) if card.sky_output else None)):
        if tensor is not None and not _depth_like(tensor):
            raise CardError(f"{where}: {role} output {tensor.name!r} has shape {list(tensor.shape)}; expected "
                            "(N,1,H,W) or (N,H,W)")
    static = io.static_hw(tensor_in.name)
    if static is not None:
        if card.resize_policy == "keep_aspect":
            raise CardError(f"{where}: the model's input is fixed at {static[0]}x{static[1]}, so resize_policy "
                            "'keep_aspect' (for dynamic-shape exports) cannot work; use 'stretch' or 'letterbox'")
        if static != (card.input_height, card.input_width):
            raise CardError(f"{where}: the model's input is fixed at {static[0]}x{static[1]} but the card says "
                            f"{card.input_height}x{card.input_width}; set input_height/input_width to match")
    return io
