"""Export the weights of a BasicSR training checkpoint as a compact release file.

Keeps one set of weights (``params_ema`` when the run used EMA, else ``params``) under the key ``params``, so the
file loads with any ``param_key_g`` (BasicSR falls back from ``params_ema`` to ``params``) and is half the size of
a training checkpoint.

    python scripts/export_weights.py experiments/AdaFormer_x4_cpu/models/net_g_3000.pth \\
        experiments/pretrained_models/AdaFormer_x4_cpu.pth
"""
import argparse

import torch

from adaformer_arch.utils.atomic_io import atomic_torch_save
from adaformer_arch.utils.weights import WeightsError, load_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='BasicSR net_g_<iter>.pth')
    parser.add_argument('output', help='release file to write')
    args = parser.parse_args()
    try:
        state = load_state_dict(args.checkpoint)  # params_ema if present, else params; weights_only
    except WeightsError as err:
        parser.error(str(err))
    atomic_torch_save({'params': {k: v.float().contiguous() for k, v in state.items()}}, args.output)
    size = sum(v.numel() for v in state.values())
    print(f'{args.output}: {len(state)} tensors, {size:,} values')


if __name__ == '__main__':
    torch.set_grad_enabled(False)
    main()
