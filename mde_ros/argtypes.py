"""argparse types that refuse impossible values when the command line is read (argparse then says
which argument and why in one line, exit 2), instead of a traceback or a silent exit 0 later on.

    parser.add_argument("--iters", type=int_range(1), default=20)
    parser.add_argument("--overload-seconds", type=float_range(0, low_open=True), default=15.0)
"""
from __future__ import annotations

import argparse
import math
from typing import Callable


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An int within low..high (inclusive)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"within {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value
    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def float_range(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite float within low..high (low excluded with low_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            parts = [f"{'>' if low_open else '>='} {low:g}" if low is not None else "",
                     f"<= {high:g}" if high is not None else ""]
            bounds = " and ".join(p for p in parts if p)
            raise argparse.ArgumentTypeError(f"must be a finite number{' ' + bounds if bounds else ''}, got {text}")
        return value
    parse.__name__ = "float"
    return parse


def size_list(min_side: int = 1) -> Callable[[str], list[tuple[int, int]]]:
    """Comma-separated WIDTHxHEIGHT sizes ("640x480,1280x720"), each side >= min_side."""
    def parse(text: str) -> list[tuple[int, int]]:
        sizes = []
        for part in text.split(","):
            part = part.strip().lower()
            if not part:
                continue
            width, _, height = part.partition("x")
            if not (width.isdigit() and height.isdigit()) or min(int(width), int(height)) < min_side:
                raise argparse.ArgumentTypeError(f"{part!r} is not WIDTHxHEIGHT (each side >= {min_side})")
            sizes.append((int(width), int(height)))
        if not sizes:
            raise argparse.ArgumentTypeError("no size given")
        return sizes
    parse.__name__ = "size list"
    return parse
