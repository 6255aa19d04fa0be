"""The outputs of a fused model's depth as small ONNX graphs, for runtimes that keep that depth on a device.

The fused ONNX (inference.fused) leaves its depth on the device that made it: an OrtValue for onnxruntime
(inference.ort_outputs), a device buffer for TensorRT (inference.trt_outputs). The graphs written here with
onnx.helper (cached by their runtime per camera size and output kind) take that depth as their input and build:
- the REP 117 depth image (pipeline.outputs.mark_out_of_range);
- the colourised rgb8 image (pipeline.colorize.colorize: cv2.convertScaleAbs's rounding and saturation,
  the colour map's LUT as a Gather, non-finite depth black);
- the PointCloud2 records (pipeline.geometry.pack_cloud: marked, decimated, range-filtered on z, back-
  projected with geometry's own float32 rays, PCL's 16 / 32-byte layouts with zero padding).
GraphDeviceFrame turns them into the methods pipeline.outputs calls (those of inference.device_outputs'
torch DeviceFrame); its runtime subclass only says how a graph runs. What stays on the host: the cloud's
rgb column (the camera image is a host array; PCL's 0x00RRGGBB bits cannot be made in standard ONNX without
a bit cast), the compression of an unorganised cloud, and the scan, which brings only its rows to the host
and reduces them with pipeline.geometry's code.

Every op is one IEEE float32 operation, comparison or copy, the same ones numpy does, so onnxruntime's CPU
provider gives the numpy builders' bytes (test_ort_outputs). The ops and types are the ones TensorRT's
ONNX parser documents (onnx-tensorrt docs/operators.md, 10.x): float32 scalars are shape (1,) inputs, and
the colour LUT is gathered as float32 and cast to uint8 (TensorRT's Gather takes no uint8; uint8 exists
there only as a network input or output). The runtime (requirements.txt) does not install onnx: without it
no graph is written and numpy builds the outputs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mde_ros.pipeline.buffers import message_buffer, view
from mde_ros.pipeline.colorize import colormap_table
from mde_ros.pipeline.geometry import (POINT_STEP, POINT_STEP_RGB, RGB_FIELD, XYZ_FIELDS, PackedCloud, Scan,
                                       check_cloud_args, decimated_intrinsics, pcl_rgb, rays, scan_fits,
                                       scan_of_band, scan_rows, scratch)
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import PackedImage

OPSET = 17  # onnxruntime >= 1.16 (requirements.txt) and TensorRT >= 8.6 parse it
IR_VERSION = 8
DEPTH = "depth"  # every graph's input: the fused model's output, (1, H, W) float32 metres, NaN invalid
# cv2.convertScaleAbs to uint8 rounds with cvRound (a float -> int32 conversion): at or beyond 2^31 that
# gives INT_MIN, which saturates to 0, not 255. The graph does the same (unreachable for real depth).
_INT32_LIMIT = 2.0 ** 31
# How far a runtime's outputs may be from numpy's and still be used (the device-output contract): the same
# NaN / +-Inf pattern, finite values within 1e-4 m, colour levels within 1 (a last-bit difference at a
# rounding tie), every other byte (the cloud's rgb column and padding) equal.
TOLERANCE_M = 1e-4
TOLERANCE_LEVELS = 1


def onnx_available() -> bool:
    """Whether the graphs can be written (onnx is not in the runtime requirements)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def scalar(value: float) -> np.ndarray:
    """A graph's float32 scalar input: shape (1,), which broadcasts like a scalar in ONNX and TensorRT alike."""
    return np.array([value], np.float32)


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

    def scalar_input(self, name: str) -> str:
        from onnx import TensorProto

        return self.input(name, TensorProto.FLOAT, [1])

    def output(self, value: str, name: str, elem_type: int, shape: list) -> None:
        """`value` (the last op's result, used by no other op) becomes graph output `name`: renamed, not
        passed through an Identity, which TensorRT does not take on uint8."""
        producer = self.nodes[-1]
        if list(producer.output) != [value] or any(value in node.input for node in self.nodes):
            raise ValueError(f"graph output {name!r} must be the last op's only result, used by no op")
        producer.output[0] = name
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
    low = g.scalar_input("min_depth")
    high = g.scalar_input("max_depth")
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
    top = g.scalar_input("top")
    scale = g.scalar_input("scale")
    level = g.op("Mul", g.op("Sub", top, depth), scale)
    zero = g.const(0.0, np.float32)
    # cvRound: NaN and >= 2^31 become INT_MIN -> 0; then max(level, 0), round half to even, saturate at 255.
    level = g.op("Where", g.op("Less", level, g.const(_INT32_LIMIT, np.float32)), level, zero)
    level = g.op("Min", g.op("Round", g.op("Max", level, zero)), g.const(255.0, np.float32))
    # non-finite depth: index 256, a black row appended to the LUT (a 3-channel Where costs 20x more)
    invalid = g.op("Or", g.op("IsNaN", depth), g.op("IsInf", depth))
    index = g.op("Where", invalid, g.const(256, np.int32), g.op("Cast", level, to=TensorProto.INT32))
    table = np.concatenate([colormap_table(colormap), np.zeros((1, 3), np.uint8)]).astype(np.float32)
    rgb = g.op("Cast", g.op("Gather", g.const(table, np.float32), index, axis=0), to=TensorProto.UINT8)
    g.output(rgb, "rgb", TensorProto.UINT8, [height, width, 3])
    return g.serialized("mde_ros_colorized")


def cloud_graph(height: int, width: int, decimation: int, step: int) -> bytes:
    """(1, H, W) depth, min/max_depth, min/max_range, x_ray (W'), y_ray (H' x 1) -> `points`
    (H' x W' x step/4 float32: x, y, z, then zeros; pack_cloud's records before the rgb column)."""
    from onnx import TensorProto

    g = _Graph()
    z = _marked(g, _depth_input(g, height, width, decimation=decimation))
    rows, cols = -(-height // decimation), -(-width // decimation)
    low = g.scalar_input("min_range")
    high = g.scalar_input("max_range")
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


# ---------------------------------------------------------------- one frame's outputs through the graphs

class GraphDeviceFrame:
    """One frame's fused depth (H x W, on its runtime's device) and the outputs built from it with the
    graphs: the methods inference.device_outputs.DeviceFrame has, which pipeline.outputs calls.

    A runtime implements `_run` (graph `key`, written by `build` on first use; `inputs` host arrays besides
    the depth; each output written into its C-contiguous host array) and may replace `_marked_rows`."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width

    def _run(self, key: tuple, build: Callable[[], bytes], inputs: dict[str, np.ndarray],
             outputs: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def kept(self) -> "GraphDeviceFrame":
        """This frame, valid after the next estimate (a deferred build: replay's writer thread)."""
        raise NotImplementedError

    def _marked_rows(self, min_depth: float, max_depth: float, rows: tuple[int, int], out: np.ndarray) -> np.ndarray:
        self._run(("marked", self.height, self.width, rows), lambda: depth_graph(self.height, self.width, rows),
                  {"min_depth": scalar(min_depth), "max_depth": scalar(max_depth)}, {"marked": out})
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
        self._run(("colorized", height, width, colormap), lambda: colorized_graph(height, width, colormap),
                  {"top": scalar(max_depth), "scale": scalar(255.0 / (max_depth - min_depth))},
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
        self._run(("cloud", self.height, self.width, decimation, step),
                  lambda: cloud_graph(self.height, self.width, decimation, step),
                  {"min_depth": scalar(min_depth), "max_depth": scalar(max_depth), "min_range": scalar(min_range),
                   "max_range": scalar(max_range), "x_ray": np.ascontiguousarray(x_ray),
                   "y_ray": np.ascontiguousarray(y_ray)},
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
        """pipeline.geometry.depth_to_scan: only its rows come to the host, marked by a graph; None where
        the scan cannot be made."""
        if (intr.height, intr.width) != (self.height, self.width) or not intr.is_valid() \
                or not scan_fits(intr, scan_height):
            return None
        rows = scan_rows(intr, scan_height)
        first, last = max(rows.start, 0), min(rows.stop, self.height)
        band = scratch("scan_rows", (last - first, self.width), np.dtype("<f4"))
        return scan_of_band(self._marked_rows(min_depth, max_depth, (first, last), band), intr, range_min,
                            range_max)


# ---------------------------------------------------------------- the start-up check against numpy

def _floats_close(got: np.ndarray, want: np.ndarray) -> bool:
    """Same shape, same NaN / +Inf / -Inf pattern, finite values within TOLERANCE_M."""
    if got.shape != want.shape:
        return False
    for test in (np.isnan, np.isposinf, np.isneginf):
        if not np.array_equal(test(got), test(want)):
            return False
    finite = np.isfinite(want)
    return bool(np.all(np.abs(got[finite].astype(np.float64) - want[finite]) <= TOLERANCE_M))


def _clouds_close(got: PackedCloud, want: PackedCloud) -> bool:
    """xyz within tolerance, every other byte (rgb, padding) and the layout equal."""
    if (got.height, got.width, got.point_step, got.fields) != (want.height, want.width, want.point_step, want.fields):
        return False
    words = want.point_step // 4
    got_records = np.frombuffer(got.data, "<f4").reshape(-1, words)
    want_records = np.frombuffer(want.data, "<f4").reshape(-1, words)
    return _floats_close(got_records[:, :3], want_records[:, :3]) and \
        got_records[:, 3:].tobytes() == want_records[:, 3:].tobytes()


def self_check(frame_of: Callable[[np.ndarray], GraphDeviceFrame]) -> str | None:
    """None when the graphs, run through `frame_of(depth)` (an H x W float32 map put where the runtime's
    depth lives), give the numpy builders' outputs for a small depth map with every kind of value (within
    the device-output tolerance above); else what went wrong. Run once before a fused pipeline builds its
    outputs this way, so a device that binds or computes differently falls back to numpy instead of
    publishing something else."""
    from mde_ros.pipeline.colorize import colorize
    from mde_ros.pipeline.geometry import depth_to_scan, pack_cloud
    from mde_ros.pipeline.outputs import mark_out_of_range

    depth = np.linspace(-1.0, 12.0, 12 * 10, dtype=np.float32).reshape(10, 12)
    depth[1, :4] = [np.nan, np.inf, -np.inf, 0.0]
    intr = Intrinsics(9.0, 8.0, 5.5, 4.5, 12, 10)
    rgb = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    low, high = 0.3, 9.0
    marked = mark_out_of_range(depth, low, high)
    wrong = []
    try:
        frame = frame_of(depth)
        if not _floats_close(np.frombuffer(frame.depth_image(low, high).data, "<f4").reshape(marked.shape), marked):
            wrong.append("depth image")
        got = np.frombuffer(frame.colorized(low, high, "turbo").data, np.uint8).astype(np.int16)
        want = colorize(depth, low, high, "turbo").reshape(-1).astype(np.int16)
        if got.shape != want.shape or np.abs(got - want).max() > TOLERANCE_LEVELS:
            wrong.append("colourised image")
        if not _floats_close(frame.scan(low, high, intr, 3, 0.45, 8.0).ranges,
                             depth_to_scan(marked, intr, 3, 0.45, 8.0).ranges):
            wrong.append("scan")
        for decimation, organized in ((1, True), (2, False)):
            if not _clouds_close(frame.cloud(low, high, intr, rgb, decimation, 0.5, 8.0, organized),
                                 pack_cloud(marked, intr, rgb, decimation, 0.5, 8.0, organized)):
                wrong.append(f"cloud (decimation {decimation})")
    except Exception as exc:  # any failure of the runtime means: numpy builds the outputs
        return f"{type(exc).__name__}: {exc}"
    return f"{', '.join(wrong)} differ from the numpy builders" if wrong else None
