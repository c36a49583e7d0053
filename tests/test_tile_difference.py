"""scripts/tile_difference.py: tiled against whole-image output of the trained AdaFormer."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import adaformer_arch  # noqa: F401
from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.utils.tiling import run_tiled
from adaformer_arch.utils.weights import load_weights
from basicsr.utils import tensor2img

ROOT = Path(__file__).parents[1]
SPEC = importlib.util.spec_from_file_location('tile_difference', ROOT / 'scripts' / 'tile_difference.py')
tile_difference = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tile_difference)


def test_compare_counts_levels():
    whole = np.zeros((2, 5, 3), np.int16)
    assert tile_difference.compare(whole, whole) == {'max_levels': 0, 'mean_abs_levels': 0.0,
                                                      'over_1_level_percent': 0.0, 'psnr_vs_whole_db': math.inf}
    tiled = whole.copy()
    tiled[0, 0, 0], tiled[1, 1, 1] = 3, 1
    result = tile_difference.compare(tiled, whole)
    assert result['max_levels'] == 3 and result['over_1_level_percent'] == 100 / 30
    assert result['psnr_vs_whole_db'] == 10 * math.log10(255**2 / (10 / 30))


def test_runs_on_the_shipped_weights(tmp_path):
    """A smoke run on the shipped weights whose numbers are recomputed here from the whole-image and the tiled
    outputs (8-bit levels, as written), with the script's settings (tiles 16 and 32, overlap 8, one thread)."""
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.uniform(0, 255, (8, 10, 3)).astype(np.float32), (40, 32), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / 'lr.png'), np.clip(image, 0, 255).astype(np.uint8))
    out = tmp_path / 'tiles.json'
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'tile_difference.py'), '--input',
                           str(tmp_path / 'lr.png'), '--tiles', '16', '32', '--overlap', '8', '--threads', '1',
                           '--json', str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result['command'].endswith(f'tile_difference.py --input {tmp_path / "lr.png"} --tiles 16 32 --overlap 8 '
                                      f'--threads 1 --json {out}')
    rows = result['rows']
    assert [(r['tile'], r['overlap']) for r in rows] == [(16, 8), (32, 8)]
    assert '| 16 | 8 |' in proc.stdout

    net = AdaFormer(upscale=4)
    load_weights(net, str(ROOT / 'experiments' / 'pretrained_models' / 'AdaFormer_x4_cpu.pth'))
    net.eval()
    bgr = cv2.imread(str(tmp_path / 'lr.png'))
    lq = torch.from_numpy(bgr[:, :, ::-1].astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script's --threads 1: the CPU kernels (and their rounding) depend on it
    try:
        with torch.inference_mode():
            whole = tensor2img(net(lq)).astype(np.int64)
            for row in rows:
                tiled, _ = run_tiled(lambda x: (net(x), {}), lq, 4, row['tile'], row['overlap'], torch.device('cpu'))
                diff = np.abs(tensor2img(tiled).astype(np.int64) - whole)
                mse = np.mean(diff.astype(np.float64)**2)
                assert diff.any()  # tiles differ a little from the whole image (prototypes of one tile)
                assert row['max_levels'] == diff.max()
                assert row['mean_abs_levels'] == pytest.approx(diff.sum() / diff.size, rel=1e-12)
                assert row['over_1_level_percent'] == pytest.approx(100 * np.count_nonzero(diff > 1) / diff.size,
                                                                    rel=1e-12)
                assert row['psnr_vs_whole_db'] == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)
    finally:
        torch.set_num_threads(threads)
