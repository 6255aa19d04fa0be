"""TensorRT build decisions that need no GPU: version gate, typing plan, profile, cache key and paths.

Which TensorRT is installed changes what a correct build looks like:

- < 10.0 (JetPack 6.0 ships 8.6): implicit-batch `create_network(0)`, no `execute_async_v3` by name:
  refused with a message saying which JetPack / pip package brings 10.x.
- 10.x: strongly typed networks (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`) take their precision
  from the ONNX (an fp16 model with fp32 I/O, or a Q/DQ int8 model). Weak typing with
  `BuilderFlag.FP16` / `INT8` still exists (deprecated since 10.12) and stays the path for DLA
  (10.x DLA builds are documented with those flags; DLA exists up to 10.7).
- 11.x: every network is strongly typed; `BuilderFlag.FP16/INT8`, `IInt8EntropyCalibrator2`,
  `int8_calibrator` and `set_calibration_profile` are gone.

Features are probed on the module (`hasattr`), not inferred from the version string alone, so a
build never reaches for an attribute the running TensorRT lacks. Everything here is pure and is
tested against small stand-ins of each version's API surface.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from mde_ros.inference.base import PRECISIONS
from mde_ros.inference.cache import cache_dir
from mde_ros.inference.spec import BackendOption
from mde_ros.models.card import ModelCard

TENSORRT = "tensorrt"  # the backend's name, and the Q/DQ recipe TensorRT builds (symmetric int8, S8S8)
MIN_VERSION = (10, 0)
DEFAULT_WORKSPACE_BYTES = 1 << 30
TYPING_MODES = ("auto", "strong", "weak")
INSTALL_HINT = ("pip install tensorrt cuda-python (x86_64 / SBSA, CUDA 12 or 13) or, on Jetson, "
                "JetPack 6.1+ (TensorRT 10.3: python3-libnvinfer) plus pip install cuda-python")


# The optimisation profile's options: the TensorRT backend's, and onnxruntime's TensorRT provider's.
PROFILE_OPTIONS = (
    BackendOption("max_batch", "tensorrt.max_batch", "max_batch", "--max-batch", "int", 1,
                  "largest batch of the TensorRT engine's profile (also onnxruntime's TensorRT provider)",
                  low=1, high=256),
    BackendOption("min_size", "tensorrt.min_size", "min_size", "--min-size", "size", "",
                  "smallest input HxW of the TensorRT profile, e.g. 240x320; empty: the card's size"),
    BackendOption("max_size", "tensorrt.max_size", "max_size", "--max-size", "size", "",
                  "largest input HxW of the TensorRT profile; empty: the card's size"),
)


# --------------------------------------------------------------------------- version and features

def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.post1' -> (10, 3, 0); '11.1' -> (11, 1). Unparseable -> ()."""
    numbers = []
    for part in str(text).split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
    return tuple(numbers)


def version_problem(version: str) -> str | None:
    """Why this TensorRT cannot run the backend, or None (>= 10.0)."""
    parsed = parse_version(version)
    if not parsed:
        return f"cannot read the TensorRT version {version!r}"
    if parsed < MIN_VERSION:
        return (f"TensorRT {version} is too old: this backend needs TensorRT >= 10.0 (explicit batch, "
                "tensor-name I/O, execute_async_v3). JetPack 6.0 ships 8.6: use JetPack 6.1/6.2 "
                "(TensorRT 10.3) or pip install 'tensorrt>=10'")
    return None


@dataclass(frozen=True)
class TrtFeatures:
    """What the running `tensorrt` module offers, probed by attribute (works for any version)."""

    version: str
    strongly_typed_flag: bool      # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists
    always_strongly_typed: bool    # 11.x: the flag is accepted but ignored, every network is typed
    fp16_flag: bool                # BuilderFlag.FP16 (weak typing; removed in 11.0)
    int8_flag: bool                # BuilderFlag.INT8 (removed in 11.0)
    gpu_fallback_flag: bool        # BuilderFlag.GPU_FALLBACK (DLA)

    @classmethod
    def probe(cls, trt: Any) -> "TrtFeatures":
        version = str(getattr(trt, "__version__", "0"))
        creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
        flags = getattr(trt, "BuilderFlag", None)
        return cls(version=version,
                   strongly_typed_flag=hasattr(creation, "STRONGLY_TYPED"),
                   always_strongly_typed=parse_version(version) >= (11,),
                   fp16_flag=hasattr(flags, "FP16"), int8_flag=hasattr(flags, "INT8"),
                   gpu_fallback_flag=hasattr(flags, "GPU_FALLBACK"))


# --------------------------------------------------------------------------- build configuration

@dataclass(frozen=True)
class TensorRTConfig:
    """How to build an engine. Validated on creation so mistakes surface before a long build."""

    precision: str = "fp32"
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    dla_core: int | None = None               # Jetson DLA core; layers DLA cannot run fall back to GPU
    max_batch: int = 1
    min_size: tuple[int, int] | None = None   # smallest (H, W) the engine accepts; None: the card's
    max_size: tuple[int, int] | None = None   # largest (H, W); None: the card's
    typing: str = "auto"                      # auto | strong | weak (see plan_build)

    def __post_init__(self) -> None:
        for name in ("min_size", "max_size"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"tensorrt precision must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.workspace_bytes, bool) or not isinstance(self.workspace_bytes, int) \
                or self.workspace_bytes <= 0:
            raise ValueError(f"workspace_bytes must be a positive int, got {self.workspace_bytes!r}")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {self.max_batch!r}")
        for name in ("min_size", "max_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                           or v <= 0 for v in size)):
                raise ValueError(f"{name} must be (height, width) with positive ints, got {size!r}")
        if self.typing not in TYPING_MODES:
            raise ValueError(f"typing must be one of {TYPING_MODES}, got {self.typing!r}")
        if self.dla_core is not None:
            if isinstance(self.dla_core, bool) or not isinstance(self.dla_core, int) or self.dla_core < 0:
                raise ValueError(f"dla_core must be an int >= 0 or None (GPU), got {self.dla_core!r}")
            if self.precision == "fp32":
                raise ValueError("DLA runs fp16 or int8 only: use precision 'fp16' or 'int8' with dla_core")
            # DLA engines have static shapes: one profile with min = opt = max.
            if self.max_batch != 1:
                raise ValueError(f"DLA needs a static input shape: max_batch must be 1 with dla_core, "
                                 f"got {self.max_batch}")
            if self.min_size is not None or self.max_size is not None:
                if self.min_size != self.max_size:
                    raise ValueError("DLA needs a static input shape: leave min_size/max_size unset (the "
                                     f"card's size) or make them equal, got {self.min_size} .. {self.max_size}")


class ProfileShapes(NamedTuple):
    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def trt_ep_options(self, input_name: str) -> dict[str, str]:
        """ONNX Runtime's TensorRT EP profile options (trt_profile_{min,opt,max}_shapes)."""
        def text(shape): return f"{input_name}:{'x'.join(str(v) for v in shape)}"

        return {"trt_profile_min_shapes": text(self.min), "trt_profile_opt_shapes": text(self.opt),
                "trt_profile_max_shapes": text(self.max)}


def _keep_aspect_range(card: ModelCard) -> tuple[tuple[int, int], tuple[int, int]]:
    """(min, max) (H, W) a keep_aspect card produces for cameras up to 2:1 either way (min_size /
    max_size override it): the fixed side at the card's size, the other up to twice (shorter side
    fixed) or down to half (longer side fixed), in multiples of size_multiple."""
    m = card.size_multiple
    h, w = card.input_height, card.input_width
    if card.resize_side == "shorter":
        return (h, w), (-(-2 * h // m) * m, -(-2 * w // m) * m)
    return (max(m, h // 2 // m * m), max(m, w // 2 // m * m)), (h, w)


def optimization_profile(card: ModelCard, config: TensorRTConfig) -> ProfileShapes:
    """min/opt/max input shapes: opt is one image at the card's size (what the node sends).

    With a DLA core the profile is static (min = opt = max), as DLA requires.
    """
    size = (card.input_height, card.input_width)
    if config.dla_core is not None:
        static = (1, 3, *(config.max_size or size))
        return ProfileShapes(static, static, static)
    default_low, default_high = _keep_aspect_range(card) if card.resize_policy == "keep_aspect" else (size, size)
    low, high = config.min_size or default_low, config.max_size or default_high
    if not (low[0] <= size[0] <= high[0] and low[1] <= size[1] <= high[1]):
        raise ValueError(f"min_size {low} <= card input size {size} <= max_size {high} must hold")
    return ProfileShapes(min=(1, 3, *low), opt=(1, 3, *size), max=(config.max_batch, 3, *high))


# --------------------------------------------------------------------------- typing plan

@dataclass(frozen=True)
class BuildPlan:
    """How to build for this precision on this TensorRT: which ONNX, which network flags."""

    model_variant: str                 # "fp32" (the model as given) | "fp16" (fp16 ONNX, fp32 I/O) | "int8" (Q/DQ)
    strongly_typed: bool               # create_network(1 << STRONGLY_TYPED)
    builder_flags: tuple[str, ...]     # names in trt.BuilderFlag to set
    dla_core: int | None = None
    notes: tuple[str, ...] = ()        # what a user should know (logged once, in describe())


def _unavailable(message: str) -> Exception:
    from mde_ros.inference.base import BackendUnavailable

    return BackendUnavailable(message)


def plan_build(features: TrtFeatures, precision: str, typing: str = "auto",
               dla_core: int | None = None) -> BuildPlan:
    """The build for `precision` that this TensorRT supports.

    auto: strongly typed with the precision carried by the ONNX (fp16 model / Q/DQ model) wherever
    the flag exists; on 10.x with a DLA core, the documented 10.x DLA path (weak typing with the
    FP16/INT8 builder flags, GPU fallback). strong / weak force one; weak is refused where the
    running TensorRT no longer has the builder flags (11.x).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"tensorrt precision must be one of {PRECISIONS}, got {precision!r}")
    if typing not in TYPING_MODES:
        raise ValueError(f"typing must be one of {TYPING_MODES}, got {typing!r}")
    weak_possible = not features.always_strongly_typed and (
        precision == "fp32" or (features.fp16_flag and (precision == "fp16" or features.int8_flag)))
    strong_possible = features.strongly_typed_flag or features.always_strongly_typed
    if typing == "auto":
        typing = "weak" if dla_core is not None and weak_possible else "strong"
        if typing == "strong" and not strong_possible:
            typing = "weak"
    if typing == "weak" and not weak_possible:
        raise _unavailable(f"TensorRT {features.version} has no weakly typed {precision} build (BuilderFlag.FP16 / "
                           "INT8 were removed in TensorRT 11): use typing 'strong' (or 'auto'), where the "
                           "precision comes from the fp16 / Q/DQ int8 ONNX")
    if typing == "strong" and not strong_possible:
        raise _unavailable(f"TensorRT {features.version} has no NetworkDefinitionCreationFlag.STRONGLY_TYPED: "
                           "use typing 'weak' or TensorRT >= 10.0")
    notes: list[str] = []
    flags: list[str] = []
    if typing == "strong":
        variant = precision
        notes.append(f"strongly typed: precision {precision} comes from the {variant} ONNX")
    else:
        # Weak typing: fp16 is a builder flag on the fp32 ONNX; int8 is explicit quantization (Q/DQ
        # model) with INT8 (+ FP16 for the layers left in float).
        variant = "int8" if precision == "int8" else "fp32"
        flags += {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
        notes.append(f"weakly typed (TensorRT {features.version} builder flags {flags or 'none'})")
    if dla_core is not None:
        if not features.gpu_fallback_flag:
            raise _unavailable(f"TensorRT {features.version} has no BuilderFlag.GPU_FALLBACK: DLA builds need it")
        flags.append("GPU_FALLBACK")
        notes.append(f"DLA core {dla_core}; layers DLA cannot run fall back to the GPU (BuilderFlag.GPU_FALLBACK)")
    return BuildPlan(model_variant=variant, strongly_typed=typing == "strong", builder_flags=tuple(flags),
                     dla_core=dla_core, notes=tuple(notes))


def network_creation_flags(trt: Any, plan: BuildPlan) -> int:
    """The `create_network` flags of a plan (0 for weak typing: networks are explicit batch since 10.0)."""
    if plan.strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


# --------------------------------------------------------------------------- GPU identity and cache key

@dataclass(frozen=True)
class GpuInfo:
    """What an engine and a timing cache are only valid for (besides the TensorRT version).

    Every Orin module reports "Orin": the compute capability, SM count and memory tell them apart.
    """

    name: str
    compute_capability: tuple[int, int]
    sm_count: int
    total_memory: int          # bytes
    cuda_runtime: int          # cudaRuntimeGetVersion, e.g. 12060
    driver: int                # cudaDriverGetVersion

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "compute_capability": f"{self.compute_capability[0]}.{self.compute_capability[1]}",
                "sm_count": self.sm_count, "total_memory": self.total_memory,
                "cuda_runtime": self.cuda_runtime, "driver": self.driver}

    def label(self) -> str:
        major, minor = self.compute_capability
        return f"{sanitize(self.name)}-sm{major}{minor}-{self.sm_count}sm"


def sanitize(text: str) -> str:
    """A file-name-safe lower-case token: 'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090'."""
    return re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-.") or "unknown"


def engine_key_parts(onnx_sha256: str, trt_version: str, gpu: GpuInfo, config: TensorRTConfig,
                     plan: BuildPlan, profile: ProfileShapes,
                     fused_shapes: dict[str, tuple] | None = None,
                     fused: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything an engine depends on, as plain JSON types (also written as the sidecar).

    `onnx_sha256` is the hash of the ONNX actually parsed (the fp16 / Q/DQ variant, not its source).
    A fused engine (inference/fused.py) also records its camera (`fused`: height, width, policy) and the
    static shape of each of its inputs (`fused_shapes`, fused_profile_shapes).
    """
    parts = {
        "onnx_sha256": onnx_sha256, "tensorrt": trt_version, "gpu": gpu.to_dict(),
        "precision": config.precision, "model_variant": plan.model_variant,
        "strongly_typed": plan.strongly_typed, "builder_flags": list(plan.builder_flags),
        "dla_core": config.dla_core, "workspace_bytes": config.workspace_bytes,
        "profile": {"min": list(profile.min), "opt": list(profile.opt), "max": list(profile.max)},
    }
    if fused is not None:
        parts["fused"] = {"height": int(fused["height"]), "width": int(fused["width"]), "policy": fused["policy"],
                          "inputs": {name: [list(s) for s in shapes] for name, shapes in (fused_shapes or {}).items()}}
    return parts


def engine_cache_key(parts: dict[str, Any]) -> str:
    """Readable prefix (model, GPU, TensorRT, precision, DLA) + a digest of all the parts."""
    gpu = parts["gpu"]
    cc = str(gpu["compute_capability"]).replace(".", "")
    key = (f"{parts['onnx_sha256'][:16]}-{sanitize(gpu['name'])}-sm{cc}-{gpu['sm_count']}sm"
           f"-trt{sanitize(parts['tensorrt'])}-{parts['precision']}")
    if parts.get("dla_core") is not None:
        key += f"-dla{parts['dla_core']}"
    if parts.get("fused") is not None:
        fused = parts["fused"]
        key += f"-fused{fused['width']}x{fused['height']}-{sanitize(fused['policy'])}"
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]
    return f"{key}-{digest}"


# --------------------------------------------------------------------------- fused engine (inference/fused.py)

FUSED_IMAGE, FUSED_RESCALE = "image", "rescale"


def fused_profile_shapes(height: int, width: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) of each fused-model input: static, one uint8 HxWx3 image and one factor (the
    model's batch axis is dynamic, so TensorRT needs a profile for both inputs)."""
    image, rescale = (1, int(height), int(width), 3), (1,)
    return {FUSED_IMAGE: (image, image, image), FUSED_RESCALE: (rescale, rescale, rescale)}


def fused_build_problem(plan: BuildPlan) -> str | None:
    """Why this build cannot use the fused model (None: it can). The fused ONNX carries fp32 weights:
    a strongly typed build of it is fp32, so strongly typed fp16 / int8 builds (whose precision lives in
    the fp16 / Q/DQ model) keep the numpy path; weak typing's FP16 flag applies to it as to the plain
    model. DLA engines keep the numpy path too (the resize matrices and uint8 input are GPU work)."""
    if plan.dla_core is not None:
        return "DLA engines run the plain network (the fused pre/post-processing is GPU work)"
    if plan.model_variant != "fp32":
        return (f"the fused model is fp32 and a strongly typed build takes its precision from the ONNX "
                f"(precision {plan.model_variant} runs the {plan.model_variant} model)")
    return None


@dataclass(frozen=True)
class EnginePaths:
    engine: Path
    sidecar: Path           # JSON of the key parts: why this engine exists
    timing_cache: Path      # shared by every engine of this TensorRT version and GPU


def engine_paths(key: str, trt_version: str, gpu: GpuInfo, root: Path | None = None) -> EnginePaths:
    folder = (root or cache_dir()) / "tensorrt"
    return EnginePaths(engine=folder / f"{key}.engine", sidecar=folder / f"{key}.json",
                       timing_cache=folder / f"timing-trt{sanitize(trt_version)}-{gpu.label()}.cache")


def ort_trt_cache_dir(ort_version: str, gpu_label: str = "cuda", root: Path | None = None) -> Path:
    """ONNX Runtime's TensorRT EP engine/timing cache folder, versioned: an onnxruntime-gpu upgrade
    (which brings another TensorRT) never meets the old engines."""
    return (root or cache_dir()) / "ort-tensorrt" / f"ort{sanitize(ort_version)}-{sanitize(gpu_label)}"
