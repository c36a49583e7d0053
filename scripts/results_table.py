"""The README's results table: Bicubic vs AdaFormer (early exit) vs AdaFormer (early_exit: false) on Set5/Set14/B100,
optionally AdaFormer at other halt_eps and SwinIR-light.

Each row is a `basicsr test` run of ``options/test_benchmark_x4.yml`` (datasets whose folders are missing are left
out) with only ``network_g`` (and the weights) changed; the numbers are read back from the JSON that AdaFormerModel
writes.

    python scripts/results_table.py [--weights experiments/pretrained_models/AdaFormer_x4_cpu.pth] [--out DIR]
        [--rows bicubic early-exit no-exit] [--halt-eps 0.2 0.3] [--swinir-weights PATH] [--estimator-dim 32]
        [--dtype bfloat16]
"""
import argparse
import json
import os
import subprocess
import sys
from typing import Dict, List

import yaml

PAPER = {'Set5': (32.43, 0.8974), 'Set14': (28.80, 0.7858), 'B100': (27.70, 0.7407)}
ROWS = {
    'bicubic': ('Bicubic', {'type': 'Bicubic', 'upscale': 4}),
    'early-exit': ('AdaFormer (early exit)', {'type': 'AdaFormer', 'upscale': 4, 'early_exit': True}),
    'no-exit': ('AdaFormer (early_exit: false)', {'type': 'AdaFormer', 'upscale': 4, 'early_exit': False}),
}
# the network of the SwinIR-light row: that of its training options (AdaFormerModel pads its input to the window)
SWINIR_OPTIONS = 'options/train_swinir_light_x4_cpu.yml'


def run_variant(base: Dict, label: str, network: Dict, weights: str, out: str, dtype: str) -> Dict[str, Dict]:
    opt = json.loads(json.dumps(base))
    name = 'results_x4_' + ''.join(c if c.isalnum() else '_' for c in label).strip('_')
    opt['name'] = name
    opt['network_g'] = network
    opt['path'] = {'pretrain_network_g': None if network['type'] == 'Bicubic' else weights, 'strict_load_g': True,
                   'param_key_g': 'params_ema'}
    opt['val']['dtype'] = dtype
    opt['val']['save_img'] = False
    opt['val']['save_halting_maps'] = False
    opt['datasets'] = {k: v for k, v in opt['datasets'].items() if os.path.isdir(v['dataroot_gt'])}
    path = os.path.join(out, f'{name}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    if subprocess.run([sys.executable, '-m', 'adaformer_arch.cli', 'test', '-opt', path]).returncode:
        sys.exit(f'results_table.py: basicsr test -opt {path} failed (its error is above; a network_g setting it '
                 'names is an option of this script: --estimator-dim, --swinir-weights, --weights)')
    stats = {}
    for dataset in opt['datasets'].values():
        with open(os.path.join('results', name, f'stats_{dataset["name"]}_{name}.json')) as f:
            stats[dataset['name']] = json.load(f)['summary']
    return stats


def table(rows: Dict[str, Dict[str, Dict]], datasets: List[str]) -> str:
    head = '| method | ' + ' | '.join(f'{d} PSNR / SSIM | {d} ms | {d} GMACs | {d} last-block sparsity'
                                       for d in datasets) + ' |'
    lines = [head, '|---|' + '---|---|---|---|' * len(datasets)]
    for label, stats in rows.items():
        cells = []
        for d in datasets:
            s = stats[d]
            sparsity = f'{100 * s["sparsity"][-1]:.1f} %' if 'sparsity' in s else '-'
            gmacs = f'{s["gmacs_mean"]:.2f}' if 'gmacs_mean' in s else '-'
            cells += [f'{s["psnr"]:.2f} / {s["ssim"]:.4f}', f'{s["latency_ms_median"]:.0f}', gmacs, sparsity]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    paper = [f'{PAPER[d][0]:.2f} / {PAPER[d][1]:.4f} | - | - | -' if d in PAPER else '- | - | - | -' for d in datasets]
    lines.append('| AdaFormer, paper (DIV2K, 1M iterations on GPU) | ' + ' | '.join(paper) + ' |')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--opt', default='options/test_benchmark_x4.yml')
    parser.add_argument('--weights', default='experiments/pretrained_models/AdaFormer_x4_cpu.pth')
    parser.add_argument('--out', default='experiments/results_x4')
    parser.add_argument('--rows', nargs='+', choices=list(ROWS), default=list(ROWS))
    parser.add_argument('--halt-eps', nargs='*', type=float, default=[], help='extra early-exit rows at these halt_eps')
    parser.add_argument('--swinir-weights', help='add a SwinIR-light row with these weights')
    parser.add_argument('--estimator-dim', type=int,
                        help="the AdaFormer weights' confidence estimator width, when not the default 8 (network_g "
                        'estimator_dim)')
    parser.add_argument('--dtype', choices=('float32', 'bfloat16', 'float16'), default='float32',
                        help='val.dtype of every row: the precision the networks are tested in')
    args = parser.parse_args()
    with open(args.opt) as f:
        base = yaml.safe_load(f)
    os.makedirs(args.out, exist_ok=True)
    variants = [(*ROWS[row], args.weights) for row in args.rows]
    variants += [(f'AdaFormer (early exit, halt_eps {eps:g})', dict(ROWS['early-exit'][1], halt_eps=eps), args.weights)
                 for eps in args.halt_eps]
    if args.estimator_dim is not None:
        variants = [(label, dict(network, estimator_dim=args.estimator_dim), weights) if network['type'] == 'AdaFormer'
                    else (label, network, weights) for label, network, weights in variants]
    if args.swinir_weights:
        with open(SWINIR_OPTIONS) as f:
            variants.append(('SwinIR-light', yaml.safe_load(f)['network_g'], args.swinir_weights))
    if args.dtype != 'float32':
        variants = [(f'{label}, {args.dtype}', network, weights) for label, network, weights in variants]
    rows = {label: run_variant(base, label, network, weights, args.out, args.dtype)
            for label, network, weights in variants}
    datasets = list(next(iter(rows.values())))
    text = table(rows, datasets)
    command = 'python scripts/results_table.py ' + ' '.join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if v not in (None, [], 'float32'))
    print(text)
    with open(os.path.join(args.out, 'results.md'), 'w') as f:
        f.write(f'{text}\n\nCommand: `{command}`\n')
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump({'command': command, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
