"""Exponential moving average of the weights (timm's ModelEmaV2 idea): validation, ``best.pt`` and
export use the averaged network, which is smoother than the last step's on a short, noisy run."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    """``decay`` per step, with timm's warm-up (``min(decay, (1 + n) / (10 + n))``) so the average does
    not hold the random initial weights for thousands of steps. Buffers (BatchNorm statistics) are copied."""

    def __init__(self, net: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        source = net.state_dict()
        for name, value in self.net.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.updates = int(state.get("updates", 0))
