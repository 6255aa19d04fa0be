"""DepthEstimator: one RGB image (+ intrinsics) -> metric depth at the image's resolution.

The ROS node, the bag tool and the CLI all go through `estimate`, so they agree to the bit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mde_ros.models.card import ModelCard
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.postprocess import (camera_rescale_factor, network_intrinsics, raw_to_depth,
                                          raw_to_relative, sky_mask, to_camera_resolution)
from mde_ros.pipeline.preprocess import RESIZE_POLICIES, InputError, preprocess, resize_info

if TYPE_CHECKING:
    from mde_ros.inference import Backend


SKY_DEPTHS = ("too_far", "invalid", "keep")  # +Inf, NaN (REP 117), the network's value


@dataclass
class EstimatorConfig:
    min_depth: float | None = None  # None -> the card's
    max_depth: float | None = None
    camera_aware_rescale: bool = True
    resize_policy: str | None = None  # None (or "card"): the model card's; else an override
    sky_depth: str = "too_far"  # pixels the model's sky output marks: +Inf (REP 117 too far), NaN, or kept
    # Pre/post-processing on the backend's device (fused pipeline, inference/fused.py) when the backend
    # offers one and the card is one it reproduces: torch on CUDA (CUDA graphs, any size); onnxruntime
    # and TensorRT run the fused ONNX beside the model for frames of its camera size and policy.
    # Else, and by default, numpy.
    device_pipeline: bool = False

    def __post_init__(self) -> None:
        if self.resize_policy == "card":
            self.resize_policy = None
        if self.resize_policy is not None and self.resize_policy not in RESIZE_POLICIES:
            raise ValueError(f"resize_policy must be 'card' or one of {RESIZE_POLICIES}, got {self.resize_policy!r}")
        if self.sky_depth not in SKY_DEPTHS:
            raise ValueError(f"sky_depth must be one of {SKY_DEPTHS}, got {self.sky_depth!r}")
        if self.min_depth is not None and self.min_depth < 0:
            raise ValueError(f"min_depth must be >= 0, got {self.min_depth}")
        if self.min_depth is not None and self.max_depth is not None and not self.min_depth < self.max_depth:
            raise ValueError(f"need min_depth < max_depth, got {self.min_depth}..{self.max_depth}")


@dataclass
class DepthResult:
    depth: np.ndarray  # HxW float32 metres at the input image's resolution; NaN where invalid
    intrinsics: Intrinsics | None  # of the input image; None if unknown or unusable (see warnings)
    rescale: float  # camera-aware factor applied
    timings: dict[str, float]  # seconds: "preprocess", "network", "postprocess"
    warnings: list[str] = field(default_factory=list)  # why given intrinsics were not used
    # Relative (affine-invariant) models: their inverse depth at the image's resolution, and `depth`
    # all NaN (no metres until scale anchors fit scale and shift: postprocess.relative_to_depth).
    relative: np.ndarray | None = None
    sky: np.ndarray | None = None  # HxW bool where the model's sky output says sky (cards with sky_output)
    # Whether `depth` holds metres: False for a relative model until scale anchoring fills `depth`
    # (postprocess.relative_to_depth) and sets it True.
    is_metric: bool = True
    # The same depth on the device that made it (torch's device pipeline: inference.device_outputs.DeviceFrame;
    # the fused model on onnxruntime / TensorRT: inference.ort_outputs.OrtDeviceFrame / trt_outputs.TrtDeviceFrame),
    # valid until the next estimate (`kept()` for longer): outputs are built there. None on every other path.
    device: Any = None
    # CPU seconds of the calling thread inside the backend call (time.thread_time): the network's whole
    # CPU cost when the backend computes on the calling thread (onnxruntime with one intra-op thread),
    # that thread's share otherwise; the fused model's call includes its pre/post-processing graph.
    network_cpu_s: float | None = None


class DepthEstimator:
    def __init__(self, backend: "Backend", card: ModelCard, config: EstimatorConfig | None = None):
        self.backend = backend
        self.card = card
        self.config = config if config is not None else EstimatorConfig()
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {self.min_depth}..{self.max_depth}")

    # Properties, so a node that swaps `config` at run time (parameter change) sees the new range.
    @property
    def min_depth(self) -> float:
        """The valid depth range: the config's, else the card's."""
        return self.card.min_depth if self.config.min_depth is None else float(self.config.min_depth)

    @property
    def max_depth(self) -> float:
        return self.card.max_depth if self.config.max_depth is None else float(self.config.max_depth)

    @classmethod
    def from_model(cls, model_path: str | Path, backend: str = "auto", device: str = "cpu",
                   precision: str = "fp32", config: EstimatorConfig | None = None,
                   **backend_options) -> "DepthEstimator":
        """Load the model's card (sidecar, ONNX metadata or .pt bundle) and a backend on the model file as
        given (an fp32 ONNX, or a .pt bundle on torch). The node, the commands and replay load through
        mde_ros.modelfiles.load_estimator, which also makes fp16 / int8 models and ONNX exports."""
        from mde_ros.inference import create_backend
        from mde_ros.models.card import load_card_for

        card = load_card_for(model_path)
        runner = create_backend(backend, model_path, card, device=device, precision=precision,
                                **backend_options)
        return cls(runner, card, config)

    def _usable_intrinsics(self, intrinsics: Intrinsics | None, height: int, width: int,
                           warnings: list[str]) -> Intrinsics | None:
        if intrinsics is None:
            return None
        if not intrinsics.is_valid():
            warnings.append(f"camera intrinsics are invalid (fx={intrinsics.fx}, fy={intrinsics.fy}; an "
                            "all-zero K means an uncalibrated camera): no metric rescale, cloud or scan")
            return None
        if (intrinsics.width, intrinsics.height) != (width, height):
            warnings.append(f"camera intrinsics are for {intrinsics.width}x{intrinsics.height} but the "
                            f"image is {width}x{height}: ignored (no metric rescale, cloud or scan)")
            return None
        return intrinsics

    def estimate(self, rgb: np.ndarray, intrinsics: Intrinsics | None = None) -> DepthResult:
        """Depth in metres; impossible values are NaN, out-of-range values are kept for the caller
        to mark (REP 117, outputs.encode_depth)."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"expected an HxWx3 uint8 RGB image, got "
                             f"{getattr(rgb, 'shape', type(rgb).__name__)} {getattr(rgb, 'dtype', '')}")
        height, width = rgb.shape[:2]
        warnings: list[str] = []
        intrinsics = self._usable_intrinsics(intrinsics, height, width, warnings)

        fused = self._fused_pipeline(height, width)
        if fused is not None:
            return self._estimate_fused(fused, rgb, intrinsics, warnings)
        card = self.card
        start = time.perf_counter()
        batch, info = preprocess(rgb, card, self.config.resize_policy)
        after_preprocess = time.perf_counter()
        cpu_before = time.thread_time()
        sky_raw = None
        if card.sky_output is not None:
            outputs = self.backend.infer_outputs(batch)
            raw, sky_raw = np.asarray(outputs["depth"]), outputs.get("sky")
        else:
            raw = np.asarray(self.backend.infer(batch))
        network_cpu = time.thread_time() - cpu_before
        after_network = time.perf_counter()

        if raw.ndim == 3:  # (N,H,W) from a backend that left it so
            raw = raw[:, None]
        if raw.ndim != 4 or raw.shape[:2] != (1, 1):
            raise RuntimeError(f"backend {self.backend.name!r} returned shape {raw.shape} for one image; "
                               "expected (1,1,H,W) or (1,H,W)")
        relative = None
        rescale = 1.0
        if card.is_relative:  # no metres without anchors: the relative image, depth all NaN
            relative = to_camera_resolution(raw_to_relative(raw[0, 0], card), info, card.output_interpolation)
            depth = np.full(relative.shape, np.nan, np.float32)
        else:
            depth_net = raw_to_depth(raw[0, 0], card)
            rescale = self._rescale_factor(intrinsics, info, warnings)
            if rescale != 1.0:
                depth_net *= np.float32(rescale)
            depth = to_camera_resolution(depth_net, info, card.output_interpolation)
        sky = None
        if sky_raw is not None:
            sky_raw = np.asarray(sky_raw)
            sky = sky_mask(sky_raw.reshape(sky_raw.shape[-2:]), info, card.sky_threshold)
            if self.config.sky_depth != "keep" and relative is None:
                depth[sky] = np.inf if self.config.sky_depth == "too_far" else np.nan
        done = time.perf_counter()
        timings = {"preprocess": after_preprocess - start, "network": after_network - after_preprocess,
                   "postprocess": done - after_network}
        return DepthResult(depth, intrinsics, rescale, timings, warnings, relative, sky, is_metric=relative is None,
                           network_cpu_s=network_cpu)

    def _rescale_factor(self, intrinsics: Intrinsics | None, info, warnings: list[str]) -> float:
        """The camera-aware factor; a canonical-camera model's output is defined for that camera, so
        it is always rescaled (and warned about when the intrinsics are missing)."""
        card = self.card
        if (self.config.camera_aware_rescale or card.canonical_focal_px) and intrinsics is not None:
            return camera_rescale_factor(network_intrinsics(intrinsics, info), card)
        if card.canonical_focal_px and intrinsics is None:
            warnings.append(f"model {card.name!r} predicts depth for a canonical camera (f = "
                            f"{card.canonical_focal_px:g} px at network resolution): without this camera's "
                            "intrinsics its depth is not metric for it (send CameraInfo)")
        return 1.0

    def _fused_pipeline(self, height: int, width: int):
        """The backend's device pipeline when asked for and able to reproduce this card/policy for a
        height x width frame; None: the numpy path (decided per frame: a fused ONNX model runs only
        the camera size and policy it was exported for, the pipeline's `accepts` says which)."""
        if not self.config.device_pipeline:
            return None
        offer = getattr(self.backend, "fused_pipeline", None)
        pipeline = offer() if offer is not None else None
        if pipeline is None:
            return None
        from mde_ros.models.fused_meta import fused_supports  # torch-free

        policy = self._policy()
        if not fused_supports(self.card, policy):
            return None
        accepts = getattr(pipeline, "accepts", None)  # absent: any size (torch's per-shape CUDA graphs)
        return pipeline if accepts is None or accepts(height, width, policy) else None

    def _policy(self) -> str:
        return self.card.resize_policy if self.config.resize_policy is None else self.config.resize_policy

    def _estimate_fused(self, fused, rgb: np.ndarray, intrinsics: Intrinsics | None,
                        warnings: list[str]) -> DepthResult:
        """The same contract as the numpy path, with every pixel operation on the device."""
        card, policy = self.card, self._policy()
        height, width = rgb.shape[:2]
        info = resize_info(height, width, card.input_height, card.input_width, policy, card.resize_side,
                           card.size_multiple)
        rescale = self._rescale_factor(intrinsics, info, warnings)
        cpu_before = time.thread_time()
        depth, timings = fused.estimate(np.ascontiguousarray(rgb), card, policy, rescale)
        network_cpu = time.thread_time() - cpu_before
        device = None
        device_depth = getattr(fused, "last_device_depth", None)
        if device_depth is not None:
            from mde_ros.inference.device_outputs import DeviceFrame

            device = DeviceFrame(device_depth)
        else:  # the fused model on onnxruntime / TensorRT (inference.ort_outputs / trt_outputs) or None
            device = getattr(fused, "last_device_frame", None)
        return DepthResult(depth, intrinsics, rescale, timings, warnings, device=device, network_cpu_s=network_cpu)
