"""scripts/tile_difference.py: tiled against whole-image output of the trained AdaFormer."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

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
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.uniform(0, 255, (8, 10, 3)).astype(np.float32), (40, 32), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / 'lr.png'), np.clip(image, 0, 255).astype(np.uint8))
    out = tmp_path / 'tiles.json'
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'tile_difference.py'), '--input',
                           str(tmp_path / 'lr.png'), '--tiles', '16', '32', '--overlap', '8', '--threads', '1',
                           '--json', str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())['rows']
    assert [(r['tile'], r['overlap']) for r in rows] == [(16, 8), (32, 8)]
    for r in rows:  # close to the whole image (not equal today: the prototypes of a tile see only that tile)
        assert 0 <= r['mean_abs_levels'] < 2 and r['psnr_vs_whole_db'] > 35
    assert '| 16 | 8 |' in proc.stdout
