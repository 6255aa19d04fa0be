"""What a backend declares about itself (BackendSpec), and the one set of precision rules.

Each backend module ends with one `SPEC = BackendSpec(...)`: its name, the devices and precisions it
runs, its options (one BackendOption row each: create_backend keyword, ROS parameter, launch
argument, CLI flag, type, range, help), its place in `auto`'s order, how its heavy dependency is
found, and which model file it loads for a precision. `mde_ros.inference.registry` lists the specs;
the factory, the option table (`inference/options.py`), the launch file and the CLI are made from
them, so adding a backend is one module and one line in that list.

Pure: no numpy, no runtime packages (importing a spec must never import torch / onnxruntime).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

AUTO = "auto"  # the backend name that picks one of the registered backends
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MODEL_VARIANTS = ("fp32", "fp16", "int8")  # model files: the model, its fp16 conversion, its Q/DQ int8 model
DEVICE_WORDS = {"cpu": "the CPU", "cuda": "a CUDA GPU"}


@dataclass(frozen=True)
class BackendOption:
    """One backend (or model-file) option, in every language it is spoken.

    ROS parameters cannot be "unset", so `unset` is the value meaning "the backend's default".
    `backends` is filled in by the option table (the specs that list the row).
    """

    option: str                 # create_backend keyword
    param: str                  # ROS parameter (read-only)
    launch: str                 # launch argument
    flag: str                   # CLI flag
    kind: str                   # "int" | "bool" | "str" | "size" | "path" | "switch" (auto/always/never -> unset/True/False)
    unset: Any                  # the ROS value meaning "backend default"
    help: str
    low: int | None = None      # inclusive range of an int
    high: int | None = None
    choices: tuple[str, ...] = ()
    scale: int = 1              # ROS/CLI value * scale = option value (workspace in MiB -> bytes)
    backends: tuple[str, ...] = ()

    @property
    def ros_type(self) -> type:
        """The Python type of its ROS parameter, launch argument and CLI value."""
        return {"int": int, "bool": bool}.get(self.kind, str)


# A switch whose default the backend decides. Not on/off or true/false: YAML (params files, `-p name:=on`)
# would read those as booleans, and a ROS string parameter refuses a boolean.
SWITCH_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True)
class ModelRequest:
    """Which model file a backend loads: made (or found) above inference, by mde_ros.modelfiles.

    format "onnx": an ONNX graph (a .pt bundle is exported first); "pt": the .pt bundle itself.
    variant: "fp32" the model as given | "fp16" its fp16 conversion (fp32 I/O) | "int8" its Q/DQ model,
    made with `int8_target`'s recipe ("onnxruntime" U8S8, "tensorrt" S8S8).
    """

    source: Path
    format: str = "onnx"
    variant: str = "fp32"
    int8_target: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """Everything the factory, `auto`, the option table and the docs need to know about one backend."""

    name: str
    factory: Callable[..., Any]           # (model file, card, device, precision, *, source, **options) -> Backend
    devices: tuple[str, ...]              # device kinds it runs on
    precisions: Mapping[str, tuple[str, ...]]   # device kind -> precisions it runs there
    unavailable: Callable[[], str | None]  # why it cannot run here (its heavy package / GPU), None: it can
    options: tuple[BackendOption, ...] = ()
    auto_rank: int | None = None          # place in auto's order (lower first); None: auto never picks it
    auto_files: tuple[str, ...] = (".onnx",)   # model files auto picks it for
    loads: str = "onnx"                   # "onnx" (a .pt bundle is exported first) | "pt"
    option_precisions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # a true option adds these
    precision_hint: str = ""              # appended to its precision error
    # (precision, device, options, card) -> the ModelRequest's variant and int8 target; default: the
    # precision's own file (fp32 / fp16 / int8 models, int8 made with this backend's recipe).
    model_variant: Callable[[str, str, dict, Any], tuple[str, str]] | None = None
    # (device, options) -> the options this backend takes when auto picks it on `device`; default: its own.
    auto_options: Callable[[str, dict], dict] | None = None

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.option for o in self.options)

    def runs(self, device: str, precision: str, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The precisions it runs on `device` with these options (empty: not on that device at all)."""
        kind = device_kind(device)
        if kind not in self.devices:
            return ()
        allowed = tuple(self.precisions.get(kind, ()))
        for option, extra in self.option_precisions.items():
            if (options or {}).get(option):
                allowed += tuple(p for p in extra if p not in allowed)
        return allowed

    def request(self, source: Path, device: str, precision: str, options: dict, card: Any) -> ModelRequest:
        """The model file it needs for this precision (may raise BackendUnavailable while deciding)."""
        if self.loads == "pt":
            return ModelRequest(Path(source), "pt", "fp32", "")
        if self.model_variant is not None:
            variant, target = self.model_variant(precision, device, options, card)
        else:
            variant, target = (precision if precision in MODEL_VARIANTS else "fp32"), self.name
        return ModelRequest(Path(source), "onnx", variant, target)

    def options_for_auto(self, device: str, options: dict) -> dict:
        if self.auto_options is not None:
            return self.auto_options(device, options)
        return {k: v for k, v in options.items() if k in self.option_names}


def device_kind(device: str) -> str:
    """'cpu' -> 'cpu'; 'cuda' / 'cuda:1' -> 'cuda' (ValueError for anything else)."""
    return parse_device(device)[0]


def parse_device(device: str) -> tuple[str, int]:
    """'cpu' -> ('cpu', 0); 'cuda' -> ('cuda', 0); 'cuda:1' -> ('cuda', 1)."""
    kind, _, index = str(device).partition(":")
    if kind not in DEVICES or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:<index>'")
    return kind, int(index or 0)


def check_run(spec: BackendSpec, device: str, precision: str, options: Mapping[str, Any] | None = None,
              specs: tuple[BackendSpec, ...] = ()) -> None:
    """ValueError unless `spec` runs `precision` on `device` with these options; the message lists
    what it does run and which backends run that precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}")
    kind = device_kind(device)
    if kind not in spec.devices:
        wanted = " or ".join(DEVICE_WORDS[d] for d in spec.devices)
        raise ValueError(f"backend {spec.name!r} runs on {wanted}: use device "
                         f"{' or '.join(repr(d) for d in spec.devices)}, not {device!r}")
    allowed = spec.runs(device, precision, options)
    if precision in allowed:
        return
    here = "; ".join(f"{d}: {', '.join(spec.precisions.get(d, ()))}" for d in spec.devices)
    here += "".join(f"; with {option} also {', '.join(extra)}" for option, extra in spec.option_precisions.items())
    others = ", ".join(f"{s.name} ({'/'.join(d for d in s.devices if precision in s.runs(d, precision, _all(s)))})"
                       for s in specs if any(precision in s.runs(d, precision, _all(s)) for d in s.devices))
    hint = f"; {spec.precision_hint}" if spec.precision_hint else ""
    raise ValueError(f"backend {spec.name!r} does not run precision {precision!r} on {kind} here; it runs "
                     f"{allowed} there ({here}){hint}" + (f"; {precision} runs on: {others}" if others else ""))


def _all(spec: BackendSpec) -> dict:
    """Every option switched on: what a backend can run at best."""
    return {option: True for option in spec.option_precisions}


def package_missing(module: str, hint: str) -> str | None:
    """None if `module` can be imported here (without importing it), else what to install."""
    return None if importlib.util.find_spec(module) else f"{module} is not installed: {hint}"
