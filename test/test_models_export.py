"""Model bundle (.pt) round trip and ONNX export checked against real onnxruntime sessions."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mde_ros.models import build_model, export_onnx, load_bundle, save_bundle
from mde_ros.models.bundle import load_bundle_card
from mde_ros.models.card import ONNX_METADATA_KEY, CardError, ModelCard, card_path_for, load_card_for
from mde_ros.models.export import verify_onnx

# Small configurations of every architecture family; arch_kwargs hold plain JSON types, as in a card.
TINY = {
    "unet_resnet18": dict(encoder_depth=3, decoder_channels=[32, 16, 8]),
    "unet_plain": dict(base_channels=8, depth=3),
    "dpt_vitb16": dict(embed_dim=64, depth=4, num_heads=4, features=32, reassemble_channels=[16, 32, 64, 64],
                       hooks=[0, 1, 2, 3], img_size=64),
    "encdec_resnet50": dict(encoder_depth=3, decoder_channels=[32, 16, 8]),
    "sumdec_resnet18": dict(encoder_depth=4, channels=16),
}
EXPORT_HW = (64, 80)
# Checked on a shape and batch the trace never saw: U-Nets at a non-multiple of 32, DPT at another grid.
CHECK_SHAPE = {"dpt_vitb16": (3, 96, 48)}
DEFAULT_CHECK_SHAPE = (3, 70, 90)
ONNX_TOLERANCE_M = 1e-4   # float32 reordering in onnxruntime; a broken dynamic axis errs by metres

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one torch thread


def _model_and_card(name: str, **card_fields):
    torch.manual_seed(0)
    model = build_model(name, **TINY[name])
    card = ModelCard(name=f"tiny-{name}", architecture=name, arch_kwargs=TINY[name], input_height=EXPORT_HW[0],
                     input_width=EXPORT_HW[1], max_depth=model.max_depth, train_focal_px=259.4,
                     provenance={"dataset": "synthetic", "notes": "test"}, **card_fields)
    return model, card


def _train_a_little(model: torch.nn.Module) -> None:
    """Move BatchNorm running stats away from their defaults so a round trip that drops buffers fails."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, *EXPORT_HW) * 3 + 1)
    model.eval()


def test_bundle_round_trip_gives_identical_outputs(tmp_path):
    model, card = _model_and_card("unet_resnet18")
    card.arch_kwargs = {**card.arch_kwargs, "encoder_weights": "imagenet"}   # not needed to load a bundle
    _train_a_little(model)
    path = save_bundle(tmp_path / "bundles" / "tiny.pt", model, card)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["tiny.pt"], "temp file left behind"

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "mde_ros.bundle/1" and raw["card"] == card.to_dict()
    loaded, loaded_card = load_bundle(path)
    assert loaded_card == card and not loaded.training
    image = torch.randn(2, 3, 48, 72)
    with torch.no_grad():
        assert torch.equal(loaded(image), model(image))
    assert load_bundle_card(path) == card
    assert load_card_for(path) == card


def test_bundle_overwrite_is_complete(tmp_path):
    path = tmp_path / "model.pt"
    first, card = _model_and_card("unet_plain")
    save_bundle(path, first, card)
    second = build_model("unet_plain", **TINY["unet_plain"])
    save_bundle(path, second, card)
    loaded, _ = load_bundle(path)
    for key, tensor in second.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_bundle_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(CardError, match=f"model bundle not found: {missing}"):
        load_bundle(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"definitely not a torch file")
    with pytest.raises(CardError, match=f"cannot read model bundle {corrupt}"):
        load_bundle(corrupt)
    plain = tmp_path / "plain_state_dict.pt"
    torch.save(build_model("unet_plain", **TINY["unet_plain"]).state_dict(), plain)
    with pytest.raises(CardError, match="is not an mde_ros model bundle"):
        load_bundle_card(plain)
    model, card = _model_and_card("unet_plain")
    card.arch_kwargs = {**card.arch_kwargs, "base_channels": 4}     # card that does not fit the weights
    wrong = save_bundle(tmp_path / "wrong.pt", model, card)
    with pytest.raises(CardError, match="weights do not fit 'unet_plain'"):
        load_bundle(wrong)


@pytest.mark.parametrize("name", list(TINY))
def test_onnx_export_matches_torch_on_unseen_shapes(tmp_path, name):
    model, card = _model_and_card(name)
    _train_a_little(model)
    model.train()                       # export must switch to eval itself, and switch back
    onnx_path = export_onnx(model, card, tmp_path / f"{name}.onnx")
    assert model.training

    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", 3 if value.name == "image" else 1, "height", "width"], value.name

    batch, height, width = CHECK_SHAPE.get(name, DEFAULT_CHECK_SHAPE)
    assert (height, width) != EXPORT_HW
    diff = verify_onnx(onnx_path, model, batch=batch, height=height, width=width)
    assert diff <= ONNX_TOLERANCE_M, f"onnxruntime differs from torch by {diff} m"


def test_onnx_carries_its_card_in_metadata_and_sidecar(tmp_path):
    model, card = _model_and_card("unet_plain", input_name="rgb", output_name="metres")
    onnx_path = export_onnx(model, card, tmp_path / "net.onnx", sample_hw=(32, 48))

    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert ModelCard.from_dict(json.loads(metadata[ONNX_METADATA_KEY])) == card
    assert card_path_for(onnx_path).is_file()
    assert load_card_for(onnx_path) == card                    # from the sidecar
    card_path_for(onnx_path).unlink()
    assert load_card_for(onnx_path) == card                    # from the ONNX metadata alone

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["rgb"]
    assert [o.name for o in session.get_outputs()] == ["metres"]
    (depth,) = session.run(None, {"rgb": np.random.default_rng(0).normal(size=(1, 3, 40, 56)).astype(np.float32)})
    assert depth.shape == (1, 1, 40, 56)
    assert np.all((depth >= 0) & (depth <= card.max_depth))


class UntraceableNet(torch.nn.Module):
    """A network whose forward fails half-way through the export."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("forward failed during export")


def test_onnx_export_leaves_no_partial_file_on_failure(tmp_path):
    _, card = _model_and_card("unet_plain")
    model = UntraceableNet().train()
    with pytest.raises(RuntimeError, match="forward failed during export"):
        export_onnx(model, card, tmp_path / "net.onnx")
    assert list(tmp_path.iterdir()) == []
    assert model.training
