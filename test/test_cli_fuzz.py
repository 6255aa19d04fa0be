"""Every subcommand driven with bad option values (0, negative, NaN, huge, unwritable paths): one line
that names the problem and a non-zero exit, never a traceback or a silent exit 0 (issue 22).

In-process through mde_ros.cli.main (what the `mde-ros` script runs), so the table stays fast; an
exception escaping main() would be the traceback a user sees. Signals and full disks are tested with
real processes in test_bags_interrupted.py and test_predict_interrupted.py.
"""
import contextlib
import io

import pytest

from mde_ros import cli
from mde_ros.bags import fixtures
from mde_ros.resources import default_model_path

MODEL = str(default_model_path())
UNWRITABLE = "/proc/self/no/such"  # cannot be created, even by root (who ignores read-only modes)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    a_file = root / "a_file.txt"
    a_file.write_text("not a folder")
    image = root / "img.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((48, 64, 3), 128, np.uint8))
    bag = fixtures.write_fixture_bag(root / "bag", "mcap", n_frames=2)
    return {"file": str(a_file), "image": str(image), "bag": str(bag), "root": root}


CASES = [  # (command, what its one line must name: a string or alternatives)
    # demo
    ("demo --width 0", "--width"), ("demo --width 1 --height 1", "--width"), ("demo --height -5", "--height"),
    ("demo --seed -1", "--seed"), ("demo --frames 0", "--frames"), ("demo --frames nan", "--frames"),
    ("demo --width 100000", "--width"), ("demo --frames 2 --out {file}", "--out"),
    ("demo --frames 2 --out {file}/sub", "--out"), (f"demo --frames 2 --out {UNWRITABLE}", "--out"),
    ("demo --model nope.onnx", "nope.onnx"),
    # bench
    ("bench --iters 0", "--iters"), ("bench --iters -1", "--iters"), ("bench --iters nan", "--iters"),
    ("bench --warmup -1", "--warmup"), ("bench --threads -1", "--threads"), ("bench --node-timeout 0", "--node-timeout"),
    ("bench --node-timeout nan", "--node-timeout"), ("bench --overload-seconds 0", "--overload-seconds"),
    ("bench --overload-seconds nan", "--overload-seconds"), ("bench --overload-seconds 1e9", "--overload-seconds"),
    ("bench --overload-factor -1", "--overload-factor"), ("bench --overload-factor 0", "--overload-factor"),
    ("bench --overload-factor inf", "--overload-factor"), ("bench --delivery-frames 0", "--delivery-frames"),
    ("bench --gpu-size 0", "--gpu-size"), ("bench --sections nope", "nope"),
    ("bench --sections node --model nope.onnx", "nope.onnx"),
    # card
    (f"card --preset midas-v2.1-small {MODEL} --out {UNWRITABLE}/c.json", "cannot write"),
    ("card --preset midas-v2.1-small {file}", ".onnx"), ("card --check nope.onnx", ".onnx"), ("card", "--preset"),
    # replay
    ("replay {bag} --sync-tolerance nan", "--sync-tolerance"), ("replay {bag} --sync-tolerance -1", "--sync-tolerance"),
    ("replay {bag} --sync-tolerance inf", "--sync-tolerance"), ("replay {bag} --threads -1", "--threads"),
    ("replay {bag} --cloud-decimation 0", "cloud_decimation"), ("replay {bag} --scan-height 0", "scan_height"),
    ("replay {bag} --scan-range-min nan", "scan_range_min"), ("replay {bag} --out {bag}", "already exists"),
    ("replay {root}/missing_bag", "missing_bag"), ("replay {bag} --out {root}/o --summary {root}", "--summary"),
    (f"replay {{bag}} --out {UNWRITABLE}/out", "cannot create"),
    # play
    ("play {bag} --rate 0", "--rate"), ("play {bag} --rate -1", "--rate"), ("play {bag} --rate nan", "--rate"),
    ("play {bag} --delay -1", "--delay"), ("play {bag} --delay nan", "--delay"),
    ("play {bag} --start-offset -1", "--start-offset"), ("play {bag} --remap /x:=bad_name!", "--remap"),
    ("play {bag} --remap nothing", "--remap"),
    # predict
    ("predict {image} --fx 0", "--fx"), ("predict {image} --fx -500", "--fx"), ("predict {image} --fx nan", "--fx"),
    ("predict {image} --fx inf", "--fx"), ("predict {image} --fx 300 --cx nan", "--cx"),
    ("predict {image} --camera-height -1", "--camera-height"), ("predict {image} --camera-height nan", "--camera-height"),
    ("predict {image} --camera-height 1 --camera-pitch nan", "--camera-pitch"),
    ("predict {image} --anchor nan 1 1", "--anchor"), ("predict {image} --anchor 1 1 -2", "--anchor"),
    ("predict {image} --out {file}", "--out"), (f"predict {{image}} --out {UNWRITABLE}", "--out"),
    ("predict {root}/missing.png --out {root}/p", "missing.png"), ("predict {image} --fx 1e308", "--fx"),
    # stability
    ("stability --scenes 0", "--scenes"), ("stability --scenes -3", "--scenes"), ("stability --seed -1", "--seed"),
    ("stability --sections nope", "nope"),
    # export, quantize, yardstick
    ("export {root}/nope.pt", ("--out", "needs the Python package 'torch'")),  # the latter: runtime-only installs
    (f"quantize {MODEL} --calibration {{root}}/nope", "nope"),
    (f"quantize {MODEL} --calibration {{bag}} --max-images 0 --out {{root}}/q.onnx", "--max-images"),
    ("yardstick --scenes 0", "scenes"), ("yardstick --threads -1", "--threads"),
]


@pytest.mark.parametrize("command, named", CASES, ids=[c for c, _ in CASES])
def test_bad_values_give_one_clear_line_and_a_non_zero_exit(paths, command, named):
    argv = command.format(**{k: str(v) for k, v in paths.items()}).split()
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse's own refusal
            code = exit_.code
    text = err.getvalue()
    assert code not in (0, None), f"{command}: exit {code}\n{out.getvalue()}{text}"
    assert "Traceback" not in text and "unexpected error" not in text, text
    problem = [line for line in text.splitlines() if line.startswith(f"mde-ros {argv[0]}")]
    assert problem, text
    assert any(name in problem[-1] for name in ((named,) if isinstance(named, str) else named)), problem[-1]
