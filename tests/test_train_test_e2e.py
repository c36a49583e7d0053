"""End to end through the `basicsr` command: train, auto-resume, test; swapping into a plain SRModel experiment."""
import atexit
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist

import adaformer_arch  # noqa: F401  (BasicSR's imports need its compat fixes)
from basicsr.metrics import calculate_psnr, calculate_ssim
from helpers import (eval_options, make_pairs, run_cli, save_as_if_on_gpu, tiny_weights, torchrun_command,
                     train_options, write_yaml)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train 4 iterations, then resume to 6 with --auto_resume; returns the working directory."""
    work = tmp_path_factory.mktemp('e2e')
    data = make_pairs(work / 'data')
    opt_file = write_yaml(work / 'train.yml', train_options(data))
    first = run_cli(['train', '-opt', str(opt_file)], cwd=work)
    second = run_cli(['train', '-opt', str(opt_file), '--auto_resume', '--force_yml', 'train:total_iter=6'],
                     cwd=work)
    return work, first, second


def test_train_writes_loadable_checkpoints(trained):
    work, _, _ = trained
    exp = work / 'experiments' / 'tiny'
    for it in (2, 4, 6, 'latest'):
        ckpt = torch.load(exp / 'models' / f'net_g_{it}.pth', weights_only=True)
        assert set(ckpt) == {'params', 'params_ema'}
        assert 'adam.estimator.conv2.bias' in ckpt['params']
    state = torch.load(exp / 'training_states' / '4.state', weights_only=True)
    assert state['iter'] == 4 and len(state['optimizers']) == 1
    assert not list(exp.rglob('*.tmp'))


def test_train_log_has_losses_and_sparsity(trained):
    work, first, _ = trained
    log = next((work / 'experiments' / 'tiny').glob('train_tiny_*.log')).read_text()
    assert 'l_pix:' in log and 'l_usl:' in log and 'sparsity_l2:' in log and 'conf_l1:' in log
    assert 'AdaFormer statistics' in log  # validation table
    # the validation after the last iteration is named after it, not after BasicSR's counter (past total_iter)
    stats = sorted(p.name for p in (work / 'experiments' / 'tiny').glob('stats_val_*.json'))
    assert 'stats_val_4.json' in stats and 'stats_val_6.json' in stats
    assert all(int(name[len('stats_val_'):-len('.json')]) <= 6 for name in stats), stats


def test_auto_resume_continues_from_last_checkpoint(trained):
    work, _, second = trained
    logs = sorted((work / 'experiments' / 'tiny').glob('train_tiny_*.log'))
    resumed = logs[-1].read_text()
    assert 'Resuming training from epoch' in resumed and 'iter: 4' in resumed
    assert 'iter:       5' in resumed and 'iter:       6' in resumed
    assert 'iter:       1,' not in resumed


def test_test_command_writes_images_metrics_stats_and_maps(trained):
    """`basicsr test` of the trained weights, re-written as a GPU run writes them (storages tagged cuda:0): the
    option check and BasicSR's loader read them onto the CPU."""
    work, _, _ = trained
    weights = str(work / 'gpu_written.pth')
    save_as_if_on_gpu(torch.load(work / 'experiments' / 'tiny' / 'models' / 'net_g_latest.pth', weights_only=True),
                      weights)
    opt_file = write_yaml(work / 'test.yml', eval_options(work / 'data', weights, save_halting_maps=True))
    proc = run_cli(['test', '-opt', str(opt_file)], cwd=work)
    results = work / 'results' / 'tiny_test'
    sr = cv2.imread(str(results / 'visualization' / 'tinyset' / 'img0_tiny_test.png'))
    assert sr.shape == (32, 32, 3)
    depth = cv2.imread(str(results / 'visualization' / 'tinyset' / 'img0_depth.png'))
    assert depth.shape == (32, 32, 3)
    assert (results / 'visualization' / 'tinyset' / 'img0_confidence.png').is_file()
    stats = json.loads((results / 'stats_tinyset_tiny_test.json').read_text())
    assert stats['summary']['num_images'] == 4 and len(stats['images']) == 4
    # BasicSR computes the metrics on the 8-bit SR image it saves (lossless PNG) against the 8-bit HR image: the
    # saved images give the same means (settings of eval_options: crop_border 2, Y channel)
    psnr, ssim = [], []
    for i in range(4):
        sr = cv2.imread(str(results / 'visualization' / 'tinyset' / f'img{i}_tiny_test.png'))
        hr = cv2.imread(str(work / 'data' / 'HR' / f'img{i}.png'))
        psnr.append(calculate_psnr(sr, hr, crop_border=2, test_y_channel=True))
        ssim.append(calculate_ssim(sr, hr, crop_border=2, test_y_channel=True))
    assert stats['summary']['psnr'] == pytest.approx(np.mean(psnr), rel=1e-9)
    assert stats['summary']['ssim'] == pytest.approx(np.mean(ssim), rel=1e-9)
    assert len(stats['images'][0]['sparsity']) == 2 and stats['images'][0]['macs'] > 0
    log = next(results.glob('test_tiny_test_*.log')).read_text()
    assert f'| tinyset | {np.mean(psnr):.4f} | {np.mean(ssim):.4f} |' in log


def test_swap_into_plain_basicsr_experiment(tmp_path):
    """A BasicSR SRModel option file with only network_g changed to AdaFormer trains unchanged otherwise, with a
    warning that its confidence estimator is not trained there."""
    data = make_pairs(tmp_path / 'data')
    opt = train_options(data, name='swap', total_iter=2, model_type='SRModel')
    del opt['train']['uncertainty_opt']
    proc = run_cli(['train', '-opt', str(write_yaml(tmp_path / 'swap.yml', opt))], cwd=tmp_path)
    assert 'basicsr: warning: ' in proc.stderr and 'trained without its uncertainty loss' in proc.stderr
    assert (tmp_path / 'experiments' / 'swap' / 'models' / 'net_g_latest.pth').is_file()


def test_python_module_entry_points(tmp_path):
    for module in ('adaformer_arch.train', 'adaformer_arch.test'):
        proc = subprocess.run([sys.executable, '-m', module, '--help'], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0 and '-opt' in proc.stdout
    proc = run_cli(['--help'], cwd=tmp_path)
    assert 'train' in proc.stdout and 'test' in proc.stdout
    assert run_cli(['nope'], cwd=tmp_path, check=False).returncode == 2


class Exited(Exception):
    """Raised by the stand-in for os._exit."""


@pytest.mark.parametrize('command', ['train', 'test'])
def test_distributed_ranks_end_without_interpreter_shutdown(command, tmp_path, monkeypatch):
    """After the pipeline returns, a rank with a process group destroys it, runs the atexit handlers and ends with
    os._exit (a gloo rank going through interpreter shutdown can abort with SIGABRT); without a process group the
    command returns normally."""
    from adaformer_arch import test, train

    module, hooks, pipeline = {'train': (train, train.Training, 'train_pipeline'),
                               'test': (test, test.CheckedTest, 'test_pipeline')}[command]
    store = iter([tmp_path / 'store1', tmp_path / 'store2'])

    def run_pipeline(root_path):
        if distributed:
            dist.init_process_group('gloo', init_method=next(store).as_uri(), rank=0, world_size=1)

    def fake_exit(status):
        raise Exited(status)

    calls = []

    monkeypatch.setattr(hooks, 'install', lambda self: None)
    monkeypatch.setattr(getattr(module, f'basicsr_{command}'), pipeline, run_pipeline)
    monkeypatch.setattr(sys, 'argv', [command])
    monkeypatch.setattr(os, '_exit', fake_exit)
    monkeypatch.setattr(atexit, '_run_exitfuncs', lambda: calls.append('atexit'))  # not pytest's own handlers
    try:
        distributed = False
        module.main()  # returns
        distributed = True
        with pytest.raises(Exited) as exited:
            module.main()
        assert exited.value.args == (0,) and calls == ['atexit'] and not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def torchrun(module: str, opt_file: Path, cwd: Path) -> None:
    """``module -opt opt_file --launcher pytorch`` in 2 gloo processes; fails the test unless it exits with 0."""
    proc = subprocess.run(torchrun_command(module, opt_file), cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS='1'),
                          capture_output=True, text=True, timeout=300)
    # stderr (the ranks' errors, torchrun's summary) first and whole: a CI log shortened in the middle keeps it
    assert proc.returncode == 0, proc.stderr + '\n---- stdout (end) ----\n' + proc.stdout[-3000:]


@pytest.mark.parametrize('variant', ['uncertainty loss', 'estimator_only', 'no uncertainty loss'])
def test_ddp_on_cpu_with_two_processes(tmp_path, variant):
    """torchrun with 2 processes and --launcher pytorch trains on CPU (gloo), also where parameters get no gradient:
    ``estimator_only`` (everything else frozen before the DDP wrap) and training without L_USL (the estimator
    untrained; with ``find_unused_parameters: true``, which the option check asks for)."""
    data = make_pairs(tmp_path / 'data')
    opt = train_options(data, name='ddp', total_iter=2, dist_params={'backend': 'gloo'})
    if variant == 'estimator_only':
        opt['train']['estimator_only'] = True
    elif variant == 'no uncertainty loss':
        del opt['train']['uncertainty_opt']
        opt['find_unused_parameters'] = True
    torchrun('adaformer_arch.train', write_yaml(tmp_path / 'ddp.yml', opt), tmp_path)
    log = next((tmp_path / 'experiments' / 'ddp').glob('train_ddp_*.log')).read_text()
    assert 'World size (gpu number): 2' in log
    assert log.count('AdaFormer statistics') == 2  # the final validation's lines reached the log before the exit
    assert (tmp_path / 'experiments' / 'ddp' / 'models' / 'net_g_latest.pth').is_file()


def test_test_command_with_two_processes(tmp_path):
    """`basicsr test --launcher pytorch` on CPU: rank 0 tests (BasicSR's dist_validation), both ranks exit with 0."""
    data = make_pairs(tmp_path / 'data')
    opt = dict(eval_options(data, tiny_weights(data), name='ddp_test'), dist_params={'backend': 'gloo'})
    torchrun('adaformer_arch.test', write_yaml(tmp_path / 'ddp_test.yml', opt), tmp_path)
    results = tmp_path / 'results' / 'ddp_test'
    stats = json.loads((results / 'stats_tinyset_ddp_test.json').read_text())
    assert stats['summary']['num_images'] == 4
    assert '| tinyset |' in next(results.glob('test_ddp_test_*.log')).read_text()
