"""DepthEstimator: one RGB image (+ intrinsics) -> metric depth at the image's resolution.

The ROS node, the bag tool and the CLI all go through `estimate`, so they agree to the bit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mde_ros.models.card import ModelCard
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.postprocess import (camera_rescale_factor, network_intrinsics, raw_to_depth,
                                          to_camera_resolution)
from mde_ros.pipeline.preprocess import RESIZE_POLICIES, InputError, preprocess, resize_info

if TYPE_CHECKING:
    from mde_ros.inference import Backend


@dataclass
class EstimatorConfig:
    min_depth: float | None = None  # None -> the card's
    max_depth: float | None = None
    camera_aware_rescale: bool = True
    resize_policy: str = "stretch"
    # Pre/post-processing on the backend's device (fused pipeline, models/fused.py) when the backend
    # offers one (torch on CUDA); else, and by default, the numpy path below.
    device_pipeline: bool = False

    def __post_init__(self) -> None:
        if self.resize_policy not in RESIZE_POLICIES:
            raise ValueError(f"resize_policy must be one of {RESIZE_POLICIES}, got {self.resize_policy!r}")
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
        """Load the model's card (sidecar, ONNX metadata or .pt bundle) and a backend for it."""
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

        fused = self._fused_pipeline()
        if fused is not None:
            return self._estimate_fused(fused, rgb, intrinsics, warnings)
        start = time.perf_counter()
        batch, info = preprocess(rgb, self.card, self.config.resize_policy)
        after_preprocess = time.perf_counter()
        raw = np.asarray(self.backend.infer(batch))
        after_network = time.perf_counter()

        if raw.ndim != 4 or raw.shape[:2] != (1, 1):
            raise RuntimeError(f"backend {self.backend.name!r} returned shape {raw.shape} for one image; "
                               "expected (1,1,H,W)")
        depth_net = raw_to_depth(raw[0, 0], self.card)
        rescale = 1.0
        if self.config.camera_aware_rescale and intrinsics is not None:
            rescale = camera_rescale_factor(network_intrinsics(intrinsics, info), self.card)
            if rescale != 1.0:
                depth_net *= np.float32(rescale)
        depth = to_camera_resolution(depth_net, info)  # bilinear: positive or NaN stays so
        done = time.perf_counter()
        timings = {"preprocess": after_preprocess - start, "network": after_network - after_preprocess,
                   "postprocess": done - after_network}
        return DepthResult(depth, intrinsics, rescale, timings, warnings)

    def _fused_pipeline(self):
        """The backend's device pipeline when asked for and able to reproduce this card/policy."""
        if not self.config.device_pipeline:
            return None
        offer = getattr(self.backend, "fused_pipeline", None)
        pipeline = offer() if offer is not None else None
        if pipeline is None:
            return None
        from mde_ros.models.fused import fused_supports

        return pipeline if fused_supports(self.card, self.config.resize_policy) else None

    def _estimate_fused(self, fused, rgb: np.ndarray, intrinsics: Intrinsics | None,
                        warnings: list[str]) -> DepthResult:
        """The same contract as the numpy path, with every pixel operation on the device."""
        height, width = rgb.shape[:2]
        rescale = 1.0
        if self.config.camera_aware_rescale and intrinsics is not None:
            card = self.card
            info = resize_info(height, width, card.input_height, card.input_width, self.config.resize_policy)
            rescale = camera_rescale_factor(network_intrinsics(intrinsics, info), card)
        depth, timings = fused.estimate(np.ascontiguousarray(rgb), self.card, self.config.resize_policy,
                                        rescale)
        return DepthResult(depth, intrinsics, rescale, timings, warnings)
