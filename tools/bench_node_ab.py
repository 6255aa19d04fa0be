"""A/B of the node's CPU per frame with the old executor and OpenCV pool against the defaults (issue 20).

    .venv/bin/python tools/bench_node_ab.py [FRAMES [PAIRS]]     (default 200 frames, 4 pairs)

Each pair runs the node process twice at 640x480 with the launch defaults all subscribed from this
process (mde_ros.commands.bench_node.run_node): first `executor:=single_threaded opencv_threads:=0`
(the behaviour before), then the defaults, so both halves of a pair see the same machine. Printed per
run: CPU outside the network (process mean minus the network's CPU as the node's inference thread
measured it on the same frames) and the CPU per frame of each thread group. README "Node CPU per frame".
"""
from __future__ import annotations

import sys

from mde_ros.commands.bench_node import run_node
from mde_ros.resources import default_model_path

CONFIGS = {"before (single_threaded, OpenCV pool)": ("executor:=single_threaded", "opencv_threads:=0"),
           "after (defaults)": ()}


def main(frames: int = 200, pairs: int = 4) -> None:
    for _ in range(pairs):
        for label, extra in CONFIGS.items():
            run = run_node(str(default_model_path()), [(640, 480)], frames, 3, 10.0, extra, ["all (launch defaults)"])[0]
            if run.error or not run.phases:
                print(f"{label}: not measured: {run.error or 'no phase'}", flush=True)
                continue
            phase = run.phases[0]
            print(f"{label}: outside the network {phase.outside_in_node():.2f} ms (process mean {phase.cpu_mean_ms:.2f}, "
                  f"network {phase.node_cpu_ms.get('network', float('nan')):.2f}); "
                  + ", ".join(f"{k} {v:.2f}" for k, v in phase.threads_ms.items())
                  + f"; {phase.frames} frames, {phase.missed} missed", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
