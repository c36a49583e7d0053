"""The ``basicsr`` console script: ``basicsr <command> [options]``.

Commands run BasicSR's own pipelines with AdaFormer's arch, loss and model registered. Each command's options are
those of its module (``basicsr <command> --help``).
"""
import argparse
import importlib
import sys
from typing import List, Optional

COMMANDS = {
    'train': ('adaformer_arch.train', 'train a model from an option file (BasicSR train.py)'),
    'test': ('adaformer_arch.test', 'evaluate a model from an option file (BasicSR test.py)'),
    'infer': ('adaformer_arch.infer', 'super-resolve your own images, no ground truth (tiling, halting maps)'),
    'bench': ('adaformer_arch.bench', 'latency/memory/MACs of several networks side by side (options/bench_x4.yml)'),
    'prepare': ('adaformer_arch.data.prepare', 'make DIV2K, Test2K/4K/8K and benchmark data sets (docs/datasets.md)'),
}


def positive_int(text: str) -> int:
    """argparse type of the subcommands' options: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text!r}')
    return value


def usage() -> str:
    lines = ['usage: basicsr <command> [options]', '', 'commands:']
    lines += [f'  {name:<10} {help_}' for name, (_, help_) in COMMANDS.items()]
    lines += ['', "Run 'basicsr <command> --help' for the options of a command."]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"basicsr: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command][0])
    sys.argv = [f'basicsr {command}'] + rest
    module.main()


if __name__ == '__main__':
    main()
