"""Outputs built with onnxruntime where the fused model's depth already is (no torch).

The fused ONNX (inference.fused) leaves its depth as an OrtValue on its execution provider's device
(OrtFusedPipeline.last_device_frame). Small ONNX graphs, written here with onnx.helper and cached per
camera size and output kind, take that OrtValue through IO binding on the same provider and build:
- the REP 117 depth image (pipeline.outputs.mark_out_of_range);
- the colourised rgb8 image (pipeline.colorize.colorize: cv2.convertScaleAbs's rounding and saturation,
  the colour map's LUT as a Gather, non-finite depth black);
- the PointCloud2 records (pipeline.geometry.pack_cloud: marked, decimated, range-filtered on z, back-
  projected with geometry's own float32 rays, PCL's 16 / 32-byte layouts with zero padding).
Each output is bound to a numpy view of its message buffer (pipeline.buffers), so onnxruntime writes it
there: in place on the CPU provider, one device -> host copy on CUDA. What stays on the host: the cloud's
rgb column (the camera image is a host array; PCL's 0x00RRGGBB bits cannot be made in standard ONNX
without a bit cast), the compression of an unorganised cloud, and the scan, which brings only its rows to
the host (marked by the same graph) and reduces them with pipeline.geometry's code, as
inference.device_outputs does for torch.

Every op is one IEEE float32 operation, comparison or copy, the same ones numpy does, so the bytes equal
the numpy builders' (test_ort_outputs holds them to it on CPU onnxruntime). The runtime (requirements.txt)
does not install onnx: without it there is no OrtDeviceFrame and numpy builds the outputs.
The pipeline uses them only where the depth is on a device: on the CPU provider numpy is faster (2.4 vs
5.7 ms per 640x480 frame) and OrtFusedPipeline.outputs_on_cpu (set by the tests) forces them.
Verified on onnxruntime's CPU provider only; CUDA is the same graph with the outputs bound to host
memory, not run here (no GPU in this project's sessions); the TensorRT provider is left out (its session
list minus TensorRT runs these graphs).
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from mde_ros.pipeline.buffers import message_buffer, view
from mde_ros.pipeline.colorize import colormap_table
from mde_ros.pipeline.geometry import (POINT_STEP, POINT_STEP_RGB, RGB_FIELD, XYZ_FIELDS, PackedCloud, Scan,
                                       check_cloud_args, decimated_intrinsics, pcl_rgb, rays, scan_fits,
                                       scan_of_band, scan_rows, scratch)
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import PackedImage

OPSET = 17  # onnxruntime >= 1.16 (requirements.txt) runs it
IR_VERSION = 8
DEPTH = "depth"  # every graph's input: the fused model's output, (1, H, W) float32 metres, NaN invalid
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
# cv2.convertScaleAbs to uint8 rounds with cvRound (a float -> int32 conversion): at or beyond 2^31 that
# gives INT_MIN, which saturates to 0, not 255. The graph does the same (unreachable for real depth).
_INT32_LIMIT = 2.0 ** 31


def onnx_available() -> bool:
    """Whether the graphs can be written (onnx is not in the runtime requirements)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- the graphs (serialised ModelProto bytes)

class _Graph:
    """Nodes, constants, inputs and outputs of one small graph under construction."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: list = []
        self.outputs: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, dtype) -> str:
        from onnx import numpy_helper

        name = self.name("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: list) -> None:
        self.nodes.append(self.helper.make_node("Identity", [value], [name]))
        self.outputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))

    def serialized(self, title: str) -> bytes:
        helper = self.helper
        graph = helper.make_graph(self.nodes, title, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mde_ros")
        model.ir_version = IR_VERSION
        return model.SerializeToString()


def _depth_input(g: _Graph, height: int, width: int, rows: tuple[int, int] | None = None,
                 decimation: int = 1) -> str:
    """The fused depth (1, H, W) as an H' x W' plane: rows start..stop, or every decimation-th pixel."""
    from onnx import TensorProto

    value = g.input(DEPTH, TensorProto.FLOAT, [1, height, width])
    if rows is not None and rows != (0, height):
        value = g.op("Slice", value, g.const([rows[0]], np.int64), g.const([rows[1]], np.int64),
                     g.const([1], np.int64))
        height = rows[1] - rows[0]
    if decimation > 1:
        value = g.op("Slice", value, g.const([0, 0], np.int64), g.const([height, width], np.int64),
                     g.const([1, 2], np.int64), g.const([decimation, decimation], np.int64))
        height, width = -(-height // decimation), -(-width // decimation)
    return g.op("Reshape", value, g.const([height, width], np.int64))


def _marked(g: _Graph, depth: str) -> str:
    """mark_out_of_range: below min_depth -Inf, then beyond max_depth +Inf (NaN fails both, stays NaN);
    the limits compared in float32, as numpy compares a float32 array with a Python float."""
    from onnx import TensorProto

    low = g.input("min_depth", TensorProto.FLOAT, [])
    high = g.input("max_depth", TensorProto.FLOAT, [])
    below = g.op("Where", g.op("Less", depth, low), g.const(-np.inf, np.float32), depth)
    return g.op("Where", g.op("Greater", below, high), g.const(np.inf, np.float32), below)


def depth_graph(height: int, width: int, rows: tuple[int, int] | None = None) -> bytes:
    """(1, H, W) depth, min_depth, max_depth -> `marked` (rows x W float32, REP 117)."""
    from onnx import TensorProto

    g = _Graph()
    first, last = rows if rows is not None else (0, height)
    g.output(_marked(g, _depth_input(g, height, width, rows)), "marked", TensorProto.FLOAT, [last - first, width])
    return g.serialized("mde_ros_marked_depth")


def colorized_graph(height: int, width: int, colormap: str) -> bytes:
    """(1, H, W) depth, top (float32 max_depth), scale (float32 255 / (max - min)) -> `rgb` (H x W x 3 uint8)."""
    from onnx import TensorProto

    g = _Graph()
    depth = _depth_input(g, height, width)
    top = g.input("top", TensorProto.FLOAT, [])
    scale = g.input("scale", TensorProto.FLOAT, [])
    level = g.op("Mul", g.op("Sub", top, depth), scale)
    zero = g.const(0.0, np.float32)
    # cvRound: NaN and >= 2^31 become INT_MIN -> 0; then max(level, 0), round half to even, saturate at 255.
    level = g.op("Where", g.op("Less", level, g.const(_INT32_LIMIT, np.float32)), level, zero)
    level = g.op("Min", g.op("Round", g.op("Max", level, zero)), g.const(255.0, np.float32))
    # non-finite depth: index 256, a black row appended to the LUT (a 3-channel Where costs 20x more)
    invalid = g.op("Or", g.op("IsNaN", depth), g.op("IsInf", depth))
    index = g.op("Where", invalid, g.const(256, np.int32), g.op("Cast", level, to=TensorProto.INT32))
    table = np.concatenate([colormap_table(colormap), np.zeros((1, 3), np.uint8)])
    g.output(g.op("Gather", g.const(table, np.uint8), index, axis=0), "rgb", TensorProto.UINT8, [height, width, 3])
    return g.serialized("mde_ros_colorized")


def cloud_graph(height: int, width: int, decimation: int, step: int) -> bytes:
    """(1, H, W) depth, min/max_depth, min/max_range, x_ray (W'), y_ray (H' x 1) -> `points`
    (H' x W' x step/4 float32: x, y, z, then zeros; pack_cloud's records before the rgb column)."""
    from onnx import TensorProto

    g = _Graph()
    z = _marked(g, _depth_input(g, height, width, decimation=decimation))
    rows, cols = -(-height // decimation), -(-width // decimation)
    low = g.input("min_range", TensorProto.FLOAT, [])
    high = g.input("max_range", TensorProto.FLOAT, [])
    x_ray = g.input("x_ray", TensorProto.FLOAT, [cols])
    y_ray = g.input("y_ray", TensorProto.FLOAT, [rows, 1])
    # geometry._copy_valid_depth: z > 0, z < Inf, min_range <= z <= max_range (with min_range 0 and
    # max_range Inf these two add nothing, as the numpy code that skips them)
    valid = g.op("And", g.op("Greater", z, g.const(0.0, np.float32)), g.op("Less", z, g.const(np.inf, np.float32)))
    valid = g.op("And", valid, g.op("GreaterOrEqual", z, low))
    valid = g.op("And", valid, g.op("LessOrEqual", z, high))
    z = g.op("Where", valid, z, g.const(np.nan, np.float32))
    axis = g.const([2], np.int64)
    planes = [g.op("Unsqueeze", g.op("Mul", z, x_ray), axis), g.op("Unsqueeze", g.op("Mul", z, y_ray), axis),
              g.op("Unsqueeze", z, axis)]
    padding = g.op("ConstantOfShape", g.const([rows, cols, step // 4 - 3], np.int64))
    g.output(g.op("Concat", *planes, padding, axis=2), "points", TensorProto.FLOAT, [rows, cols, step // 4])
    return g.serialized("mde_ros_cloud")


# ---------------------------------------------------------------- sessions on the fused session's provider

def output_providers(session) -> list:
    """The fused session's providers for the output graphs: CUDA (its device) and CPU; TensorRT left out
    (these graphs are elementwise; its engine build is not wired or verified here)."""
    options = session.get_provider_options()
    providers: list = []
    for provider in session.get_providers():
        if provider == CUDA_PROVIDER:
            providers.append((provider, {"device_id": options.get(provider, {}).get("device_id", "0")}))
        elif provider != TENSORRT_PROVIDER:
            providers.append(provider)
    return providers or [CPU_PROVIDER]


class OrtOutputs:
    """The output graphs' sessions (built on first use per key) on the given providers and options."""

    def __init__(self, ort, providers: list, options=None) -> None:
        self._ort, self.providers, self._options = ort, providers, options
        self._sessions: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def session(self, key: tuple, build: Callable[[], bytes]):
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = self._ort.InferenceSession(build(), sess_options=self._options,
                                                                 providers=self.providers)
            return self._sessions[key]

    def run(self, key: tuple, build: Callable[[], bytes], inputs: dict[str, Any], outputs: dict[str, np.ndarray]) -> None:
        """Run graph `key` with `inputs` (OrtValues as they are, numpy arrays from the host), writing each
        output into its C-contiguous host array (bound as it is: no copy of onnxruntime's own)."""
        session = self.session(key, build)
        binding = session.io_binding()
        for name, value in inputs.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        for name, array in outputs.items():
            binding.bind_ortvalue_output(name, self._ort.OrtValue.ortvalue_from_numpy(array))
        session.run_with_iobinding(binding)
        binding.clear_binding_outputs()  # the message buffers are referenced by nothing of onnxruntime's
        binding.clear_binding_inputs()


def _f32(value: float) -> np.ndarray:
    return np.array(value, np.float32)


class OrtDeviceFrame:
    """One frame's fused depth (an OrtValue, (1, H, W)) and the outputs built from it with onnxruntime:
    the methods inference.device_outputs.DeviceFrame has, which pipeline.outputs calls."""

    def __init__(self, depth, outputs: OrtOutputs) -> None:
        self.depth = depth
        self.outputs = outputs
        _, self.height, self.width = depth.shape()

    def _marked_rows(self, min_depth: float, max_depth: float, rows: tuple[int, int], out: np.ndarray) -> np.ndarray:
        self.outputs.run(("marked", self.height, self.width, rows),
                         lambda: depth_graph(self.height, self.width, rows),
                         {DEPTH: self.depth, "min_depth": _f32(min_depth), "max_depth": _f32(max_depth)},
                         {"marked": out})
        return out

    def depth_image(self, min_depth: float, max_depth: float) -> PackedImage:
        height, width = self.height, self.width
        data = message_buffer("depth", height * width * 4)
        self._marked_rows(min_depth, max_depth, (0, height), view(data, np.dtype("<f4"), (height, width)))
        return PackedImage(height, width, "32FC1", width * 4, data)

    def colorized(self, min_depth: float, max_depth: float, colormap: str) -> PackedImage:
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}..{max_depth}")
        height, width = self.height, self.width
        data = message_buffer("colorized", height * width * 3)
        self.outputs.run(("colorized", height, width, colormap), lambda: colorized_graph(height, width, colormap),
                         {DEPTH: self.depth, "top": _f32(max_depth), "scale": _f32(255.0 / (max_depth - min_depth))},
                         {"rgb": view(data, np.uint8, (height, width, 3))})
        return PackedImage(height, width, "rgb8", width * 3, data)

    def cloud(self, min_depth: float, max_depth: float, intr: Intrinsics, rgb: np.ndarray | None, decimation: int,
              min_range: float, max_range: float, organized: bool) -> PackedCloud:
        """pipeline.geometry.pack_cloud of the marked depth (rgb: the camera's HxWx3 uint8 image, on the host)."""
        check_cloud_args((self.height, self.width), intr, rgb, decimation, min_range, max_range)
        decimation = int(decimation)
        if decimation > 1:
            rgb = None if rgb is None else rgb[::decimation, ::decimation]
            intr = decimated_intrinsics(intr, decimation)
        height, width = intr.height, intr.width
        step = POINT_STEP_RGB if rgb is not None else POINT_STEP
        name = "points_rgb" if rgb is not None else "points_xyz"
        if organized:
            data = message_buffer(name, height * width * step)
            records = view(data, np.dtype("<f4"), (height * width, step // 4))
        else:
            records = scratch("cloud_" + name, (height * width, step // 4), np.dtype("<f4"))
        x_ray, y_ray = rays(intr)
        self.outputs.run(("cloud", self.height, self.width, decimation, step),
                         lambda: cloud_graph(self.height, self.width, decimation, step),
                         {DEPTH: self.depth, "min_depth": _f32(min_depth), "max_depth": _f32(max_depth),
                          "min_range": _f32(min_range), "max_range": _f32(max_range),
                          "x_ray": np.ascontiguousarray(x_ray), "y_ray": np.ascontiguousarray(y_ray)},
                         {"points": records.reshape(height, width, step // 4)})
        fields = list(XYZ_FIELDS)
        colour = None
        if rgb is not None:  # PCL's packed colour, on the host (geometry.pcl_rgb)
            colour = pcl_rgb(rgb).ravel()
            fields.append(RGB_FIELD)
        if organized:
            if colour is not None:
                records.view("<u4")[:, RGB_FIELD[1] // 4] = colour
            return PackedCloud(height, width, fields, step, step * width, data, False)
        keep = np.isfinite(records[:, 2])  # compressed on the host: only the valid points
        count = int(np.count_nonzero(keep))
        data = message_buffer(name + "_valid", count * step)
        kept = view(data, np.dtype("<f4"), (count, step // 4))
        np.compress(keep, records, axis=0, out=kept)
        if colour is not None:
            kept.view("<u4")[:, RGB_FIELD[1] // 4] = colour[keep]
        return PackedCloud(1, count, fields, step, step * count, data, True)

    def scan(self, min_depth: float, max_depth: float, intr: Intrinsics, scan_height: int, range_min: float,
             range_max: float) -> Scan | None:
        """pipeline.geometry.depth_to_scan: only its rows come to the host, marked by the graph; None where
        the scan cannot be made."""
        if (intr.height, intr.width) != (self.height, self.width) or not intr.is_valid() \
                or not scan_fits(intr, scan_height):
            return None
        rows = scan_rows(intr, scan_height)
        first, last = max(rows.start, 0), min(rows.stop, self.height)
        band = scratch("scan_rows", (last - first, self.width), np.dtype("<f4"))
        return scan_of_band(self._marked_rows(min_depth, max_depth, (first, last), band), intr, range_min,
                            range_max)



def self_check(outputs: OrtOutputs, device: tuple[str, int] = ("cpu", 0)) -> str | None:
    """None when the graphs, run on `outputs`' providers with a depth OrtValue on `device`, give the numpy
    builders' bytes for a small depth map with every kind of value; else what went wrong. Run once before
    a fused pipeline builds its outputs this way, so a provider that binds or computes differently (CUDA:
    not run in this project's sessions) falls back to numpy instead of publishing something else."""
    from mde_ros.pipeline.colorize import colorize
    from mde_ros.pipeline.geometry import depth_to_scan, pack_cloud
    from mde_ros.pipeline.outputs import mark_out_of_range

    depth = np.linspace(-1.0, 12.0, 12 * 10, dtype=np.float32).reshape(10, 12)
    depth[1, :4] = [np.nan, np.inf, -np.inf, 0.0]
    intr = Intrinsics(9.0, 8.0, 5.5, 4.5, 12, 10)
    rgb = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    low, high = 0.3, 9.0
    marked = mark_out_of_range(depth, low, high)
    try:
        value = outputs._ort.OrtValue.ortvalue_from_numpy(depth[None].copy(), *device)
        frame = OrtDeviceFrame(value, outputs)
        checks = {
            "depth image": (bytes(frame.depth_image(low, high).data), marked.tobytes()),
            "colourised image": (bytes(frame.colorized(low, high, "turbo").data),
                                 colorize(depth, low, high, "turbo").tobytes()),
            "scan": (frame.scan(low, high, intr, 3, 0.45, 8.0).ranges.tobytes(),
                     depth_to_scan(marked, intr, 3, 0.45, 8.0).ranges.tobytes())}
        for decimation, organized in ((1, True), (2, False)):
            checks[f"cloud (decimation {decimation})"] = (
                bytes(frame.cloud(low, high, intr, rgb, decimation, 0.5, 8.0, organized).data),
                bytes(pack_cloud(marked, intr, rgb, decimation, 0.5, 8.0, organized).data))
    except Exception as exc:  # any failure of the provider means: numpy builds the outputs
        return f"{type(exc).__name__}: {exc}"
    wrong = [name for name, (got, want) in checks.items() if got != want]
    return f"{', '.join(wrong)} differ from the numpy builders" if wrong else None
