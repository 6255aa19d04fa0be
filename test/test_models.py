"""Depth networks: output contract, gradients, any input size, torchvision/timm key compatibility."""
from __future__ import annotations

import pytest
import torch

from mde_ros.models import DEFAULT_MODEL, available_models, build_model
from mde_ros.models.dpt import DPT
from mde_ros.models.resnet import ResNetEncoder, find_torchvision_weights, load_imagenet_weights
from mde_ros.models.unet import ResNetUNet

# Small DPT (the real one is ViT-B/16, 110M parameters); every other model at its real size.
TINY_DPT = dict(embed_dim=64, depth=4, num_heads=4, features=32, reassemble_channels=[16, 32, 64, 64],
                hooks=[0, 1, 2, 3], img_size=64)
TEST_KWARGS = {"dpt_vitb16": TINY_DPT, "unet_plain": dict(base_channels=16)}
# (H, W): 70x90 and 37x51 are not multiples of 32 (nor 16), which camera images rarely are.
RESOLUTIONS = {"dpt_vitb16": [(64, 80), (48, 96), (50, 70)]}
DEFAULT_RESOLUTIONS = [(64, 80), (70, 90), (37, 51)]

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one torch thread


def test_registry_lists_the_documented_models():
    assert set(available_models()) == {"unet_resnet18", "unet_resnet34", "unet_resnet50", "unet_plain",
                                       "dpt_vitb16", "encdec_resnet50", "sumdec_resnet18"}
    assert DEFAULT_MODEL in available_models()


def test_registry_rejects_bad_requests_clearly():
    with pytest.raises(ValueError, match="unet_resnet34") as info:
        build_model("unet_resnet99")
    assert "unknown model 'unet_resnet99'" in str(info.value)
    with pytest.raises(ValueError, match="fixes encoder_name='resnet18'"):
        build_model("unet_resnet18", encoder_name="resnet50")
    with pytest.raises(ValueError, match="bad arguments for model 'unet_plain'"):
        build_model("unet_plain", no_such_option=1)
    with pytest.raises(ValueError, match="decoder_channels needs 5 entries"):
        build_model("unet_resnet34", decoder_channels=[64, 32])


@pytest.mark.parametrize("name", available_models())
def test_forward_backward_at_several_resolutions(name):
    torch.manual_seed(0)
    model = build_model(name, **TEST_KWARGS.get(name, {})).train()
    first_name, first_param = next(iter(model.named_parameters()))
    assert first_name.startswith(("encoder.", "inc.")), "the first parameter should be the input layer"
    for height, width in RESOLUTIONS.get(name, DEFAULT_RESOLUTIONS):
        model.zero_grad(set_to_none=True)
        depth = model(torch.randn(2, 3, height, width))
        assert depth.shape == (2, 1, height, width)
        assert torch.isfinite(depth).all()
        assert depth.min() >= 0 and depth.max() <= model.max_depth
        (depth - 1.0).abs().mean().backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert not no_grad, f"parameters outside the graph: {no_grad[:5]}"
        assert first_param.grad.abs().sum() > 0, "gradient does not reach the encoder's input layer"


@pytest.mark.parametrize("name", available_models())
def test_max_depth_bounds_the_output(name):
    torch.manual_seed(0)
    model = build_model(name, **{**TEST_KWARGS.get(name, {}), "max_depth": 2.5}).eval()
    assert model.max_depth == 2.5
    # A huge input drives the logits far from zero, so the sigmoid saturates at one of the bounds.
    with torch.no_grad():
        depth = model(1e4 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    assert depth.min() >= 0.0 and depth.max() <= 2.5
    assert depth.max() > 1.0, "output is not in metres up to max_depth"


def test_default_max_depth_indoor_and_outdoor():
    assert build_model("unet_plain", base_channels=4, depth=2).max_depth == 10.0   # NYU range
    assert build_model("dpt_vitb16", **TINY_DPT).max_depth == 80.0                 # Cityscapes/KITTI range
    with pytest.raises(ValueError, match="max_depth must be > 0"):
        build_model("unet_plain", base_channels=4, max_depth=0)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_encoder_features_are_at_strides_2_to_32(name):
    encoder = ResNetEncoder(name)
    features = encoder(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
    assert [f.shape[1] for f in features] == encoder.out_channels
    expansion = 4 if name == "resnet50" else 1
    assert encoder.out_channels == [64] + [c * expansion for c in (64, 128, 256, 512)]


def test_encoder_depth_builds_only_the_used_stages():
    encoder = ResNetEncoder("resnet34", encoder_depth=3)
    assert not hasattr(encoder, "layer3") and not hasattr(encoder, "layer4")
    assert not any(k.startswith(("layer3.", "layer4.")) for k in encoder.state_dict())
    assert len(encoder(torch.randn(1, 3, 64, 64))) == 3
    with pytest.raises(ValueError, match="encoder_depth must be 3, 4 or 5"):
        ResNetEncoder("resnet34", encoder_depth=6)
    with pytest.raises(ValueError, match="unknown ResNet encoder 'resnet101'"):
        ResNetEncoder("resnet101")


# torchvision's documented parameter counts minus its 1000-class fc layer (fan_in * 1000 + 1000).
@pytest.mark.parametrize("name, torchvision_params, fc_in", [
    ("resnet18", 11_689_512, 512), ("resnet34", 21_797_672, 512), ("resnet50", 25_557_032, 2048)])
def test_encoder_matches_torchvision_size(name, torchvision_params, fc_in):
    encoder = ResNetEncoder(name)
    assert sum(p.numel() for p in encoder.parameters()) == torchvision_params - (fc_in * 1000 + 1000)


def test_encoder_uses_torchvision_key_names():
    keys34 = ResNetEncoder("resnet34").state_dict().keys()
    for key in ("conv1.weight", "bn1.running_mean", "layer1.2.conv2.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.num_batches_tracked", "layer3.5.bn2.running_var", "layer4.2.bn2.bias"):
        assert key in keys34
    assert "layer1.0.downsample.0.weight" not in keys34     # BasicBlock keeps width in layer1
    assert not any(k.startswith("fc.") for k in keys34)
    keys50 = ResNetEncoder("resnet50").state_dict().keys()
    for key in ("layer1.0.downsample.0.weight", "layer4.2.conv3.weight", "layer4.2.bn3.running_var"):
        assert key in keys50
    assert ResNetEncoder("resnet50").layer2[0].conv2.stride == (2, 2), "V1.5: stride on the 3x3 conv"


def _torchvision_style_file(path, name, seed=0):
    """A file laid out like torchvision's: the encoder's keys, fc included, no num_batches_tracked."""
    torch.manual_seed(seed)
    state = {k: v for k, v in ResNetEncoder(name).state_dict().items() if not k.endswith("num_batches_tracked")}
    for key, tensor in state.items():
        if tensor.is_floating_point():
            tensor.normal_()
    fc_in = 2048 if name == "resnet50" else 512
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, fc_in), torch.randn(1000)
    torch.save(state, path)
    return state


def test_load_imagenet_weights_from_a_torchvision_file(tmp_path):
    path = tmp_path / "resnet34-b627a593.pth"
    expected = _torchvision_style_file(path, "resnet34")
    encoder = ResNetEncoder("resnet34")
    load_imagenet_weights(encoder, path)
    for key, tensor in encoder.state_dict().items():
        if key in expected:
            assert torch.equal(tensor, expected[key]), key
    shallow = ResNetEncoder("resnet34", encoder_depth=3)
    load_imagenet_weights(shallow, path)                     # unused layer3/layer4 are ignored
    assert torch.equal(shallow.layer2[0].conv1.weight, expected["layer2.0.conv1.weight"])
    unet = ResNetUNet("resnet34", encoder_weights=str(path))
    assert torch.equal(unet.encoder.layer3[5].bn2.running_var, expected["layer3.5.bn2.running_var"])


def test_load_imagenet_weights_rejects_the_wrong_file(tmp_path):
    resnet50_file = tmp_path / "resnet50.pth"
    _torchvision_style_file(resnet50_file, "resnet50")
    with pytest.raises(ValueError, match="does not match a torchvision resnet34") as info:
        load_imagenet_weights(ResNetEncoder("resnet34"), resnet50_file)
    message = str(info.value)
    assert str(resnet50_file) in message and "conv3.weight" in message
    with pytest.raises(ValueError, match="wrong shape"):
        load_imagenet_weights(ResNetEncoder("resnet18"), _write_resnet18_keys_with_resnet50_widths(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_imagenet_weights(ResNetEncoder("resnet18"), tmp_path / "nowhere.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=f"cannot read encoder weights {garbage}"):
        load_imagenet_weights(ResNetEncoder("resnet18"), garbage)


def _write_resnet18_keys_with_resnet50_widths(tmp_path):
    state = ResNetEncoder("resnet18").state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    path = tmp_path / "resnet18-resized.pth"
    torch.save(state, path)
    return path


def test_imagenet_weights_come_from_torch_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_torchvision_weights("resnet18") is None
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth") as info:
        ResNetUNet("resnet18", encoder_weights="imagenet")
    assert str(tmp_path / "hub" / "checkpoints") in str(info.value)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    expected = _torchvision_style_file(checkpoints / "resnet18-f37072fd.pth", "resnet18", seed=3)
    assert find_torchvision_weights("resnet18") == checkpoints / "resnet18-f37072fd.pth"
    unet = ResNetUNet("resnet18", encoder_weights="imagenet")
    assert torch.equal(unet.encoder.conv1.weight, expected["conv1.weight"])


def test_dpt_uses_timm_vit_key_names():
    keys = DPT(**TINY_DPT).state_dict().keys()
    for key in ("encoder.patch_embed.proj.weight", "encoder.cls_token", "encoder.pos_embed",
                "encoder.blocks.3.norm1.weight", "encoder.blocks.3.attn.qkv.weight", "encoder.blocks.3.attn.proj.bias",
                "encoder.blocks.3.norm2.bias", "encoder.blocks.3.mlp.fc1.weight", "encoder.blocks.3.mlp.fc2.weight"):
        assert key in keys


def test_dpt_loads_a_timm_vit_file_with_another_grid(tmp_path):
    source = DPT(**{**TINY_DPT, "img_size": 96}).encoder        # 6x6 grid; the target model has 4x4
    state = dict(source.state_dict())
    state["head.weight"], state["norm.weight"] = torch.zeros(10, 64), torch.ones(64)   # timm's classifier
    path = tmp_path / "vit.pth"
    torch.save(state, path)
    model = DPT(**TINY_DPT, encoder_weights=str(path))
    assert torch.equal(model.encoder.blocks[2].attn.qkv.weight, source.blocks[2].attn.qkv.weight)
    assert model.encoder.pos_embed.shape == (1, 1 + 4 * 4, 64)
    assert torch.equal(model.encoder.pos_embed[:, 0], source.pos_embed[:, 0])   # cls position kept
    shallow = {k: v for k, v in state.items() if not k.startswith("blocks.3.")}
    torch.save(shallow, path)
    with pytest.raises(ValueError, match="missing .*blocks.3"):
        DPT(**TINY_DPT, encoder_weights=str(path))


def test_dpt_weights_errors_name_the_file_and_the_kind_of_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"ViT weights file not found: {tmp_path / 'nowhere.pth'}"):
        DPT(**TINY_DPT, encoder_weights=str(tmp_path / "nowhere.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=f"cannot read ViT weights {garbage}"):
        DPT(**TINY_DPT, encoder_weights=str(garbage))


def test_dpt_readout_ignore_and_bad_hooks():
    model = DPT(**{**TINY_DPT, "readout": "ignore"})
    assert model(torch.randn(1, 3, 32, 48)).shape == (1, 1, 32, 48)
    with pytest.raises(ValueError, match="hooks must be increasing"):
        DPT(**{**TINY_DPT, "hooks": [0, 1, 2, 4]})
    with pytest.raises(ValueError, match="readout must be one of"):
        DPT(**{**TINY_DPT, "readout": "add"})
