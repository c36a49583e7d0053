"""scripts/block_times.py: per-block AdaM latency with and without early exit, next to the work each block does."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
SPEC = importlib.util.spec_from_file_location('block_times', ROOT / 'scripts' / 'block_times.py')
block_times = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(block_times)


def test_computed_fraction_counts_kept_windows_whole_and_loose_tokens():
    local_halted = torch.tensor([[[[False, True]]]])  # (1, 1, 1, 2): the second window halted
    global_halted = torch.ones(1, 1, 2, 4, dtype=torch.bool)
    global_halted[0, 0, 1, 3] = False  # one token of the halted window still kept by the global branch
    assert block_times.computed_fraction(local_halted, global_halted, 2) == (4 + 1) / 8


def test_runs_on_the_shipped_weights(tmp_path):
    out = tmp_path / 'blocks.json'
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'block_times.py'), '--size', '64x48', '--runs', '1',
                           '--threads', '1',
                           '--profile', '3', '--json', str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result['command'].startswith('python ') and result['command'].endswith(
        f'block_times.py --size 64x48 --runs 1 --threads 1 --profile 3 --json {out}')
    rows = result['rows']
    blocks = [r for r in rows if r['name'].startswith('block')]
    assert len(blocks) == 6 and blocks[0]['computed'] == 1.0
    for r in blocks:
        assert r['computed'] >= max(r['global_kept'], r['local_kept']) - 1e-9
        assert r['early_exit_ms'] > 0 and r['no_exit_ms'] > 0
    estimator = next(r for r in rows if r['name'] == 'estimator')
    assert estimator['early_exit_ms'] > 0 and estimator['no_exit_ms'] == 0
    assert '| block 6 |' in proc.stdout
    assert set(result['profiles']) == {'early_exit', 'no_exit'}
    for ops in result['profiles'].values():
        assert len(ops) == 3 and all(0 < op['share'] <= 1 and op['calls'] >= 1 for op in ops)
        assert [op['self_ms'] for op in ops] == sorted((op['self_ms'] for op in ops), reverse=True)
