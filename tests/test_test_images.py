"""`basicsr test` on a data set with every kind of awkward image (docs/reliability.md, "Bad images at test time").

One x4 test set holds, besides a plain RGB pair: greyscale, RGBA and 16-bit pairs, an LR of 13x19 (not a multiple
of the window, 8) and one of 5x7 (smaller than a window), a truncated LR PNG, an HR that is not an image, and an LR
of 3x4 whose HR minus crop_border is too small for SSIM. `basicsr test` runs on it twice, side by side: with
Bicubic (no weights; its metrics are recomputed here independently) and with a tiny AdaFormer of window 8 (its
SR images are compared with the network run directly). Both must evaluate the six usable pairs, skip the three
others with a warning naming the file, and exit with status 1.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
import torch

import adaformer_arch  # noqa: F401
from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.archs.bicubic_arch import Bicubic
from adaformer_arch.data.test_pairs import imfrombytes, metric_problem
from adaformer_arch.option_checks import OptionError, check_options
from adaformer_arch.test import CheckedTest
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.img_util import imfrombytes as basicsr_imfrombytes

from helpers import TINY_NET, eval_options, make_pairs, tiny_weights, train_options, write_yaml

SCALE = 4
CROP = 4
NET = dict(TINY_NET, upscale=SCALE, window_size=8)
USABLE = {  # name: LR (h, w, channels or 0 for greyscale, dtype)
    'a_rgb': (16, 16, 3, np.uint8), 'b_grey': (16, 16, 0, np.uint8), 'c_rgba': (16, 16, 4, np.uint8),
    'd_deep': (16, 16, 3, np.uint16), 'e_odd': (13, 19, 3, np.uint8), 'f_small': (5, 7, 3, np.uint8)}
BAD = ('g_trunc', 'h_corrupt', 'i_tiny')


def smooth(height: int, width: int, channels: int, dtype, rng) -> np.ndarray:
    peak = np.iinfo(dtype).max
    coarse = rng.uniform(0, 1, (max(height // 6, 2), max(width // 6, 2), max(channels, 1))).astype(np.float32)
    img = np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)
    img = np.round(img.reshape(height, width, max(channels, 1)) * peak).astype(dtype)
    return img[:, :, 0] if channels == 0 else img


def make_cases(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / 'HR').mkdir(parents=True)
    (root / 'LR').mkdir()
    for name, (h, w, channels, dtype) in dict(USABLE, g_trunc=(12, 12, 3, np.uint8), h_corrupt=(8, 8, 3, np.uint8),
                                              i_tiny=(3, 4, 3, np.uint8)).items():
        hr = smooth(h * SCALE, w * SCALE, channels, dtype, rng)
        cv2.imwrite(str(root / 'HR' / f'{name}.png'), hr)
        cv2.imwrite(str(root / 'LR' / f'{name}.png'), cv2.resize(hr, (w, h), interpolation=cv2.INTER_AREA))
    whole = (root / 'LR' / 'g_trunc.png').read_bytes()
    (root / 'LR' / 'g_trunc.png').write_bytes(whole[:len(whole) // 2])
    (root / 'HR' / 'h_corrupt.png').write_text('not an image')
    return root


def options_for(data: Path, network: Dict, weights) -> Dict:
    opt = eval_options(data, weights, name='cases', pbar=False)
    opt['scale'] = SCALE
    opt['network_g'] = network
    for metric in opt['val']['metrics'].values():
        metric['crop_border'] = CROP
    return opt


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """{'bicubic' | 'adaformer': (working dir, exit status, stdout + stderr)} and the AdaFormer network."""
    root = tmp_path_factory.mktemp('cases')
    data = make_cases(root / 'data')
    torch.manual_seed(0)
    net = AdaFormer(**{k: v for k, v in NET.items() if k != 'type'}).eval()
    torch.save({'params_ema': net.state_dict()}, root / 'tiny.pth')
    options = {'bicubic': options_for(data, {'type': 'Bicubic', 'upscale': SCALE}, None),
               'adaformer': options_for(data, dict(NET), str(root / 'tiny.pth'))}
    procs = {}
    for name, opt in options.items():  # side by side: each start-up takes seconds
        work = root / name
        work.mkdir()
        procs[name] = (work, subprocess.Popen(
            [sys.executable, '-m', 'adaformer_arch.cli', 'test', '-opt', str(write_yaml(work / 'test.yml', opt))],
            cwd=work, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')))
    results = {}
    for name, (work, proc) in procs.items():
        out, _ = proc.communicate(timeout=300)
        results[name] = (work, proc.returncode, out)
    return data, results, net


def summary(work: Path) -> Dict:
    return json.loads(next((work / 'results' / 'cases').glob('stats_tinyset_*.json')).read_text())


def sr_image(work: Path, name: str) -> np.ndarray:
    return cv2.imread(str(work / 'results' / 'cases' / 'visualization' / 'tinyset' / f'{name}_cases.png'),
                      cv2.IMREAD_UNCHANGED)


def read_float(path: Path) -> np.ndarray:
    """The picture as (H, W, 3) float BGR at its full precision: grey repeated, alpha dropped."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    img = img.astype(np.float32) / np.iinfo(img.dtype).max
    img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]
    return np.ascontiguousarray(img)


@pytest.mark.parametrize('name', ['bicubic', 'adaformer'])
def test_bad_pairs_are_skipped_by_name_and_the_rest_is_evaluated(runs, name):
    data, results, _ = runs
    work, status, out = results[name]
    assert status == 1, out
    assert 'Traceback' not in out
    assert f"skipping the pair of {data / 'LR' / 'g_trunc.png'}: the file is truncated or corrupt" in out
    assert f"skipping the pair of {data / 'HR' / 'h_corrupt.png'}: it is not an image OpenCV can decode" in out
    assert (f"skipping the pair of {data / 'LR' / 'i_tiny.png'}: metric ssim (calculate_ssim) is undefined on this "
            f'pair: LR 3x4 (HxW), HR 12x16 minus crop_border 4 on each side leaves 4x8 px') in out
    assert 'tinyset: 3 of 9 pairs skipped, its metrics are over the other 6' in out
    log = next((work / 'results' / 'cases').glob('test_cases_*.log')).read_text()
    assert 'g_trunc.png' in log and '3 of 9 pairs skipped' in log  # the log file has the warnings too
    stats = summary(work)
    assert sorted(r['image'] for r in stats['images']) == sorted(USABLE)
    assert all(math.isfinite(stats['summary'][m]) for m in ('psnr', 'ssim'))
    for stem, (h, w, _, _) in USABLE.items():  # BasicSR writes 8-bit 3-channel results
        sr = sr_image(work, stem)
        assert sr.shape == (h * SCALE, w * SCALE, 3) and sr.dtype == np.uint8, stem
    written = sorted(p.stem for p in (work / 'results' / 'cases' / 'visualization' / 'tinyset').iterdir())
    assert written == sorted(f'{stem}_cases' for stem in USABLE)


def test_metrics_are_those_of_each_image_read_at_full_precision(runs):
    """Grey as 3 equal channels, RGBA without its alpha, 16-bit divided by 65535 (not cut to 8 bits first): the
    metrics of `basicsr test` with Bicubic are the mean of the ones computed here from the files."""
    data, results, _ = runs
    psnrs, ssims = [], []
    for stem in USABLE:
        lq = read_float(data / 'LR' / f'{stem}.png')
        sr = tensor2img(Bicubic(upscale=SCALE)(img2tensor(lq).unsqueeze(0)))
        gt = tensor2img(img2tensor(read_float(data / 'HR' / f'{stem}.png')))
        assert np.array_equal(sr, sr_image(results['bicubic'][0], stem)), stem
        psnrs.append(calculate_psnr(sr, gt, crop_border=CROP, test_y_channel=True))
        ssims.append(calculate_ssim(sr, gt, crop_border=CROP, test_y_channel=True))
    stats = summary(results['bicubic'][0])['summary']
    assert stats['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-6)
    assert stats['ssim'] == pytest.approx(np.mean(ssims), abs=1e-9)


def test_windowed_network_on_sizes_not_multiple_of_the_window(runs):
    """AdaFormer (window 8) on 13x19 and 5x7 LR images: the result is the network's output on the whole image."""
    data, results, net = runs
    for stem in ('e_odd', 'f_small', 'b_grey', 'd_deep'):
        lq = img2tensor(read_float(data / 'LR' / f'{stem}.png')).unsqueeze(0)
        with torch.no_grad():
            direct = tensor2img(net(lq))
        assert np.abs(sr_image(results['adaformer'][0], stem).astype(int) - direct).max() <= 1, stem


def test_sixteen_bit_images_keep_their_precision(tmp_path):
    values = np.arange(0, 65536, 97, dtype=np.uint16)[:600].reshape(20, 30)
    cv2.imwrite(str(tmp_path / 'deep.png'), values)
    content = (tmp_path / 'deep.png').read_bytes()
    img = imfrombytes(content, float32=True)
    assert img.shape == (20, 30, 3) and np.array_equal(np.round(img[:, :, 1] * 65535), values)
    assert not np.array_equal(img, basicsr_imfrombytes(content, float32=True))  # BasicSR's: cut to 8 bits
    cv2.imwrite(str(tmp_path / 'rgb.png'), np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    content = (tmp_path / 'rgb.png').read_bytes()
    assert np.array_equal(imfrombytes(content, float32=True), basicsr_imfrombytes(content, float32=True))


def test_metric_problem_sizes():
    metrics = {'psnr': {'type': 'calculate_psnr', 'crop_border': 4},
               'ssim': {'type': 'calculate_ssim', 'crop_border': 4},
               'niqe': {'type': 'calculate_niqe', 'crop_border': 0}}  # no reference: not checked
    assert metric_problem((5, 7), 4, metrics) == ''  # HR 20x28 - 2 x 4 = 12x20 >= 11x11
    ssim = metric_problem((4, 7), 4, metrics)
    assert ssim.startswith('metric ssim (calculate_ssim) is undefined') and 'leaves 8x20 px' in ssim
    psnr = metric_problem((2, 7), 4, metrics)
    assert psnr.startswith('metric psnr (calculate_psnr) is undefined') and 'leaves nothing' in psnr
    assert metric_problem((1, 1), 4, {}) == ''


def parsed(opt: Dict, is_train: bool) -> Dict:
    opt['is_train'] = is_train
    for phase, dataset in opt['datasets'].items():
        dataset['phase'], dataset['scale'] = phase.split('_')[0], opt['scale']
    return opt


def test_unreadable_image_is_an_option_error_for_training_only(tmp_path):
    data = make_pairs(tmp_path / 'data')
    (data / 'LR' / 'img1.png').write_text('not an image')
    with pytest.raises(OptionError) as err:
        check_options(parsed(train_options(data), is_train=True))
    unreadable = str(data / 'LR' / 'img1.png')
    problems = err.value.problems
    assert len(problems) == 2, problems  # one per data set that lists the file; the reason in () is PIL's
    for phase, problem in zip(('train', 'val'), problems):
        assert problem.startswith(f'datasets.{phase}: 1 of 4 images cannot be read: {unreadable} ('), problem
        assert problem.endswith('. Re-save or remove them.'), problem
    assert check_options(parsed(eval_options(data, tiny_weights(data)), is_train=False)) == []  # left to `basicsr test`


def test_data_set_without_a_usable_pair_is_an_error(tmp_path, capsys):
    data = make_pairs(tmp_path / 'data', count=2)
    for path in (data / 'HR').iterdir():
        path.write_bytes(path.read_bytes()[:100])
    dataset_opt = dict(eval_options(data, tiny_weights(data))['datasets']['test_1'], phase='test', scale=2)
    with pytest.raises(SystemExit) as exit_info:
        CheckedTest().build_dataset(dataset_opt)
    assert exit_info.value.code == 2
    assert 'data set tinyset: none of its 2 pairs can be evaluated' in capsys.readouterr().err
