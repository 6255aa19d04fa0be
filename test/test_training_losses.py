"""Losses on hand-computed cases: masking, scale invariance, the gradient term."""
import math

import pytest
import torch

from training.losses import build_loss, gradient_loss

ALL = ["l1", "l1_grad", "silog", "silog_grad", "mse"]


def ramp(n=2, h=4, w=5):
    """Depth increasing by 1 m per column: x-differences are exactly 1, y-differences 0."""
    row = torch.arange(w, dtype=torch.float32) + 1.0
    return row.expand(n, 1, h, w).clone()


def all_valid(t):
    return torch.ones_like(t, dtype=torch.bool)


@pytest.mark.parametrize("name", ALL)
def test_perfect_prediction_costs_nothing(name):
    gt = ramp()
    loss, parts = build_loss({"name": name})(gt.clone(), gt, all_valid(gt))
    assert float(loss) == pytest.approx(0.0, abs=1e-4)
    assert all(v == pytest.approx(0.0, abs=1e-4) for v in parts.values())


def test_l1_and_mse_hand_computed():
    gt = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    pred = torch.tensor([[[[2.0, 2.0], [1.0, 100.0]]]])
    valid = torch.tensor([[[[True, True], [True, False]]]])
    l1, parts = build_loss({"name": "l1"})(pred, gt, valid)
    assert float(l1) == pytest.approx((1 + 0 + 2) / 3) and parts == {"l1": pytest.approx(1.0)}
    mse, _ = build_loss({"name": "mse"})(pred, gt, valid)
    assert float(mse) == pytest.approx((1 + 0 + 4) / 3)


def test_l1_grad_constant_offset_has_no_gradient_error():
    gt = ramp()
    loss, parts = build_loss({"name": "l1_grad"})(gt + 0.3, gt, all_valid(gt))
    assert float(parts["grad"]) == pytest.approx(0.0, abs=1e-6)
    assert float(parts["l1"]) == pytest.approx(0.3, rel=1e-5)
    assert float(loss) == pytest.approx(0.3, rel=1e-5)


def test_l1_grad_scaled_prediction_hand_computed():
    gt = ramp(h=3, w=4)                              # columns 1, 2, 3, 4 m
    loss, parts = build_loss({"name": "l1_grad", "grad_weight": 0.5})(2 * gt, gt, all_valid(gt))
    # |2*1 - 1| = 1 for every x-difference, 0 for every y-difference; L1 = mean(1, 2, 3, 4) = 2.5.
    assert parts["grad"] == pytest.approx(1.0)
    assert parts["l1"] == pytest.approx(2.5)
    assert float(loss) == pytest.approx(2.5 + 0.5 * 1.0)


def test_gradient_term_uses_only_pairs_of_valid_pixels():
    gt = ramp(n=1, h=1, w=4)
    pred = gt.clone()
    pred[..., 3] = 50.0                              # wrong, but its pixel is masked
    valid = all_valid(gt)
    valid[..., 3] = False
    assert float(gradient_loss(pred, gt, valid)) == pytest.approx(0.0)
    valid[..., 3] = True
    assert float(gradient_loss(pred, gt, valid)) == pytest.approx(abs((50 - 3) - 1) / 3)


@pytest.mark.parametrize("name", ALL)
def test_masked_pixels_are_ignored_and_get_no_gradient(name):
    torch.manual_seed(0)
    gt = torch.rand(2, 1, 6, 7) * 5 + 0.5
    valid = torch.rand(2, 1, 6, 7) > 0.3
    pred = (gt * (1 + 0.2 * torch.randn_like(gt))).clamp_min(0.1)
    garbage = torch.where(valid, pred, torch.full_like(pred, 1e4)).requires_grad_()
    gt_garbage = torch.where(valid, gt, torch.full_like(gt, float("nan")))
    loss_fn = build_loss({"name": name})
    clean, _ = loss_fn(pred, gt, valid)
    dirty, _ = loss_fn(garbage, gt_garbage, valid)
    assert float(dirty.detach()) == pytest.approx(float(clean), rel=1e-5)
    dirty.backward()
    assert torch.isfinite(garbage.grad).all()
    assert (garbage.grad[~valid] == 0).all()
    assert garbage.grad[valid].abs().sum() > 0


def test_silog_hand_computed_for_a_scaled_prediction():
    gt = ramp()
    k = 1.7
    log_k = math.log(k)
    default, parts = build_loss({"name": "silog"})(k * gt, gt, all_valid(gt))     # 10 * sqrt(d² - 0.85 d²)
    assert float(default) == pytest.approx(10 * math.sqrt((1 - 0.85) * log_k ** 2), rel=1e-5)
    assert parts["silog"] == pytest.approx(float(default))
    eigen, _ = build_loss({"name": "silog", "sqrt": False, "scale": 1.0})(k * gt, gt, all_valid(gt))
    assert float(eigen) == pytest.approx(0.15 * log_k ** 2, rel=1e-5)


def test_silog_with_full_variance_focus_is_scale_invariant():
    torch.manual_seed(1)
    gt = torch.rand(2, 1, 5, 6) * 9 + 1
    pred = gt * (1 + 0.1 * torch.randn_like(gt)).clamp_min(0.5)
    loss_fn = build_loss({"name": "silog", "variance_focus": 1.0})
    base, _ = loss_fn(pred, gt, all_valid(gt))
    scaled, _ = loss_fn(3.0 * pred, gt, all_valid(gt))
    assert float(base) > 0.1
    assert float(scaled) == pytest.approx(float(base), rel=1e-4)
    assert float(loss_fn(4.0 * gt, gt, all_valid(gt))[0]) == pytest.approx(0.0, abs=1e-4)


def test_silog_averages_over_images_with_valid_pixels_only():
    gt = ramp(n=2)
    pred = gt.clone()
    pred[0] *= 2.0
    valid = all_valid(gt)
    valid[1] = False                                  # second image contributes nothing, not a zero
    loss, _ = build_loss({"name": "silog", "sqrt": False, "scale": 1.0})(pred, gt, valid)
    assert float(loss) == pytest.approx(0.15 * math.log(2.0) ** 2, rel=1e-5)


def test_silog_grad_gradient_term_is_scale_invariant():
    gt = ramp()
    loss, parts = build_loss({"name": "silog_grad", "variance_focus": 1.0})(2.5 * gt, gt, all_valid(gt))
    assert parts["grad"] == pytest.approx(0.0, abs=1e-5)
    assert float(loss) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_no_valid_pixel_gives_zero_loss_that_still_backpropagates(name):
    pred = torch.rand(2, 1, 4, 4, requires_grad=True)
    gt = torch.zeros(2, 1, 4, 4)
    loss, _ = build_loss({"name": name})(pred, gt, torch.zeros_like(gt, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_a_real_optimisation_step_reduces_the_loss():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1),
                              torch.nn.Softplus())
    image = torch.rand(4, 3, 16, 16)
    gt = image.mean(1, keepdim=True) * 4 + 1
    valid = torch.rand_like(gt) > 0.2
    loss_fn = build_loss({"name": "silog_grad"})
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss, _ = loss_fn(net(image), gt, valid)
        first = float(loss.detach()) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(loss.detach()) < 0.5 * first


@pytest.mark.parametrize("cfg, message", [
    ({"name": "huber"}, "unknown loss"),
    ({"name": "l1", "grad_weight": 1.0}, "unknown option"),
    ({"name": "silog", "variance_focus": 1.5}, "variance_focus"),
])
def test_build_loss_rejects_bad_config(cfg, message):
    with pytest.raises(ValueError, match=message):
        build_loss(cfg)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        build_loss({"name": "l1"})(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 8, 8),
                                   torch.ones(1, 1, 8, 8, dtype=torch.bool))
