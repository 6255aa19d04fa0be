"""Camera effects on a batch of images, on whatever device the batch is (the GPU in training).

A real camera's look, drawn per image: exposure gain, white balance, gamma, contrast, vignetting,
defocus/motion-like blur and sensor noise (shot + read). Only the IMAGE changes: depth, the valid
mask and intrinsics are geometry and stay exactly as rendered. JPEG, a codec, runs in the data
workers (``training.datasets.world.jpeg_round_trip``).

Config ``train.camera_effects`` (null: off), every key optional::

    camera_effects: {prob: 0.8, exposure: [0.5, 1.6], white_balance: 0.15, gamma: [0.8, 1.25],
                     contrast: [0.75, 1.25], vignetting: 0.35, blur_prob: 0.3, blur_sigma: [0.3, 1.5],
                     noise_prob: 0.7, shot_noise: 0.02, read_noise: 0.02}
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULTS = {"prob": 0.8, "exposure": (0.5, 1.6), "white_balance": 0.15, "gamma": (0.8, 1.25),
            "contrast": (0.75, 1.25), "vignetting": 0.35, "blur_prob": 0.3, "blur_sigma": (0.3, 1.5),
            "noise_prob": 0.7, "shot_noise": 0.02, "read_noise": 0.02}
_BLUR_TAPS = 7


class CameraEffects:
    """Callable ``effects(image) -> image`` for (N, 3, H, W) RGB in [0, 1]; per-image random parameters."""

    def __init__(self, cfg: dict | None = None) -> None:
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"train.camera_effects: unknown key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
        self.p = {**DEFAULTS, **cfg}

    def _uniform(self, n: int, lo_hi, like: torch.Tensor, generator) -> torch.Tensor:
        lo, hi = (float(v) for v in lo_hi)
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=like.device, dtype=torch.float32)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"camera effects need (N, 3, H, W) images, got {tuple(image.shape)}")
        p, n = self.p, image.shape[0]
        x = image.float()
        u = lambda lo_hi: self._uniform(n, lo_hi, x, generator).view(n, 1, 1, 1)   # noqa: E731
        on = (torch.rand(n, generator=generator, device=x.device) < float(p["prob"])).view(n, 1, 1, 1)
        # exposure (log-uniform gain) and white balance (per-channel gain, mean 1)
        lo, hi = (float(v) for v in p["exposure"])
        gain = torch.exp(u((torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi)))))
        wb = 1.0 + float(p["white_balance"]) * (2 * torch.rand(n, 3, 1, 1, generator=generator, device=x.device) - 1)
        wb = wb / wb.mean(dim=1, keepdim=True)
        y = (x * gain * wb).clamp(0, 1) ** u(p["gamma"])
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (mean + (y - mean) * u(p["contrast"])).clamp(0, 1)
        # vignetting: 1 - v * r^2, r = 1 at the corners
        h, w = x.shape[-2:]
        yy = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1)
        xx = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w)
        y = y * (1 - u((0.0, p["vignetting"])) * (xx * xx + yy * yy) / 2)
        # blur: per-image Gaussian, separable, as grouped convolutions
        blur = (torch.rand(n, generator=generator, device=x.device) < float(p["blur_prob"]))
        if x.device.type != "cpu" or bool(blur.any()):   # on a GPU: always (an identity kernel), no host sync
            sigma = self._uniform(n, p["blur_sigma"], x, generator)
            taps = torch.arange(_BLUR_TAPS, device=x.device, dtype=torch.float32) - _BLUR_TAPS // 2
            kernel = torch.exp(-0.5 * (taps.view(1, -1) / sigma.view(-1, 1)) ** 2)
            kernel = kernel / kernel.sum(dim=1, keepdim=True)
            kernel = torch.where(blur.view(-1, 1), kernel, (taps == 0).float().view(1, -1))
            k = kernel.repeat_interleave(3, dim=0)                                   # (3N, taps)
            z = y.reshape(1, 3 * n, h, w)
            z = F.pad(z, (_BLUR_TAPS // 2,) * 4, mode="replicate")
            z = F.conv2d(z, k.view(3 * n, 1, 1, -1), groups=3 * n)
            z = F.conv2d(z, k.view(3 * n, 1, -1, 1), groups=3 * n)
            y = z.view(n, 3, h, w)
        # sensor noise: variance = shot * signal + read^2
        noisy = (torch.rand(n, generator=generator, device=x.device) < float(p["noise_prob"])).view(n, 1, 1, 1)
        std = torch.sqrt(u((0.0, p["shot_noise"])) * y + u((0.0, p["read_noise"])) ** 2)
        noise = torch.randn(y.shape, generator=generator, device=x.device) * std
        y = (y + noise * noisy).clamp(0, 1)
        return torch.where(on, y, x).to(image.dtype)


def build_camera_effects(cfg: dict | None) -> CameraEffects | None:
    """``train.camera_effects`` -> CameraEffects, or None when absent/null/false."""
    if not cfg:
        return None
    return CameraEffects({} if cfg is True else cfg)
