"""Shared test helpers: tiny generated datasets, tiny option files, running the CLI."""
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch
import torch.serialization
import yaml

TINY_NET = dict(type='AdaFormer', upscale=2, num_feat=8, embed_dim=8, num_block_enc=1, num_block_dec=1, depth=2,
                num_heads=2, window_size=4, num_prototypes=4)


def set_confidence_bias(net, bias: float, gain: float = 20.0) -> None:
    """Shift an AdaFormer's confidence estimator output (how much halts) and sharpen it (so that halting varies
    across tokens). For TINY_NET on random images, ``bias=2`` halts about a third of the tokens in block 2."""
    with torch.no_grad():
        net.adam.estimator.conv2.weight.mul_(gain)
    torch.nn.init.constant_(net.adam.estimator.conv2.bias, bias)


def make_pairs(root: Path, count: int = 4, size: int = 32, scale: int = 2, seed: int = 0) -> Path:
    """Write ``count`` smooth random colour HR images and their bicubic LR under root/HR and root/LR."""
    rng = np.random.default_rng(seed)
    (root / 'HR').mkdir(parents=True, exist_ok=True)
    (root / 'LR').mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
        hr = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        lr = cv2.resize(hr, (size // scale, size // scale), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / 'HR' / f'img{i}.png'), hr)
        cv2.imwrite(str(root / 'LR' / f'img{i}.png'), lr)
    return root


class CreatesMarker:
    """A planted pickle payload: unpickling it (without ``weights_only``) calls ``open(marker, 'w')``, so the marker
    file appears if pickled code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), 'w')


def save_as_if_on_gpu(obj, path: Path) -> None:
    """``torch.save(obj, path)`` with every tensor's storage tagged ``cuda:0``, as a file written by a GPU run is:
    loading it without a ``map_location`` on a machine without CUDA fails, as it would for the real file."""
    real_tag = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: 'cuda:0'
    try:
        torch.save(obj, path)
    finally:
        torch.serialization.location_tag = real_tag
    if not torch.cuda.is_available():  # the stand-in is faithful: torch refuses it as it refuses a GPU file
        try:
            torch.load(path, weights_only=True)
        except RuntimeError as err:
            assert 'CUDA' in str(err), err
        else:
            raise AssertionError(f'{path} loaded without map_location: it is not tagged as CUDA tensors')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for torchrun's --master_port)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def torchrun_command(module: str, opt_file: Path) -> List[str]:
    """``python -m module -opt opt_file --launcher pytorch`` in 2 processes on one machine, on a free port."""
    return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}', '-m',
            module, '-opt', str(opt_file), '--launcher', 'pytorch']


def train_options(data: Path, name: str = 'tiny', total_iter: int = 4, **overrides) -> Dict:
    """A complete tiny BasicSR training option dict for AdaFormerModel on ``data`` (see :func:`make_pairs`)."""
    dataset = dict(type='PairedImageDataset', dataroot_gt=str(data / 'HR'), dataroot_lq=str(data / 'LR'),
                   filename_tmpl='{}', io_backend={'type': 'disk'})
    opt = {
        'name': name, 'model_type': 'AdaFormerModel', 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': dict(dataset, name='train', gt_size=16, use_hflip=True, use_rot=True, num_worker_per_gpu=0,
                          batch_size_per_gpu=2, dataset_enlarge_ratio=1, prefetch_mode=None),
            'val': dict(dataset, name='val'),
        },
        'network_g': dict(TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0.9,
            'optim_g': {'type': 'Adam', 'lr': 2e-4, 'weight_decay': 0, 'betas': [0.9, 0.999]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
            'total_iter': total_iter, 'warmup_iter': -1,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'uncertainty_opt': {'type': 'UncertaintyLoss', 'loss_weight': 1.0},
        },
        'val': {'val_freq': total_iter, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
    }
    opt.update(overrides)
    return opt


def tiny_weights(folder: Path, seed: int = 0) -> str:
    """A BasicSR weights file (``params`` and ``params_ema``) of a seeded TINY_NET in ``folder``."""
    import adaformer_arch  # noqa: F401  (registers AdaFormer)
    from basicsr.archs import build_network

    torch.manual_seed(seed)
    state = build_network(dict(TINY_NET)).state_dict()
    path = folder / f'tiny_{seed}.pth'
    torch.save({'params': state, 'params_ema': state}, path)
    return str(path)


def eval_options(data: Path, weights: Optional[str], name: str = 'tiny_test', **val) -> Dict:
    """A tiny BasicSR test option dict."""
    return {
        'name': name, 'model_type': 'AdaFormerModel', 'scale': 2, 'num_gpu': 0,
        'datasets': {'test_1': dict(type='PairedImageDataset', name='tinyset', dataroot_gt=str(data / 'HR'),
                                    dataroot_lq=str(data / 'LR'), filename_tmpl='{}', io_backend={'type': 'disk'})},
        'network_g': dict(TINY_NET),
        'path': {'pretrain_network_g': weights, 'strict_load_g': True, 'param_key_g': 'params_ema'},
        'val': dict({'save_img': True, 'suffix': None,
                     'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True},
                                 'ssim': {'type': 'calculate_ssim', 'crop_border': 2, 'test_y_channel': True}}},
                    **val),
    }


def write_yaml(path: Path, opt: Dict) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def run_cli(args: List[str], cwd: Path, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``basicsr <args>`` as a subprocess in ``cwd``; on failure show its output."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'adaformer_arch.cli', *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'basicsr {" ".join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}')
    return proc
