"""DPT with a ViT-B/16 encoder (Ranftl et al., "Vision Transformers for Dense Prediction").

Plain torch, no timm: the ViT keeps timm's key names (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.N.attn.qkv``...) so a timm ViT-B/16 state_dict loads with
:func:`load_vit_weights`. Position embeddings are resized (bicubic) to each input's patch grid,
so any input size works (multiples of 16 use every pixel) and the ONNX export keeps dynamic H/W.
Output: (N,1,H,W) metres in [0, max_depth] (default 80 m, the Cityscapes/KITTI range).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mde_ros.models.weights import read_weights_file

READOUTS = ("ignore", "project")


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)   # (N, D, H/p, W/p)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT trunk that returns the tokens of the ``hooks`` blocks and the patch grid size."""

    def __init__(self, img_size: int = 384, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.grid_size = img_size // patch_size   # side of the learned position-embedding grid
        grid = self.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def _pos_embed_for(self, grid_hw: Sequence) -> torch.Tensor:
        """Resize the learned grid to ``grid_hw``; always resized (identity at the training grid) so a
        traced export never bakes in one input size."""
        return _resize_pos_embed(self.pos_embed, self.grid_size, grid_hw)

    def forward(self, x: torch.Tensor, hooks: Sequence[int]) -> tuple[list[torch.Tensor], Sequence]:
        patches = self.patch_embed(x)
        grid_hw = patches.shape[-2:]
        tokens = patches.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self._pos_embed_for(grid_hw)
        hooked = []
        for index, block in enumerate(self.blocks[: max(hooks) + 1]):
            tokens = block(tokens)
            if index in hooks:
                hooked.append(tokens)
        return hooked, grid_hw


class Reassemble(nn.Module):
    """Tokens -> image-like map at ``scale`` x the patch grid (4, 2, 1 or 0.5)."""

    def __init__(self, embed_dim: int, out_ch: int, scale: float, readout: str):
        super().__init__()
        self.readout = (nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.GELU())
                        if readout == "project" else None)
        self.project = nn.Conv2d(embed_dim, out_ch, kernel_size=1)
        if scale > 1:
            self.resample = nn.ConvTranspose2d(out_ch, out_ch, kernel_size=int(scale), stride=int(scale))
        elif scale == 1:
            self.resample = nn.Identity()
        else:
            self.resample = nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=2, padding=1)

    def forward(self, tokens: torch.Tensor, grid_hw: Sequence) -> torch.Tensor:
        patches = tokens[:, 1:]
        if self.readout is not None:
            cls = tokens[:, :1].expand_as(patches)
            patches = self.readout(torch.cat([patches, cls], dim=-1))
        x = patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], grid_hw[0], grid_hw[1])
        return self.resample(self.project(x))


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not in-place: x is the residual.
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT's feature fusion, resizing to an explicit size (not x2) so odd patch grids line up."""

    def __init__(self, features: int, with_skip: bool = True):
        super().__init__()
        # The deepest block has no skip; original DPT still builds (and never trains) its rcu1.
        self.rcu1 = ResidualConvUnit(features) if with_skip else None
        self.rcu2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, x: torch.Tensor, size: Sequence, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.rcu1 is not None:
            x = x + self.rcu1(skip)
        x = self.rcu2(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPT(nn.Module):
    """DPT-Base for metric depth. Defaults are ViT-B/16 at 384 px; shrink them for tests."""

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, patch_size: int = 16,
                 features: int = 256, hooks: Sequence[int] = (2, 5, 8, 11),
                 reassemble_channels: Sequence[int] = (96, 192, 384, 768), readout: str = "project",
                 img_size: int = 384, mlp_ratio: float = 4.0, max_depth: float = 80.0,
                 encoder_weights: str | None = None):
        super().__init__()
        hooks = tuple(int(h) for h in hooks)
        if len(hooks) != 4 or len(reassemble_channels) != 4:
            raise ValueError(f"DPT needs 4 hooks and 4 reassemble_channels, got {hooks} and {reassemble_channels}")
        if any(not 0 <= h < depth for h in hooks) or list(hooks) != sorted(set(hooks)):
            raise ValueError(f"hooks must be increasing block indices in [0, {depth - 1}], got {hooks}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if not max_depth > 0:
            raise ValueError(f"max_depth must be > 0 metres, got {max_depth}")
        self.hooks = hooks
        self.max_depth = float(max_depth)
        self.encoder = VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio)
        if encoder_weights is not None:
            load_vit_weights(self.encoder, encoder_weights)
        self.reassemble = nn.ModuleList(
            Reassemble(embed_dim, ch, scale, readout) for ch, scale in zip(reassemble_channels, (4, 2, 1, 0.5)))
        self.project = nn.ModuleList(
            nn.Conv2d(ch, features, kernel_size=3, padding=1, bias=False) for ch in reassemble_channels)
        self.fusion = nn.ModuleList(FusionBlock(features, with_skip=i < 3) for i in range(4))
        self.head_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.head_conv2 = nn.Conv2d(features // 2, 32, kernel_size=3, padding=1)
        self.head_out = nn.Conv2d(32, 1, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        hooked, grid_hw = self.encoder(image, self.hooks)
        maps = [proj(reassemble(tokens, grid_hw))
                for tokens, reassemble, proj in zip(hooked, self.reassemble, self.project)]
        # maps at 1/4, 1/8, 1/16, 1/32: fuse from the deepest, each step resized to the next map.
        finest = maps[0].shape[-2:]
        sizes = [m.shape[-2:] for m in maps[:3]] + [(finest[0] * 2, finest[1] * 2)]
        x = self.fusion[3](maps[3], sizes[2])
        x = self.fusion[2](x, sizes[1], skip=maps[2])
        x = self.fusion[1](x, sizes[0], skip=maps[1])
        x = self.fusion[0](x, sizes[3], skip=maps[0])
        x = F.interpolate(self.head_conv1(x), size=image.shape[-2:], mode="bilinear", align_corners=True)
        logits = self.head_out(F.relu(self.head_conv2(x)))
        return self.max_depth * torch.sigmoid(logits)


def load_vit_weights(vit: VisionTransformer, path: str | Path) -> None:
    """Load a timm ViT state_dict (.pth); the classifier and final norm are ignored and the position
    embeddings are resized to this model's grid."""
    path = Path(path)
    state = read_weights_file(path, "ViT weights")
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state_dict")
    own = vit.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(("head", "norm.", "fc_norm", "pre_logits"))}
    if "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        side = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
        state["pos_embed"] = _resize_pos_embed(state["pos_embed"], side, (vit.grid_size, vit.grid_size))
    # Blocks past this model's depth are not built; a deeper file is fine, a shallower one is not.
    state = {k: v for k, v in state.items()
             if not (k.startswith("blocks.") and int(k.split(".")[1]) >= len(vit.blocks))}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path} does not match this ViT: missing {missing[:8]}, unexpected {unexpected[:8]}")
    try:
        vit.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} has tensors of the wrong shape for this ViT: {exc}") from exc


def _resize_pos_embed(pos_embed: torch.Tensor, side: int, size: Sequence) -> torch.Tensor:
    """cls position + the learned side x side grid resized (bicubic) to ``size``."""
    grid = pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
    return torch.cat([pos_embed[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
