"""The speed targets of AdaFormer, evaluated on the JSON of one `basicsr bench` run, per input size.

* ratio to the reference: latency(AdaFormer) / latency(SwinIR-light)                      (target <= 0.15)
* transformer overhead: latency(AdaFormer no-exit) / latency(conv floor)                    (target <= 1.5)
* cost of halted tokens: (latency(AdaFormer) - floor) / (latency(no-exit) - floor), against 1 - 0.7 * s, where s is
  AdaFormer's fraction of halted tokens over all blocks                                     (target: ratio <= bound)
  The same ratio in executed MACs is shown next to it: what the latency ratio would be if time followed the work
  done, i.e. the best any implementation of the same computation can reach.
* peak memory of one AdaFormer forward                                                      (target <= 6 GB at 1920x1080)

    python scripts/speed_targets.py experiments/bench_x4/bench.json [--adaformer AdaFormer] [--no-exit "AdaFormer no-exit"]
        [--reference SwinIR-light] [--floor "Conv floor"] [--out targets.md]
"""
import argparse
import json
import shlex
import sys
from typing import Dict, List, Optional

RATIO_TO_REFERENCE = 0.15
OVERHEAD_TO_FLOOR = 1.5
HALTED_TOKEN_SAVING = 0.7
PEAK_MEMORY_GB = 6.0


def _check(value: Optional[float], ok: bool) -> str:
    return '-' if value is None else f"{value:.3f} ({'met' if ok else 'not met'})"


def _num(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.3f}'


def evaluate(bench: Dict, adaformer: str, no_exit: str, reference: str, floor: str) -> List[Dict]:
    """One dict per input size with the measured ratios (None where a network was not in the run)."""
    by_size: Dict[str, Dict[str, Dict]] = {}
    for row in bench['results']:
        by_size.setdefault(row['size'], {})[row['network']] = row
    rows = []
    for size, nets in by_size.items():
        if adaformer not in nets:
            continue
        lat = {name: r['latency_ms']['median'] for name, r in nets.items()}
        ada = nets[adaformer]
        s = ada.get('sparsity') or 0.0
        row = {'size': size, 'sparsity': s, 'peak_memory_gb': ada['peak_memory_bytes'] / 1e9
               if ada.get('peak_memory_bytes') is not None else None,
               'to_reference': lat[adaformer] / lat[reference] if reference in lat else None,
               'no_exit_to_floor': lat[no_exit] / lat[floor] if no_exit in lat and floor in lat else None,
               'above_floor_ratio': None, 'above_floor_macs_ratio': None,
               'above_floor_bound': 1 - HALTED_TOKEN_SAVING * s}
        if no_exit in lat and floor in lat and lat[no_exit] > lat[floor]:
            row['above_floor_ratio'] = (lat[adaformer] - lat[floor]) / (lat[no_exit] - lat[floor])
            macs = {name: nets[name].get('macs') for name in (adaformer, no_exit, floor)}
            if None not in macs.values() and macs[no_exit] > macs[floor]:
                row['above_floor_macs_ratio'] = (macs[adaformer] - macs[floor]) / (macs[no_exit] - macs[floor])
        rows.append(row)
    return rows


def table(rows: List[Dict]) -> str:
    lines = [f'| LR size | halted tokens s | AdaFormer / SwinIR-light (≤ {RATIO_TO_REFERENCE:g}) | no-exit / floor '
             f'(≤ {OVERHEAD_TO_FLOOR:g}) | above floor: early exit / no-exit (≤ 1 − {HALTED_TOKEN_SAVING:g} s) | '
             f'same in executed MACs | peak memory GB (≤ {PEAK_MEMORY_GB:g} at 1920x1080) |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        above = r['above_floor_ratio']
        above_cell = '-' if above is None else (f"{above:.3f} vs {r['above_floor_bound']:.3f} "
                                                f"({'met' if above <= r['above_floor_bound'] else 'not met'})")
        memory = r['peak_memory_gb']
        memory_cell = '-' if memory is None else (f'{memory:.2f}' + (
            f" ({'met' if memory <= PEAK_MEMORY_GB else 'not met'})" if r['size'] == '1920x1080' else ''))
        lines.append(f"| {r['size']} | {100 * r['sparsity']:.1f} % | "
                     f"{_check(r['to_reference'], (r['to_reference'] or 0) <= RATIO_TO_REFERENCE)} | "
                     f"{_check(r['no_exit_to_floor'], (r['no_exit_to_floor'] or 0) <= OVERHEAD_TO_FLOOR)} | "
                     f"{above_cell} | {_num(r['above_floor_macs_ratio'])} | {memory_cell} |")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bench_json', nargs='+', help='bench.json file(s) of basicsr bench')
    parser.add_argument('--adaformer', default='AdaFormer')
    parser.add_argument('--no-exit', default='AdaFormer no-exit')
    parser.add_argument('--reference', default='SwinIR-light')
    parser.add_argument('--floor', default='Conv floor')
    parser.add_argument('--out', help='also write the table (and the source files) to this markdown file')
    args = parser.parse_args()
    benches = []
    for path in args.bench_json:
        with open(path) as f:
            benches.append(json.load(f))
    present = {row['network'] for bench in benches for row in bench['results']}
    for option in ('adaformer', 'no_exit', 'reference', 'floor'):  # a name given by hand that no run has: a typo
        name = getattr(args, option)
        if name != parser.get_default(option) and name not in present:
            parser.error(f"--{option.replace('_', '-')} {name!r} is in none of the runs (networks: "
                         f"{', '.join(sorted(present))})")
    rows = []
    for bench in benches:
        rows += evaluate(bench, args.adaformer, args.no_exit, args.reference, args.floor)
    text = table(rows)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            command = shlex.join(['python', 'scripts/speed_targets.py', *sys.argv[1:]])  # network names included
            f.write(f"{text}\n\nFrom: {', '.join(args.bench_json)} (`{command}`)\n")


if __name__ == '__main__':
    main()
