"""Bicubic network: equals BasicSR's MATLAB imresize, shapes, and `basicsr test` with it and no weights."""
import json

import cv2
import numpy as np
import pytest
import torch

import adaformer_arch  # noqa: F401  (registers Bicubic)
from basicsr.metrics import calculate_psnr
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import ARCH_REGISTRY

from adaformer_arch.archs import Bicubic
from helpers import eval_options, make_pairs, run_cli, write_yaml


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_equals_matlab_imresize_and_shapes(scale):
    torch.manual_seed(scale)
    lq = torch.rand(2, 3, 13, 18)
    sr = Bicubic(upscale=scale)(lq)
    assert sr.shape == (2, 3, 13 * scale, 18 * scale)
    for i in range(2):
        assert (sr[i] - imresize(lq[i], scale)).abs().max() < 1e-5


def test_structured_image_and_tiny_inputs():
    ramp = torch.linspace(0, 1, 24).view(1, 1, 1, 24).expand(1, 3, 20, 24).contiguous()
    edge = (torch.arange(20).view(1, 1, 20, 1) >= 10).float().expand(1, 3, 20, 24)
    lq = ramp * edge
    assert (Bicubic(upscale=4)(lq)[0] - imresize(lq[0], 4)).abs().max() < 1e-5
    assert Bicubic(upscale=4)(torch.rand(1, 1, 1, 2)).shape == (1, 1, 4, 8)


def test_registry_and_arguments():
    net = ARCH_REGISTRY.get('Bicubic')(upscale=3, num_in_ch=1, num_out_ch=1)
    assert net(torch.rand(1, 1, 5, 6)).shape == (1, 1, 15, 18)
    assert not list(net.parameters())
    with pytest.raises(ValueError, match='num_in_ch'):
        Bicubic(upscale=4, num_in_ch=3, num_out_ch=1)
    with pytest.raises(ValueError, match='integer upscale'):
        Bicubic(upscale=1.5)


def test_basicsr_test_runs_bicubic_without_weights(tmp_path):
    data = make_pairs(tmp_path / 'data', count=2, size=32, scale=2)
    opt = eval_options(data, None, name='bicubic')
    opt['network_g'] = {'type': 'Bicubic', 'upscale': 2}
    opt['path'] = {'pretrain_network_g': None}
    opt['val']['save_img'] = False
    run_cli(['test', '-opt', str(write_yaml(tmp_path / 'test.yml', opt))], cwd=tmp_path)
    summary = json.loads(next((tmp_path / 'results' / 'bicubic').glob('stats_tinyset_*.json')).read_text())
    assert summary['summary']['network'] == 'Bicubic' and summary['summary']['num_images'] == 2

    psnrs = []
    for name in ('img0.png', 'img1.png'):
        lq = img2tensor(cv2.imread(str(data / 'LR' / name)).astype(np.float32) / 255.0).unsqueeze(0)
        sr = tensor2img(Bicubic(upscale=2)(lq))
        psnrs.append(calculate_psnr(sr, cv2.imread(str(data / 'HR' / name)), crop_border=2, test_y_channel=True))
    assert summary['summary']['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-4)


def test_lower_precision_leaves_bicubic_in_float32():
    """val.dtype / infer --dtype: Bicubic has no weights to cast, so it is the reference in float32 whatever the
    precision asked for (the input is not rounded to bfloat16 on the way in)."""
    from adaformer_arch.utils.precision import forward_in_own_dtype, in_precision

    net = Bicubic(upscale=2)
    lq = torch.rand(1, 3, 9, 7)
    low = in_precision(net, torch.bfloat16)
    assert low is net
    assert torch.equal(forward_in_own_dtype(low, lq), net(lq))
