"""scripts/token_linear_routes.py: the token-linear routes and AdaM with both batch layouts (numbers not asserted)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_runs_and_reports_every_route(tmp_path):
    out = tmp_path / 'routes.json'
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'token_linear_routes.py'), '--threads', '1',
                           '--calls', '3', '--adam', '--size', '32x24', '--rounds', '1', '--json', str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result['command'].endswith(f'token_linear_routes.py --threads 1 --calls 3 --adam --size 32x24 --rounds 1 '
                                      f'--json {out}')
    assert [r['layer'] for r in result['layers']] == ['64->192', '64->64', '64->128', '128->64']
    assert all(r['linear'] > 0 and r['conv, 1 image'] > 0 and r['conv, 16 images'] > 0 for r in result['layers'])
    assert [r['early_exit'] for r in result['adam']] == [True, False]
    assert all(r['ratio_median'] > 0 for r in result['adam'])
