"""Ship a trained network in small pieces: fp16 weights split into chunks, and back to a checkpoint.

``pack`` turns a training checkpoint into ``model.part0``, ``model.part1``, ... (each <= ``--chunk-mib``
MiB): one ``torch.save`` of a weights_only-loadable dict holding the network's state dict with its
floating tensors in fp16 (half the bytes; BatchNorm counters keep their integer type) plus what the
export needs (config, epoch, step, val metrics, provenance, train_focal_px). ``unpack`` joins the
parts (checking the SHA-256 recorded in ``model.parts.json`` when present), turns the weights back to
fp32 and writes a normal training checkpoint that ``training.export_model`` reads.

    python -m training.weights_io pack runs/x/best.pt --out OUT_DIR [--chunk-mib 15]
    python -m training.weights_io unpack OUT_DIR --out runs/x_gpu/best.pt
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import torch

from mde_ros.atomic import write_bytes_atomically

PART_PREFIX = "model.part"
MANIFEST = "model.parts.json"
PACK_FORMAT = "mde_ros.training.fp16_parts/1"
# What the export needs from a checkpoint; optimizer state and RNGs stay behind.
KEPT_KEYS = ("config", "epoch", "global_step", "val_metrics", "provenance", "train_focal_px", "phase",
             "best_metric", "best_metric_name", "history")


def to_fp16(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as fp16 (contiguous, on the CPU); integer buffers unchanged."""
    return {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()).contiguous()
            for k, v in state_dict.items()}


def pack(checkpoint: str | Path, out_dir: str | Path, chunk_mib: float = 15.0,
         extra: dict[str, Any] | None = None, manifest_dir: str | Path | None = None) -> list[Path]:
    """Write the parts of ``checkpoint`` into ``out_dir`` and a small manifest (sizes, SHA-256) into
    ``manifest_dir`` (default ``out_dir``); returns the written paths.

    Parts are written atomically, so a reader never sees a half-written one; stale higher-numbered parts
    from an earlier pack are removed.
    """
    from training.checkpoint import load_checkpoint

    if chunk_mib <= 0:
        raise ValueError(f"chunk size must be positive, got {chunk_mib} MiB")
    state = load_checkpoint(checkpoint)
    payload = {"format": PACK_FORMAT, "model": to_fp16(state["model"]),
               **{k: state[k] for k in KEPT_KEYS if k in state}, "extra": dict(extra or {})}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    size = int(chunk_mib * 1024 * 1024)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, start in enumerate(range(0, len(data), size)):
        path = out_dir / f"{PART_PREFIX}{number}"
        write_bytes_atomically(path, data[start:start + size])
        paths.append(path)
    for stale in out_dir.glob(f"{PART_PREFIX}*"):
        if stale.name[len(PART_PREFIX):].isdigit() and int(stale.name[len(PART_PREFIX):]) >= len(paths):
            stale.unlink()
    manifest = {"format": PACK_FORMAT, "parts": [p.name for p in paths], "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "source": str(checkpoint), "epoch": state.get("epoch"),
                "global_step": state.get("global_step")}
    return paths + [write_manifest(Path(manifest_dir or out_dir), manifest)]


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomically(out_dir / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def read_parts(parts_dir: str | Path, manifest: str | Path | None = None) -> dict[str, Any]:
    """The packed dict from ``parts_dir``'s model.part0, 1, ... (checked against the manifest: ``manifest``,
    else ``parts_dir``/model.parts.json when there)."""
    parts_dir = Path(parts_dir)
    parts = sorted((p for p in parts_dir.glob(f"{PART_PREFIX}*") if p.name[len(PART_PREFIX):].isdigit()),
                   key=lambda p: int(p.name[len(PART_PREFIX):]))
    if not parts:
        raise FileNotFoundError(f"no {PART_PREFIX}0, {PART_PREFIX}1, ... in {parts_dir}")
    numbers = [int(p.name[len(PART_PREFIX):]) for p in parts]
    if numbers != list(range(len(parts))):
        raise ValueError(f"{parts_dir}: parts {numbers} are not 0..{len(parts) - 1}; one is missing")
    data = b"".join(p.read_bytes() for p in parts)
    manifest_path = Path(manifest) if manifest else parts_dir / MANIFEST
    if manifest and not manifest_path.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest_path}")
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise ValueError(f"{parts_dir}: the joined parts do not match {manifest_path}'s SHA-256 (a truncated or "
                             "mixed copy); copy all parts of one run again")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != PACK_FORMAT:
        raise ValueError(f"{parts_dir}: the parts are not a {PACK_FORMAT} pack")
    return state


def unpack(parts_dir: str | Path, out: str | Path, manifest: str | Path | None = None) -> Path:
    """A training checkpoint (fp32 weights) at ``out`` from the parts in ``parts_dir``."""
    from training.checkpoint import save_checkpoint

    state = read_parts(parts_dir, manifest)
    model = {k: (v.float() if v.is_floating_point() else v) for k, v in state["model"].items()}
    checkpoint = {k: v for k, v in state.items() if k not in ("format", "model")}
    checkpoint.setdefault("val_metrics", {})
    checkpoint.setdefault("provenance", {})
    return save_checkpoint({**checkpoint, "model": model, "packed_from": str(parts_dir)}, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.weights_io",
                                     description="Split a checkpoint's weights into fp16 parts, or join them back.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="checkpoint -> OUT/model.part0..N (fp16 state dict) + model.parts.json")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chunk-mib", type=float, default=15.0)
    p.add_argument("--manifest-dir", type=Path, help="where model.parts.json goes (default: --out)")
    u = sub.add_parser("unpack", help="DIR/model.part0..N -> a training checkpoint (fp32)")
    u.add_argument("parts_dir", type=Path)
    u.add_argument("--out", type=Path, required=True)
    u.add_argument("--manifest", type=Path, help="model.parts.json to check the parts against")
    args = parser.parse_args(argv)
    from training.checkpoint import CheckpointError

    try:
        if args.command == "pack":
            for path in pack(args.checkpoint, args.out, args.chunk_mib, manifest_dir=args.manifest_dir):
                print(f"{path} {path.stat().st_size} bytes")
        else:
            print(unpack(args.parts_dir, args.out, args.manifest))
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"training.weights_io: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
