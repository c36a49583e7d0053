"""UncertaintyLoss (Eq. 17): value, gradients, cropping, errors."""
import math

import pytest
import torch

import adaformer_arch  # noqa: F401
from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.losses.uncertainty_loss import UncertaintyLoss
from basicsr.losses import build_loss


def test_registered():
    loss = build_loss({'type': 'UncertaintyLoss', 'loss_weight': 0.5})
    assert isinstance(loss, UncertaintyLoss) and loss.loss_weight == 0.5


def test_value_by_hand():
    # one block, constant confidence 0.25 on a 1x1 LR map, x2 upsampled to 2x2; errors 0, 1, 2, 3 grey levels
    conf = torch.full((1, 1, 1, 1), 0.25)
    gt = torch.zeros(1, 1, 2, 2)
    sr = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2) / 255.0
    loss = UncertaintyLoss(loss_weight=2.0)([conf, conf], sr, gt)
    per_block = 0.25 * (0 + 1 + 2 + 3) / 4 + math.log(1 / (0.25 + 1e-8))
    assert loss.item() == pytest.approx(2.0 * 2 * per_block, rel=1e-5)
    summed = UncertaintyLoss(reduction='sum')([conf], sr, gt)
    assert summed.item() == pytest.approx(4 * per_block, rel=1e-5)


def test_optimum_is_inverse_error():
    """Minimising over C gives C = 1/|e| (on the 0-255 scale), clipped by the sigmoid range."""
    logits = torch.zeros(1, 1, 1, 1, requires_grad=True)
    sr, gt = torch.full((1, 1, 1, 1), 4.0 / 255.0), torch.zeros(1, 1, 1, 1)
    optimiser = torch.optim.SGD([logits], lr=1.0)
    for _ in range(500):
        optimiser.zero_grad()
        UncertaintyLoss()([torch.sigmoid(logits)], sr, gt).backward()
        optimiser.step()
    assert torch.sigmoid(logits).item() == pytest.approx(0.25, abs=1e-3)


def test_crops_padding_before_upsampling():
    conf = torch.zeros(1, 1, 4, 4) + 1e-3
    conf[..., :3, :3] = 0.5  # the padded border has a very different value
    gt, sr = torch.zeros(1, 3, 6, 6), torch.full((1, 3, 6, 6), 2 / 255)
    cropped = UncertaintyLoss()([conf], sr, gt, lq_size=(3, 3))
    assert cropped.item() == pytest.approx(0.5 * 2 - math.log(0.5), rel=1e-5)


def test_confidence_maps_are_upsampled_bilinearly():
    """A 2x2 map upsampled to the 4x4 HR grid (align_corners=False): HR pixel centres fall 1/4 and 3/4 of the way
    between LR pixel centres (weights 3/4, 1/4), the outer HR rows and columns lie beyond the outer LR centres and
    take the edge values. The upsampled map is read back pixel by pixel from the gradient of the error term: with
    error_scale 1, reduction 'sum' and sr > gt, d L / d sr = C_up."""
    conf = torch.tensor([[0.1, 0.5], [0.3, 0.9]]).view(1, 1, 2, 2)
    expected = torch.tensor([[0.1, 0.2, 0.4, 0.5],  # by hand: row 0 = LR row 0 widened (0.75 a + 0.25 b, ...)
                             [0.15, 0.2625, 0.4875, 0.6],  # 0.75 row 0 + 0.25 row 3
                             [0.25, 0.3875, 0.6625, 0.8],  # 0.25 row 0 + 0.75 row 3
                             [0.3, 0.45, 0.75, 0.9]])  # LR row 1 widened
    sr, gt = torch.full((1, 1, 4, 4), 0.5, requires_grad=True), torch.zeros(1, 1, 4, 4)
    loss = UncertaintyLoss(reduction='sum', error_scale=1.0, detach_error=False)([conf], sr, gt)
    loss.backward()
    assert torch.allclose(sr.grad[0, 0], expected, rtol=0, atol=1e-6)
    assert loss.item() == pytest.approx((0.5 * expected - torch.log(expected + 1e-8)).sum().item(), rel=1e-6)


def test_error_term_detached_by_default():
    conf = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    sr = torch.rand(1, 3, 4, 4, requires_grad=True)
    UncertaintyLoss()([conf], sr, torch.rand(1, 3, 4, 4)).backward()
    assert sr.grad is None and conf.grad is not None
    sr2 = sr.detach().clone().requires_grad_(True)
    UncertaintyLoss(detach_error=False)([conf], sr2, torch.rand(1, 3, 4, 4)).backward()
    assert sr2.grad is not None


def test_gradient_reaches_confidence_estimator():
    torch.manual_seed(0)
    net = AdaFormer(upscale=2, num_feat=8, embed_dim=8, num_block_enc=1, num_block_dec=1, depth=2, num_heads=2,
                    window_size=4, num_prototypes=2).train()
    lq = torch.rand(1, 3, 8, 8)
    sr, aux = net(lq, return_aux=True)
    UncertaintyLoss()(aux['confidences'], sr, torch.rand(1, 3, 16, 16), lq_size=lq.shape[-2:]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.adam.estimator.parameters())
    assert net.conv_first.weight.grad is None  # L_USL trains the estimator only


@pytest.mark.parametrize('bad, message', [
    (dict(confidences=[]), 'no confidence maps'),
    (dict(gt=torch.zeros(1, 3, 4, 5)), 'differ in shape'),
    (dict(confidences=[torch.zeros(1, 2, 2, 2)]), 'confidence map 0'),
])
def test_bad_input(bad, message):
    args = dict(confidences=[torch.full((1, 1, 2, 2), 0.5)], sr=torch.zeros(1, 3, 4, 4), gt=torch.zeros(1, 3, 4, 4))
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        UncertaintyLoss()(**args)


def test_bad_options():
    with pytest.raises(ValueError, match='reduction'):
        UncertaintyLoss(reduction='none')
    with pytest.raises(ValueError, match='error_scale'):
        UncertaintyLoss(error_scale=0)
