"""Other names for the node's parameters: depthimage_to_laserscan's top-level scan parameters (so its
params file works unchanged) and names this node used before (kept, with a deprecation warning).

Pure: the node declares the aliases read-only and folds them into its settings at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Alias:
    name: str
    canonical: str
    deprecated: bool = False  # warn on use; otherwise a known other tool's name, accepted silently

    def description(self) -> str:
        why = "deprecated, use" if self.deprecated else "depthimage_to_laserscan's name for"
        return f"start-up alias ({why} '{self.canonical}'); ignored when '{self.canonical}' is set"


ALIASES: tuple[Alias, ...] = (
    Alias("input_transport", "image_transport", deprecated=True),
    Alias("scan_height", "scan.scan_height"),
    Alias("scan_time", "scan.scan_time"),
    Alias("range_min", "scan.range_min"),
    Alias("range_max", "scan.range_max"),
    Alias("output_frame", "scan.output_frame"),
)


def resolve_aliases(values: dict[str, Any], alias_values: dict[str, Any],
                    defaults: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(parameter values with the aliases folded in, warnings to log).

    An alias counts as set when it differs from its parameter's default; it then replaces the
    parameter unless that one is set too (the canonical name wins, with a warning).
    """
    resolved = dict(values)
    warnings = []
    for alias in ALIASES:
        value = alias_values.get(alias.name, defaults[alias.canonical])
        if value == defaults[alias.canonical]:
            continue
        if resolved[alias.canonical] != defaults[alias.canonical]:
            warnings.append(f"both '{alias.name}' and '{alias.canonical}' are set: using "
                            f"{alias.canonical}={resolved[alias.canonical]!r}")
            continue
        resolved[alias.canonical] = value
        if alias.deprecated:
            warnings.append(f"parameter '{alias.name}' is deprecated: set '{alias.canonical}' instead "
                            f"(using {alias.canonical}={value!r})")
    return resolved, warnings
