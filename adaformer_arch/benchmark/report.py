"""The benchmark's outputs: markdown tables (bench.md, also printed), charts and the JSON file, all written
atomically."""
import json
import math
import os
from typing import Any, Dict, List, Optional

from ..utils.atomic_io import atomic_write
from .plot import bar_chart, encode_png, point_chart

LATENCY_COLUMNS = ['Network', 'LR size', 'Latency ms (median)', 'min-max ms', 'Peak mem MiB', 'GMACs', 'Sparsity %',
                   'Params K', 'GFLOP/s', '% of GEMM']


def _num(value: Optional[float], fmt: str) -> str:
    return '-' if value is None else format(value, fmt)


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    """A markdown table of ``header`` and ``rows`` (cells as text)."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def latency_table(result: Dict) -> str:
    rows = []
    for r in result['results']:
        lat = r['latency_ms']
        name = r['network'] + (' *' if r['random_weights'] else '')
        rows.append([
            name, r['size'], f"{lat['median']:.2f}", f"{lat['min']:.2f}-{lat['max']:.2f}",
            _num(None if r['peak_memory_bytes'] is None else r['peak_memory_bytes'] / 2**20, '.1f'),
            _num(r['macs'] / 1e9 if r['macs'] else None, '.3f'),
            _num(None if r['sparsity'] is None else 100.0 * r['sparsity'], '.1f'),
            f"{r['params'] / 1e3:.1f}",
            _num(r['gflops_achieved'], '.1f'),
            _num(None if r['gemm_fraction'] is None else 100.0 * r['gemm_fraction'], '.1f'),
        ])
    return markdown_table(LATENCY_COLUMNS, rows)


def train_table(train: Dict) -> str:
    random = train.get('random_weights', {})
    rows = [[name + (' *' if random.get(name) else ''), f"{v['iters_per_s']:.3f}", f"{v['step_ms']['median']:.1f}",
             f"{v['step_ms']['min']:.1f}-{v['step_ms']['max']:.1f}", f"{v['lr_pixels_per_s']:.0f}"]
            for name, v in train['networks'].items()]
    return markdown_table(['Network', 'iterations/s', 'step ms (median)', 'min-max ms', 'LR pixels/s'], rows)


def tradeoff_table(tradeoff: Dict) -> str:
    random = ' *' if tradeoff.get('network_random_weights') else ''  # the swept network's rows
    rows = [[v['name'] + (random if v['halt_eps'] is not None else ''), f"{v['psnr_y']:.3f}",
             f"{v['latency_ms_mean']:.2f}", f"{v['gmacs_mean']:.3f}",
             _num(None if v['sparsity_mean'] is None else 100.0 * v['sparsity_mean'], '.1f')]
            for v in tradeoff['variants']]
    return markdown_table(['Variant', 'PSNR Y dB', 'Latency ms (mean/image)', 'GMACs (mean)', 'Sparsity %'], rows)


def markdown(result: Dict) -> str:
    m, s, g = result['machine'], result['settings'], result['gemm']
    parts = [
        '# basicsr bench', '',
        f"Command: `{result['command']}`", '',
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, load average {m['load_average_1_5_15']} at start; "
        f"torch {m['torch']}, device {s['device']}, {s['threads']} threads, allocator {s['allocator']['mode']}.",
        f"float32 GEMM ceiling: {g['gflops_best']:.1f} GFLOP/s (torch.mm {g['size']}x{g['size']}, best of "
        f"{g['reps']}). Input: {s['input']}. {s['warmup']} warm-up + {s['runs']} timed runs per network and size, "
        f'interleaved round by round.', '',
        '## Inference', '',
        latency_table(result), '',
        'Latency: wall clock of one forward (batch 1). Peak mem: ' + result['memory_method'] + '. GMACs: executed '
        'multiply-accumulates (see macs_method in bench.json). Sparsity: halted tokens, mean over blocks. GFLOP/s: '
        '2 x MACs / median latency. % of GEMM: GFLOP/s over the GEMM ceiling (torch.mm; convolutions can exceed '
        '100 % where their library uses wider vector units than the GEMM does, see docs/benchmark.md).',
    ]
    if any(r['random_weights'] for r in result['results']):
        parts += ['', '\\* random weights (AdaFormer: halting, hence its cost, is not representative).']
    if result.get('train_throughput'):
        t = result['train_throughput']
        parts += ['', f"## Training throughput (batch {t['batch_size']}, LR patch {t['lr_patch']}, "
                      f"fwd + bwd + Adam, {t['steps']} steps after {t['warmup']})", '', train_table(t)]
    if result.get('tradeoff'):
        t = result['tradeoff']
        parts += ['', f"## PSNR vs latency ({t['num_images']} images of {t['lr']}, Y channel, border "
                      f"{t['crop_border']})", '', tradeoff_table(t)]
        if t.get('network_random_weights'):
            parts += ['', '\\* random weights: the halting, hence PSNR and latency of the sweep, are not '
                          'representative.']
        if t.get('skipped_references'):
            parts += ['', f"Skipped (random weights): {', '.join(t['skipped_references'])}."]
    return '\n'.join(parts) + '\n'


def latency_chart(result: Dict) -> bytes:
    sizes = result['settings']['sizes']
    names = [n['name'] for n in result['networks']]
    values = {(r['network'], r['size']): r['latency_ms']['median'] for r in result['results']}
    s = result['settings']
    title = (f"Median latency, x{result['scale']}, {s['device']}, threads {s['threads']}, "
             f"allocator {s['allocator']['mode']}")
    return encode_png(bar_chart(sizes, names, values, title, 'LR input size (width x height)',
                                'latency ms (log scale)'))


def tradeoff_chart(tradeoff: Dict) -> Optional[bytes]:
    """PSNR against latency of the sweep and the references; points with an infinite PSNR (an SR image equal to
    its HR image) are left out, and None is returned when no point is left."""
    variants = [v for v in tradeoff['variants'] if math.isfinite(v['psnr_y'])]
    sweep = [(v['latency_ms_mean'], v['psnr_y'], f"eps {v['halt_eps']:g}") for v in variants
             if v['halt_eps'] is not None]
    series = [('AdaFormer, halt_eps sweep', sweep, True)] if sweep else []
    series += [(v['name'], [(v['latency_ms_mean'], v['psnr_y'], '')], False) for v in variants
               if v['halt_eps'] is None]
    if not series:
        return None
    return encode_png(point_chart(series, f"PSNR (Y) vs latency, {tradeoff['num_images']} images",
                                  'mean latency per image (ms)', 'PSNR Y (dB)'))


def _strict_json(value: Any) -> Any:
    """``value`` with non-finite floats (an infinite PSNR) as None, which strict JSON parsers accept."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def write_outputs(result: Dict, out_dir: str) -> List[str]:
    """Write bench.json, bench.md, bench.png (and tradeoff.png) into ``out_dir``; returns the paths. Everything is
    rendered before the first file is written, and a tradeoff.png of an earlier run into the same folder is
    removed when this run has none, so the folder never holds files of two runs."""
    outputs = {'bench.json': json.dumps(_strict_json(result), indent=1, allow_nan=False).encode(),
               'bench.md': markdown(result).encode(), 'bench.png': latency_chart(result)}
    chart = tradeoff_chart(result['tradeoff']) if result.get('tradeoff') else None
    if chart is not None:
        outputs['tradeoff.png'] = chart
    paths = []
    for name, data in outputs.items():
        path = os.path.join(out_dir, name)
        atomic_write(path, lambda f, data=data: f.write(data))
        paths.append(path)
    stale = os.path.join(out_dir, 'tradeoff.png')
    if chart is None and os.path.exists(stale):
        os.remove(stale)
    return paths
