"""scripts/speed_targets.py: the issue's speed ratios computed from a bench JSON."""
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location('speed_targets',
                                              Path(__file__).parents[1] / 'scripts' / 'speed_targets.py')
speed_targets = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(speed_targets)


def _row(network: str, size: str, ms: float, sparsity=None, peak=None, macs=None) -> dict:
    return {'network': network, 'size': size, 'latency_ms': {'median': ms}, 'sparsity': sparsity,
            'peak_memory_bytes': peak, 'macs': macs}


def test_ratios_and_bounds():
    bench = {'results': [
        _row('AdaFormer', '480x270', 300.0, sparsity=0.5, peak=2e9, macs=70),
        _row('AdaFormer no-exit', '480x270', 400.0, macs=100),
        _row('SwinIR-light', '480x270', 2000.0), _row('Conv floor', '480x270', 250.0, macs=40),
        _row('AdaFormer', '1920x1080', 5000.0, sparsity=0.2, peak=7e9),  # no peers at this size
    ]}
    small, large = speed_targets.evaluate(bench, 'AdaFormer', 'AdaFormer no-exit', 'SwinIR-light', 'Conv floor')
    assert small['to_reference'] == pytest.approx(0.15)
    assert small['no_exit_to_floor'] == pytest.approx(1.6)
    assert small['above_floor_ratio'] == pytest.approx(50 / 150)
    assert small['above_floor_bound'] == pytest.approx(0.65)
    assert small['above_floor_macs_ratio'] == pytest.approx(30 / 60)
    assert large['to_reference'] is None and large['above_floor_ratio'] is None
    text = speed_targets.table([small, large])
    assert '| 480x270 | 50.0 % | 0.150 (met) | 1.600 (not met) | 0.333 vs 0.650 (met) | 0.500 | 2.00 |' in text
    assert '| 1920x1080 | 20.0 % | - | - | - | - | 7.00 (not met) |' in text


def test_a_network_name_no_run_has_is_an_error(tmp_path):
    """A name given by hand that is in none of the bench JSONs is a typo, not a missing peer ('-')."""
    bench = tmp_path / 'bench.json'
    bench.write_text(json.dumps({'results': [_row('AdaFormer', '480x270', 300.0, sparsity=0.5),
                                             _row('SwinIR-light', '480x270', 2000.0)]}))
    script = Path(__file__).parents[1] / 'scripts' / 'speed_targets.py'
    proc = subprocess.run([sys.executable, str(script), str(bench), '--reference', 'SwinIR-lite'],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--reference 'SwinIR-lite' is in none of the runs (networks: AdaFormer, SwinIR-light)" in proc.stderr
    proc = subprocess.run([sys.executable, str(script), str(bench)], capture_output=True, text=True)
    assert proc.returncode == 0 and '| 480x270 | 50.0 % | 0.150 (met) | - |' in proc.stdout


def test_the_written_table_records_the_whole_command(tmp_path):
    """The "From" line of --out re-creates the file: with the network names that were given, not the defaults."""
    bench = tmp_path / 'bench.json'
    bench.write_text(json.dumps({'results': [_row('AdaFormer bf16', '480x270', 300.0, sparsity=0.5),
                                             _row('SwinIR-light bf16', '480x270', 2000.0)]}))
    out = tmp_path / 'targets.md'
    script = Path(__file__).parents[1] / 'scripts' / 'speed_targets.py'
    argv = [str(bench), '--adaformer', 'AdaFormer bf16', '--reference', 'SwinIR-light bf16', '--out', str(out)]
    proc = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    recorded = out.read_text().split('(`')[-1].split('`)')[0]
    assert shlex.split(recorded) == ['python', 'scripts/speed_targets.py', *argv]
    assert '| 480x270 | 50.0 % | 0.150 (met) |' in out.read_text()
