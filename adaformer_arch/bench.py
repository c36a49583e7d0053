"""`basicsr bench`: latency, peak memory, executed MACs, sparsity and achieved GFLOP/s of several SR networks side
by side in one process, plus optional training throughput and a PSNR vs latency sweep of AdaFormer's halt_eps.

Usage::

    basicsr bench -opt options/bench_x4.yml [--sizes 128x128 480x270 ...] [--runs N] [--warmup N] [--threads N]
                  [--out DIR] [--allocator default|tuned] [--device cpu|cuda] [--random-weights] [--input IMAGE]
                  [--train-throughput] [--dataset-hr DIR --dataset-lr DIR]

Writes OUT/bench.json (every number, machine, settings and the command to re-run), OUT/bench.md, OUT/bench.png and,
with a dataset, OUT/tradeoff.png. See docs/benchmark.md.
"""
import argparse
import datetime
import os
import shlex
import sys
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .benchmark import memory, runner
from .benchmark.allocator import CHOICES as ALLOCATORS
from .benchmark.allocator import apply_allocator
from .benchmark.inputs import load_image, lr_input
from .benchmark.machine import load_average, machine_info
from .benchmark.macs import profile
from .benchmark.networks import build, uses_random_weights
from .benchmark.options import BenchError, BenchOptions, format_size, load_options, parse_size
from .benchmark.report import markdown, write_outputs
from .benchmark.tradeoff import dataset_pairs, num_steps, sweep
from .benchmark.train_throughput import train_throughput
from .utils.output_folder import folder_problem
from .utils.precision import check_device, parse_dtype


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='basicsr bench', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='benchmark option file, e.g. options/bench_x4.yml')
    parser.add_argument('--sizes', nargs='+', help='LR input sizes WIDTHxHEIGHT (default: the option file\'s)')
    parser.add_argument('--runs', type=int, help='timed runs per network and size (default: option file, else 10)')
    parser.add_argument('--warmup', type=int, help='untimed runs per network and size (default: option file, else 2)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch intra-op threads for every network (default: %(default)s, torch\'s default here)')
    parser.add_argument('--out', help='output folder (default: results/bench_<option file name>)')
    parser.add_argument('--allocator', choices=ALLOCATORS, default='tuned',
                        help='glibc malloc: as is, or tuned like basicsr train/test (no mmap, no trim); '
                             'default %(default)s')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu', help='default %(default)s')
    parser.add_argument('--random-weights', action='store_true',
                        help='ignore every weights file and benchmark random weights (not representative for '
                             'AdaFormer, whose halting depends on its weights)')
    parser.add_argument('--input', help='LR image to benchmark on (mirror-tiled/cropped to each size); default: '
                                        'the option file\'s input, else a synthetic image')
    parser.add_argument('--gemm-size', type=int, default=2048, help='side of the GEMM ceiling matrices')
    parser.add_argument('--train-throughput', action='store_true',
                        help='also measure training iterations/s (option file block train_throughput)')
    parser.add_argument('--train-batch', type=int, help='batch size of --train-throughput (default: option file)')
    parser.add_argument('--train-patch', type=int, help='LR patch size of --train-throughput (default: option file)')
    parser.add_argument('--dataset-hr', help='HR folder for the PSNR vs latency sweep (option file block tradeoff)')
    parser.add_argument('--dataset-lr', help='LR folder paired by file name with --dataset-hr')
    return parser.parse_args(argv)


def reproduce_command(args: argparse.Namespace, opts: BenchOptions, out_dir: str, input_name: Optional[str]) -> str:
    """The command line that re-runs this benchmark with every setting explicit."""
    cmd = ['basicsr', 'bench', '-opt', args.opt, '--sizes', *[format_size(s) for s in opts.sizes],
           '--runs', str(opts.runs), '--warmup', str(opts.warmup), '--threads', str(args.threads),
           '--allocator', args.allocator, '--device', args.device, '--gemm-size', str(args.gemm_size),
           '--out', out_dir]
    if input_name:
        cmd += ['--input', input_name]
    if args.random_weights:
        cmd.append('--random-weights')
    if args.train_throughput:
        cmd += ['--train-throughput', '--train-batch', str(opts.train_throughput.batch_size),
                '--train-patch', str(opts.train_throughput.lr_patch)]
    if args.dataset_hr:
        cmd += ['--dataset-hr', args.dataset_hr, '--dataset-lr', args.dataset_lr]
    return shlex.join(cmd)


def resolve(args: argparse.Namespace) -> BenchOptions:
    """The option file with the command line's overrides applied and checked."""
    opts = load_options(args.opt)
    if args.sizes:
        opts.sizes = [parse_size(s) for s in args.sizes]
    if args.runs is not None:
        opts.runs = args.runs
    if args.warmup is not None:
        opts.warmup = args.warmup
    if args.input:
        opts.input = args.input
    for flag, value, minimum in (('--runs', opts.runs, 1), ('--warmup', opts.warmup, 0),
                                 ('--threads', args.threads, 1), ('--gemm-size', args.gemm_size, 1)):
        if value < minimum:
            raise BenchError(f'{flag} must be >= {minimum}, got {value}')
    if bool(args.dataset_hr) != bool(args.dataset_lr):
        raise BenchError('give both --dataset-hr and --dataset-lr, or neither')
    if args.dataset_hr and opts.tradeoff is None:
        raise BenchError(f'--dataset-hr/--dataset-lr need a tradeoff block in {args.opt} (network, halt_eps)')
    if args.train_throughput and opts.train_throughput is None:
        raise BenchError(f'--train-throughput needs a train_throughput block in {args.opt} (networks, ...)')
    for flag, value, key in (('--train-batch', args.train_batch, 'batch_size'),
                             ('--train-patch', args.train_patch, 'lr_patch')):
        if value is None:
            continue
        if not args.train_throughput:
            raise BenchError(f'{flag} needs --train-throughput')
        if value < 1:
            raise BenchError(f'{flag} must be >= 1, got {value}')
        setattr(opts.train_throughput, key, value)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise BenchError('--device cuda but torch sees no CUDA device')
    for spec in opts.networks:
        try:
            check_device(parse_dtype(spec.dtype), torch.device(args.device))
        except ValueError as err:
            raise BenchError(f'{args.opt}: network {spec.name!r}: dtype {spec.dtype}: {err}') from None
    return opts


def measure_size(args: argparse.Namespace, opts: BenchOptions, nets: Dict[str, nn.Module], size: Tuple[int, int],
                 lq: Tensor, gemm_gflops: float, bar: tqdm) -> Tuple[List[Dict], List[List[str]]]:
    """Profile (MACs, sparsity, output shape), peak memory and interleaved latency of every network on ``lq``
    (1, 3, height, width). Returns one result row per network and the round order."""
    label, device = format_size(size), lq.device
    specs = {s.name: s for s in opts.networks}
    profiles, peaks = {}, {}
    for name, net in nets.items():
        bar.set_postfix_str(f'{label} profile {name}')
        try:
            profiles[name] = profile(net, lq)
        except BenchError as err:  # the InputAdapter's scale check: name the file and the entry
            raise BenchError(f'{args.opt}: network {name!r}: {err}') from None
        except Exception as err:  # the network's own code failed on this input (the first forward of the run)
            first_line = (str(err).strip().splitlines() or [''])[0][:300]
            hint = '' if specs[name].pad_to > 1 else (
                '; a network that needs input sizes in multiples of its window (BasicSR\'s SwinIR: window_size) '
                'needs pad_to: <window> in its entry')
            raise BenchError(f'{args.opt}: network {name!r} failed on a {label} input ({type(err).__name__}: '
                             f'{first_line}){hint}') from err
        expected = [1, 3, size[1] * opts.scale, size[0] * opts.scale]
        if profiles[name].output_shape != expected:
            raise BenchError(f'{args.opt}: network {name!r} turned a {label} input into '
                             f'{profiles[name].output_shape}, expected {expected}; check network_g (upscale)')
        bar.update()
    for name, net in nets.items():
        bar.set_postfix_str(f'{label} memory {name}')
        if device.type == 'cuda':
            peaks[name] = memory.cuda_peak_memory(net, lq)
        else:
            peaks[name] = memory.cpu_peak_memory(specs[name], opts.scale, args.random_weights, args.opt, lq,
                                                 args.threads, args.allocator)
        bar.update()
    bar.set_postfix_str(f'{label} latency')
    times, order = runner.interleaved_latency(nets, lq, opts.runs, opts.warmup, device, bar.update)
    rows = []
    for name in nets:
        latency, prof = runner.summarise(times[name]), profiles[name]
        gflops = 2.0 * prof.macs / (latency['median'] / 1000.0) / 1e9 if prof.macs else None
        rows.append({
            'network': name, 'size': label, 'width': size[0], 'height': size[1],
            'latency_ms': latency, 'peak_memory_bytes': peaks[name],
            'macs': prof.macs, 'macs_method': prof.macs_method,
            'sparsity': prof.sparsity, 'sparsity_per_block': prof.sparsity_per_block,
            'gflops_achieved': gflops, 'gemm_fraction': gflops / gemm_gflops if gflops else None,
        })
    return rows, order


def run(args: argparse.Namespace, argv: List[str]) -> Dict:
    """The whole benchmark; returns everything bench.json holds. ``argv``: the command's arguments as given."""
    opts = resolve(args)
    device = torch.device(args.device)
    allocator = apply_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    image = load_image(opts.input) if opts.input else None
    pairs = dataset_pairs(args.dataset_hr, args.dataset_lr, opts.scale) if args.dataset_hr else None
    out_dir = args.out or os.path.join('results', f'bench_{os.path.splitext(os.path.basename(args.opt))[0]}')
    problem = folder_problem(out_dir)
    if problem:  # found now, not after the measurements
        raise BenchError(f'--out {out_dir} cannot be used as the output folder ({problem}); give another --out')
    command = reproduce_command(args, opts, out_dir, opts.input)
    machine = machine_info(device)

    nets = {s.name: build(s, opts.scale, args.random_weights, args.opt).to(device) for s in opts.networks}
    random_flags = {s.name: uses_random_weights(s, nets[s.name], args.random_weights) for s in opts.networks}
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    if args.train_throughput:
        untrainable = [n for n in opts.train_throughput.networks if not params[n]]
        if untrainable:
            raise BenchError(f'{args.opt}: train_throughput.networks: {", ".join(untrainable)} has no parameters to '
                             'train; remove it from that list')

    per_size = len(nets) * (2 + opts.warmup + opts.runs)
    total = 1 + len(opts.sizes) * per_size
    if args.train_throughput:
        t = opts.train_throughput
        total += len(t.networks) * (1 + len(t.autocast)) * (t.steps + t.warmup)
    skipped = [n for n in opts.tradeoff.references if random_flags[n]] if pairs else []
    if pairs:
        total += num_steps(len(pairs), len(opts.tradeoff.halt_eps) + len(opts.tradeoff.references) - len(skipped))
    bar = tqdm(total=total, desc='basicsr bench', unit='run', dynamic_ncols=True, file=sys.stderr)

    bar.set_postfix_str('GEMM ceiling')
    gemm = runner.gemm_gflops(args.gemm_size, device)
    bar.update()

    results, schedule = [], {}
    for size in opts.sizes:
        rows, schedule[format_size(size)] = measure_size(args, opts, nets, size, lr_input(size, image).to(device),
                                                         gemm['gflops_best'], bar)
        for row in rows:
            row.update(params=params[row['network']], random_weights=random_flags[row['network']])
        results += rows

    train = None
    if args.train_throughput:
        t = opts.train_throughput
        bar.set_postfix_str('training throughput')
        train = train_throughput({n: nets[n] for n in t.networks}, t.batch_size, t.lr_patch, opts.scale, t.steps,
                                 t.warmup, device, bar.update, t.autocast)
        train['random_weights'] = {row: random_flags[v['network']] for row, v in train['networks'].items()}

    tradeoff = None
    if pairs:
        t = opts.tradeoff
        bar.set_postfix_str('PSNR vs latency')
        references = {n: nets[n] for n in t.references if n not in skipped}
        tradeoff = sweep(nets[t.network], t.halt_eps, references, pairs, opts.scale, device, bar.update)
        tradeoff.update({'network': t.network, 'hr': args.dataset_hr, 'lr': args.dataset_lr,
                         'network_random_weights': random_flags[t.network], 'skipped_references': skipped})
    bar.close()

    return {
        'command': command,
        'argv': ['basicsr', 'bench', *argv],
        'options_file': args.opt,
        'out_dir': out_dir,
        'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'scale': opts.scale,
        'machine': dict(machine, load_average_at_end=load_average()),
        'settings': {
            'device': args.device, 'threads': torch.get_num_threads(), 'runs': opts.runs, 'warmup': opts.warmup,
            'sizes': [format_size(s) for s in opts.sizes], 'allocator': allocator,
            'random_weights': args.random_weights, 'input': opts.input or 'synthetic',
            'order': 'per size: warm-up rounds then timed rounds; every network once per round, the order '
                     'rotated by one each round (see schedule)',
        },
        'gemm': gemm,
        'memory_method': memory.memory_method(device),
        'networks': [{
            'name': s.name, 'network_g': s.network_g,
            'weights': 'random' if random_flags[s.name] else s.weights if params[s.name] else 'none (no parameters)',
            'attributes': s.attributes, 'pad_to': s.pad_to, 'channels_last': s.channels_last, 'dtype': s.dtype,
            'params': params[s.name],
        } for s in opts.networks],
        'results': results,
        'schedule': {label: {'warmup_rounds': opts.warmup, 'rounds': rounds} for label, rounds in schedule.items()},
        'train_throughput': train,
        'tradeoff': tradeoff,
    }


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        result = run(args, argv)
    except BenchError as e:  # exit status 2, as the other subcommands (and argparse) for a bad input
        print(f'basicsr bench: error: {e}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # the outputs are written only after every measurement
        print('\nbasicsr bench: interrupted (Ctrl-C) before any result was written', file=sys.stderr)
        sys.exit(130)
    paths = write_outputs(result, result['out_dir'])
    print(markdown(result))
    print(f'Wrote {", ".join(paths)}')
    print(f"Reproduce: {result['command']}")


if __name__ == '__main__':
    main()
