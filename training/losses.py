"""Depth losses, all averaged over valid ground-truth pixels only.

Every loss is an ``nn.Module`` with ``forward(pred, gt, valid) -> (loss, parts)``: ``pred``/``gt`` are
(N,1,H,W) metres, ``valid`` a bool mask of the same shape, ``loss`` a scalar tensor to back-propagate
and ``parts`` a dict of its terms as detached 0-d tensors for logging (no host sync per step). A batch with no valid pixel gives a zero loss
that still has a graph (so a sparse KITTI batch never crashes ``backward``).

``build_loss(cfg)`` takes the recipe's ``loss`` section: ``name`` plus that loss's options.

* ``l1``: mean |pred - gt|.
* ``l1_grad``: l1 + ``grad_weight`` (λ, default 0.5) * (L_grad_x + L_grad_y), where L_grad_x is the mean
  |∂x pred - ∂x gt| of forward finite differences of the depth maps, over pixel pairs both valid. A
  constant offset has no gradient error; a scaled prediction does. (The seed recipe's loss.)
* ``silog``: scale-invariant log error of Eigen et al. 2014 per image, d = log pred - log gt:
  ``mean(d²) - variance_focus * mean(d)²`` with variance_focus (λ) 0.85 as in BTS / AdaBins / DPT-style
  metric training (λ = 1 makes it fully scale invariant; λ = 0 is the plain log MSE). With ``sqrt: true``
  (default) it is ``scale * sqrt(...)`` with scale 10, the AdaBins form; set ``sqrt: false, scale: 1``
  for Eigen's original. Averaged over images that have valid pixels.
* ``silog_grad``: silog + ``grad_weight`` * the gradient term on log depth (scale invariant like silog,
  so the two agree on what they forgive).
* ``mse``: mean (pred - gt)² (the Kaggle seed's loss).

Predictions are clamped to ``min_pred`` (1e-3 m) before a log so a non-positive output cannot make NaNs.
"""
from __future__ import annotations

import torch
from torch import nn

LOSSES = ("l1", "l1_grad", "silog", "silog_grad", "mse")


def _check(pred: torch.Tensor, gt: torch.Tensor,
           valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if pred.shape != gt.shape or valid.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, gt {tuple(gt.shape)} and valid {tuple(valid.shape)} must "
                         "have the same shape; resize the prediction to the ground truth first")
    if pred.dim() != 4:
        raise ValueError(f"expected (N,1,H,W) tensors, got {tuple(pred.shape)}")
    valid = valid.bool()
    # Ground truth at invalid pixels may be NaN/inf/0: replace it so no term (or its gradient) sees it.
    gt = torch.where(valid, gt.float(), torch.ones_like(gt, dtype=torch.float32))
    return pred.float(), gt, valid


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over ``mask``; ``where`` (not a product) so NaN/inf at masked pixels cannot leak in."""
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp_min(1).to(values.dtype)


def _forward_difference(t: torch.Tensor, dim: int) -> torch.Tensor:
    length = t.shape[dim] - 1
    return t.narrow(dim, 1, length) - t.narrow(dim, 0, length)


def gradient_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L_grad_x + L_grad_y: mean |Δpred - Δgt| of forward differences along each axis, both pixels valid."""
    total = pred.new_zeros(())
    for dim in (3, 2):  # x (width), then y (height)
        length = pred.shape[dim] - 1
        if length < 1:
            continue
        pair_valid = valid.narrow(dim, 1, length) & valid.narrow(dim, 0, length)
        error = (_forward_difference(pred, dim) - _forward_difference(gt, dim)).abs()
        total = total + _masked_mean(error, pair_valid)
    return total


class L1Loss(nn.Module):
    def forward(self, pred, gt, valid):
        pred, gt, valid = _check(pred, gt, valid)
        loss = _masked_mean((pred - gt).abs(), valid)
        return loss, {"l1": loss.detach()}


class MSELoss(nn.Module):
    def forward(self, pred, gt, valid):
        pred, gt, valid = _check(pred, gt, valid)
        loss = _masked_mean((pred - gt) ** 2, valid)
        return loss, {"mse": loss.detach()}


class L1GradLoss(nn.Module):
    def __init__(self, grad_weight: float = 0.5):
        super().__init__()
        self.grad_weight = float(grad_weight)

    def forward(self, pred, gt, valid):
        pred, gt, valid = _check(pred, gt, valid)
        l1 = _masked_mean((pred - gt).abs(), valid)
        grad = gradient_loss(pred, gt, valid)
        return l1 + self.grad_weight * grad, {"l1": l1.detach(), "grad": grad.detach()}


class SILogLoss(nn.Module):
    def __init__(self, variance_focus: float = 0.85, sqrt: bool = True, scale: float = 10.0, min_pred: float = 1e-3):
        super().__init__()
        if not 0.0 <= variance_focus <= 1.0:
            raise ValueError(f"silog variance_focus must be in [0, 1], got {variance_focus}")
        self.variance_focus = float(variance_focus)
        self.sqrt = bool(sqrt)
        self.scale = float(scale)
        self.min_pred = float(min_pred)

    def silog(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        d = torch.log(pred.clamp_min(self.min_pred)) - torch.log(gt.clamp_min(self.min_pred))
        d = torch.where(valid, d, torch.zeros_like(d))
        count = valid.flatten(1).sum(1).to(pred.dtype)
        has_pixels = count > 0
        count = count.clamp_min(1.0)
        mean_d = d.flatten(1).sum(1) / count
        # mean(d²) - λ mean(d)² written as var(d) + (1 - λ) mean(d)²: no cancellation under the sqrt.
        centred = torch.where(valid, d - mean_d.view(-1, 1, 1, 1), torch.zeros_like(d))
        variance = (centred ** 2).flatten(1).sum(1) / count
        per_image = variance + (1.0 - self.variance_focus) * mean_d ** 2
        if self.sqrt:
            per_image = per_image.clamp_min(1e-12).sqrt()
        per_image = self.scale * per_image
        return (per_image * has_pixels).sum() / has_pixels.sum().clamp_min(1)

    def forward(self, pred, gt, valid):
        pred, gt, valid = _check(pred, gt, valid)
        loss = self.silog(pred, gt, valid)
        return loss, {"silog": loss.detach()}


class SILogGradLoss(SILogLoss):
    def __init__(self, grad_weight: float = 0.5, **silog_options):
        super().__init__(**silog_options)
        self.grad_weight = float(grad_weight)

    def forward(self, pred, gt, valid):
        pred, gt, valid = _check(pred, gt, valid)
        silog = self.silog(pred, gt, valid)
        grad = gradient_loss(torch.log(pred.clamp_min(self.min_pred)), torch.log(gt.clamp_min(self.min_pred)), valid)
        return silog + self.grad_weight * grad, {"silog": silog.detach(), "grad": grad.detach()}


_BUILDERS = {"l1": L1Loss, "l1_grad": L1GradLoss, "silog": SILogLoss, "silog_grad": SILogGradLoss, "mse": MSELoss}
_OPTIONS = {
    "l1": (),
    "mse": (),
    "l1_grad": ("grad_weight",),
    "silog": ("variance_focus", "sqrt", "scale", "min_pred"),
    "silog_grad": ("grad_weight", "variance_focus", "sqrt", "scale", "min_pred"),
}


def build_loss(cfg: dict) -> nn.Module:
    """The loss named by ``cfg["name"]`` with the rest of ``cfg`` as its options."""
    options = dict(cfg)
    name = options.pop("name", None)
    if name not in _BUILDERS:
        raise ValueError(f"unknown loss {name!r}; available: {list(LOSSES)}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for loss {name!r}; allowed: {list(_OPTIONS[name]) or 'none'}")
    return _BUILDERS[name](**options)
