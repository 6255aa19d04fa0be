"""docs/ARCHITECTURE.md lists every module under mde_ros/: a new module that is not described there
fails here (the module map is the first thing a new maintainer reads)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def listed() -> set[str]:
    """Module paths (relative to mde_ros/) the doc names: in the module map (the first code block, where a
    file is listed under its package's `name/` line) or anywhere as `pkg/name.py` / `mde_ros.pkg.name`."""
    text = DOC.read_text()
    block = text.split("```", 2)[1]
    found: set[str] = set()
    package = ""
    for line in block.splitlines():
        top = re.match(r"^  (\w+)/", line)
        if top:
            package = top.group(1)
            found.add(f"{package}/__init__.py")
        elif re.match(r"^  \S", line):  # a top-level module (or another top-level entry)
            package = ""
        if not line.startswith("  ") or line.startswith("mde_ros/"):
            continue
        for name in re.findall(r"\b(\w+\.py)\b", line):
            found.add(f"{package}/{name}" if package and not re.match(r"^  \w+\.py", line) else name)
    found |= set(re.findall(r"\b((?:\w+/)+\w+\.py)\b", text))
    found |= {"/".join(m.split(".")[1:]) + ".py" for m in re.findall(r"\bmde_ros(?:\.\w+)+", text)}
    return found


def test_every_module_appears_in_architecture_md():
    names = listed()
    missing = []
    for path in sorted((ROOT / "mde_ros").rglob("*.py")):
        relative = path.relative_to(ROOT / "mde_ros").as_posix()
        if relative == "__init__.py":
            continue
        candidates = {relative, f"mde_ros/{relative}"}
        if path.name == "__init__.py":
            candidates.add(relative.replace("/__init__.py", ".py"))  # `mde_ros.pkg` names the package
        if not candidates & names:
            missing.append(relative)
    assert missing == [], f"add these modules to docs/ARCHITECTURE.md's module map: {missing}"
