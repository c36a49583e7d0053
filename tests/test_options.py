"""Option checks of `basicsr train` / `basicsr test` (adaformer_arch/option_checks/): each problem is named with
its key or file and what to do, before anything is built; the commands exit with status 2 without a traceback."""
import glob
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import torch
import yaml

import adaformer_arch  # noqa: F401
from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.option_checks import OptionError, _check_device, check_options
from adaformer_arch.option_checks.datasets import _check_batches
from basicsr.archs import build_network
from basicsr.utils.options import ordered_yaml

from helpers import CreatesMarker, eval_options, make_pairs, tiny_weights, train_options, write_yaml

REPO = Path(__file__).resolve().parents[1]


def parsed(opt: Dict, is_train: bool = True) -> Dict:
    """What BasicSR's parse_options adds to an option dict that the checks use."""
    opt['is_train'] = is_train
    for phase, dataset in opt['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
    return opt


def problems(opt: Dict, is_train: bool = True) -> List[str]:
    with pytest.raises(OptionError) as err:
        check_options(parsed(opt, is_train))
    return err.value.problems


@pytest.fixture
def data(tmp_path) -> Path:
    return make_pairs(tmp_path / 'data')


def test_valid_train_and_test_options_pass(data):
    assert check_options(parsed(train_options(data))) == []
    assert check_options(parsed(eval_options(data, tiny_weights(data)), is_train=False)) == []


def test_inference_knobs_can_be_set_in_network_g(data):
    """README, "Inference knobs": halt_eps, early_exit and sparse_compute are network_g keys of a test option file."""
    opt = eval_options(data, tiny_weights(data))
    opt['network_g'].update(halt_eps=0.2, early_exit=False, sparse_compute=False)
    assert check_options(parsed(opt, is_train=False)) == []
    net = build_network(opt['network_g'])
    assert (net.halt_eps, net.early_exit, net.sparse_compute) == (0.2, False, False)


def test_val_dtype_is_checked(data, monkeypatch):
    opt = eval_options(data, tiny_weights(data))
    opt['val']['dtype'] = 'bfloat16'
    assert check_options(parsed(opt, is_train=False)) == []
    opt['val']['dtype'] = 'bf16'
    assert problems(opt, is_train=False) == ["val.dtype: must be one of float32, bfloat16, float16, got 'bf16'"]
    opt['val']['dtype'], opt['num_gpu'] = 'float16', 0
    assert problems(opt, is_train=False)[0].startswith('val.dtype: float16 is for GPUs')
    opt['num_gpu'] = 1  # what BasicSR's parse_options makes of num_gpu: auto on a GPU machine
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert check_options(parsed(opt, is_train=False)) == []


def test_distributed_adaformer_without_uncertainty_loss_needs_find_unused_parameters(data):
    """Without L_USL the confidence estimator gets no gradient, which DDP stops on at the second iteration."""
    opt = train_options(data)
    opt['dist'] = True
    assert check_options(parsed(opt)) == []  # with uncertainty_opt: the estimator is trained
    del opt['train']['uncertainty_opt']
    (problem,) = problems(opt)
    assert problem.startswith('network_g AdaFormer is trained distributed without its uncertainty loss')
    assert 'find_unused_parameters: true' in problem
    opt['find_unused_parameters'] = True  # runs; the untrained estimator is only warned about
    assert [w[:51] for w in check_options(parsed(opt))] == ['network_g AdaFormer is trained without its uncertai']
    opt['find_unused_parameters'], opt['dist'] = False, False  # one process: nothing to refuse
    assert len(check_options(parsed(opt))) == 1


def test_train_autocast_is_checked(data):
    opt = train_options(data)
    opt['train']['autocast'] = 'bfloat16'
    assert check_options(parsed(opt)) == []
    opt['train']['autocast'] = 'float16'
    assert problems(opt)[0].startswith('train.autocast: float16 training needs loss scaling')
    opt['train']['autocast'] = True
    assert problems(opt) == ['train.autocast: must be one of float32, bfloat16, float16, got True']


def test_shipped_option_files_have_no_problems_but_missing_data():
    for path in glob.glob(str(REPO / 'options' / '*.yml')):
        with open(path) as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
        if 'datasets' not in opt:  # bench options
            continue
        try:
            check_options(parsed(opt, is_train='train' in opt))
        except OptionError as err:
            # data, and starting weights that a clean checkout does not hold (the estimator fit's 32-channel file)
            assert all(p.startswith(('datasets.', 'path.pretrain_network_g')) and 'does not exist' in p
                       for p in err.problems), (path, err)


def test_misspelled_network_argument_names_the_closest(data):
    opt = train_options(data)
    opt['network_g']['embed_dimm'] = opt['network_g'].pop('embed_dim')
    [problem] = problems(opt)
    assert problem.startswith("network_g.embed_dimm: AdaFormer has no argument 'embed_dimm'; did you mean "
                              "'embed_dim'?")
    assert 'num_prototypes' in problem  # lists what it takes


def test_argument_of_another_network_gets_no_far_fetched_suggestion(data):
    """EDSR's network_g with only its type changed: res_scale has no AdaFormer counterpart ('upscale' is not it),
    num_block has one."""
    opt = train_options(data)
    opt['network_g'].update(res_scale=1, num_block=2)
    num_block, res_scale = sorted(problems(opt))
    assert num_block.startswith("network_g.num_block: AdaFormer has no argument 'num_block'; did you mean "
                                "'num_block_enc'?")
    assert res_scale.startswith("network_g.res_scale: AdaFormer has no argument 'res_scale' (AdaFormer takes:")


def test_unknown_network_type_names_the_closest(data):
    opt = train_options(data)
    opt['network_g']['type'] = 'AdaFromer'
    assert problems(opt) == ["network_g.type: no network named 'AdaFromer' is registered; did you mean "
                             "'AdaFormer'?"]


def test_missing_required_network_argument(data):
    opt = train_options(data, model_type='SRModel')
    del opt['train']['uncertainty_opt']
    opt['network_g'] = {'type': 'EDSR', 'num_in_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    assert problems(opt) == ["network_g: EDSR needs the argument 'num_out_ch'; add it"]


def test_misspelled_uncertainty_loss_argument(data):
    opt = train_options(data)
    opt['train']['uncertainty_opt']['error_scael'] = 255.0
    [problem] = problems(opt)
    assert problem.startswith("train.uncertainty_opt.error_scael: UncertaintyLoss has no argument 'error_scael'; "
                              "did you mean 'error_scale'?")


def test_misspelled_model_option_is_an_error_unrelated_one_a_warning(data):
    opt = train_options(data)
    opt['train']['uncertainty_opts'] = opt['train'].pop('uncertainty_opt')
    opt['val']['save_halting_map'] = True
    assert problems(opt) == [
        "train.uncertainty_opts: AdaFormerModel has no such option; did you mean 'uncertainty_opt'? Fix the "
        'spelling.',
        "val.save_halting_map: AdaFormerModel has no such option; did you mean 'save_halting_maps'? Fix the "
        'spelling.',
    ]
    opt = train_options(data)
    opt['train']['net_d_iters'] = 1  # from a GAN recipe: ignored, but said so
    [warning] = check_options(parsed(opt))
    assert warning.startswith('train.net_d_iters is not read by AdaFormerModel and has no effect')


def test_scale_must_match_the_network(data):
    opt = train_options(data)
    del opt['network_g']['upscale']  # AdaFormer's default is 4, the data are x2
    [problem] = problems(opt)
    assert problem.startswith('scale is 2 but network_g.upscale (the default of AdaFormer) is 4')
    opt = train_options(data)
    opt['network_g']['upscale'] = 3
    assert problems(opt)[0].startswith('scale is 2 but network_g.upscale is 3')


def test_a_bad_scale_is_reported_once_not_again_by_every_pair(data):
    """`--force_yml scale=0 network_g:upscale=0`: one line for the scale, none saying 'HR must be 0 x LR'."""
    opt = train_options(data)
    opt['scale'] = opt['network_g']['upscale'] = 0
    found = problems(opt)
    assert any(p.startswith('scale: must be a positive integer, got 0') for p in found), found
    assert not any('x LR' in p for p in found), found


def test_tile_block_is_checked_against_the_window(data):
    opt = eval_options(data, tiny_weights(data))  # TINY_NET: window_size 4
    opt['tile'] = {'tile_size': 16, 'tile_pad': 4}
    assert check_options(parsed(opt, is_train=False)) == []
    opt['tile'] = {'tile_size': 10, 'tile_sise': 8, 'tile_pad': -1}
    found = problems(opt, is_train=False)
    assert "tile.tile_sise: no such option; did you mean 'tile_size'?" in found[0]
    assert found[1] == ("tile.tile_size: must be a positive multiple of the network's window size 4 in LR pixels, "
                        "got 10 (e.g. 8)")
    assert found[2].startswith('tile.tile_pad: must be an integer >= 0')
    opt['tile'] = 256
    assert problems(opt, is_train=False)[0].startswith('tile: expected a block like')
    del opt['network_g']['window_size']  # AdaFormer's default window is 8
    opt['tile'] = {'tile_size': 12}
    assert 'window size 8' in problems(opt, is_train=False)[0]
    opt['tile'] = {'tile_size': True, 'tile_pad': False}  # YAML true/false are ints to Python
    found = problems(opt, is_train=False)
    assert found[0].endswith('got True') and found[1].endswith('got False')


def test_pretrained_weights_must_exist_and_fit_the_network(data, tmp_path):
    opt = train_options(data)
    opt['path']['pretrain_network_g'] = str(tmp_path / 'nowhere.pth')
    [problem] = problems(opt)
    assert problem.startswith(f'path.pretrain_network_g: {tmp_path / "nowhere.pth"} does not exist')
    kwargs = {k: v for k, v in opt['network_g'].items() if k != 'type'}
    torch.save({'params': AdaFormer(**kwargs, estimator_dim=3).state_dict()}, tmp_path / 'est3.pth')
    opt = train_options(data)
    opt['path']['pretrain_network_g'] = str(tmp_path / 'est3.pth')
    [problem] = problems(opt)
    assert 'est3.pth does not fit network_g' in problem and 'adam.estimator.conv1.weight: checkpoint (3,' in problem
    assert 'set network_g estimator_dim: 3' in problem and 'set strict_load_g: false' in problem
    opt['path']['strict_load_g'] = False  # BasicSR then loads what fits and warns about the rest
    assert check_options(parsed(opt)) == []


def test_weights_of_another_scale_are_named_and_a_test_does_not_run_them_half_random(data, tmp_path):
    """x4 weights for a x2 network: the message says which scale they are for; training may start from what fits
    (strict_load_g: false), a test may not (its upsampling layer would stay random: PSNR 13 dB, no error)."""
    opt = train_options(data)
    kwargs = {k: v for k, v in opt['network_g'].items() if k not in ('type', 'upscale')}
    torch.save({'params': AdaFormer(**kwargs, upscale=4).state_dict()}, tmp_path / 'x4.pth')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'x4.pth')
    [problem] = problems(opt)
    assert 'the checkpoint is for x4 (its conv_up has 48 = 3*4^2 outputs), the network for x2' in problem
    opt['path']['strict_load_g'] = False
    assert check_options(parsed(opt)) == []
    [problem] = problems(opt, is_train=False)
    assert 'with strict_load_g: false this test would run with the tensors below at their random initial' in problem
    assert 'conv_up.weight: checkpoint (48,' in problem


def test_pretrained_weights_that_are_an_unsafe_pickle_are_refused_without_running_code(data, tmp_path):
    opt = train_options(data)
    torch.save({'params': CreatesMarker(tmp_path / 'marker')}, tmp_path / 'evil.pth')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'evil.pth')
    [problem] = problems(opt)
    assert problem.startswith(f'path.pretrain_network_g: refusing to load {tmp_path / "evil.pth"}')
    assert not (tmp_path / 'marker').exists()


def test_missing_folder_names_option_and_path(data):
    opt = train_options(data)
    missing = str(data / 'nope')
    opt['datasets']['val']['dataroot_lq'] = missing
    [problem] = problems(opt)
    assert problem.startswith(f'datasets.val.dataroot_lq: {missing} does not exist')


def _write(path: Path, size: int) -> None:
    cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))


def test_pair_whose_sizes_do_not_match_the_scale(data):
    _write(data / 'LR' / 'img2.png', 8)  # HR is 32: x4, not x2
    [train_problem, val_problem] = problems(train_options(data))
    assert train_problem.startswith(f'datasets.train: 1 of 4 HR/LR pairs do not fit scale 2: {data}/HR/img2.png '
                                    f'is 32x32 (HxW) and its LR {data}/LR/img2.png is 8x8: for training HR must be '
                                    'exactly 2 x LR. Check dataroot_gt, dataroot_lq and scale.')
    assert val_problem.startswith('datasets.val:') and 'img2.png' in val_problem


def test_validation_pairs_may_have_a_border_training_pairs_not(data):
    _write(data / 'HR' / 'img1.png', 33)  # LR 16: BasicSR crops the HR to 32 for validation
    [problem] = problems(train_options(data))
    assert problem.startswith('datasets.train:') and 'img1.png is 33x33' in problem
    opt = train_options(data)
    del opt['datasets']['train']
    assert check_options(parsed(opt)) == []


def test_training_patch_larger_than_the_images(data):
    opt = train_options(data)
    opt['datasets']['train']['gt_size'] = 64
    [problem] = problems(opt)
    assert problem.startswith('datasets.train: 4 of 4 HR/LR pairs do not fit scale 2 and gt_size 64: ')
    assert problem.count('the LR image is smaller than the training patch (gt_size / scale = 32 px)') == 3
    assert problem.endswith('; and 1 more. Lower gt_size, or train on larger images.')


def test_unpaired_folders_name_the_images_without_a_partner(data):
    (data / 'LR' / 'img3.png').unlink()
    assert problems(train_options(data))[0] == (
        f'datasets.train: the HR/LR pairs cannot be listed: 1 HR image with no LR image in {data}/LR: img3.png')
    cv2.imwrite(str(data / 'LR' / 'img9.png'), np.zeros((4, 4, 3), np.uint8))
    opt = train_options(data)
    opt['datasets']['train']['filename_tmpl'] = '{}x2'
    assert problems(opt)[0] == (
        f'datasets.train: the HR/LR pairs cannot be listed: 4 HR images with no LR image in {data}/LR: img0.png '
        f'(expects img0x2.png), img1.png (expects img1x2.png), img2.png (expects img2x2.png) and 1 more; 4 LR images '
        f'with no HR image in {data}/HR: img0.png, img1.png, img2.png and 1 more')


def test_files_that_are_not_images_are_named_as_such(data):
    """A notes file or Thumbs.db in a data folder: BasicSR pairs every file, so it cannot pair; it is named as a file
    to move out, not as an image without a partner. An image in a format outside the usual extensions (decided by
    OpenCV's readers, not by the name) is an image, and a real pairing problem is still named."""
    (data / 'HR' / 'notes.txt').write_text('x')
    (data / 'LR' / 'Thumbs.db').write_bytes(b'x')
    (data / 'LR' / 'img3.png').rename(data / 'LR' / 'img3.pgm')  # a PNG under another name: OpenCV reads it
    assert problems(train_options(data))[0] == (
        f'datasets.train: the HR/LR pairs cannot be listed: 2 file(s) that are not images: {data}/HR/notes.txt, '
        f'{data}/LR/Thumbs.db (BasicSR pairs every file of the two folders: move them out); 1 HR image with no LR '
        f'image in {data}/LR: img3.png; 1 LR image with no HR image in {data}/HR: img3.pgm')


def test_lmdb_pairs_are_checked_from_meta_info(tmp_path):
    for name, size in (('HR', 32), ('LR', 8)):
        folder = tmp_path / f'{name}.lmdb'
        folder.mkdir()
        (folder / 'meta_info.txt').write_text(f'img0.png ({size},{size},3) 1\n')
    opt = train_options(tmp_path)
    for dataset in opt['datasets'].values():
        dataset.update(dataroot_gt=str(tmp_path / 'HR.lmdb'), dataroot_lq=str(tmp_path / 'LR.lmdb'),
                       io_backend={'type': 'lmdb'})
    found = problems(opt)
    assert len(found) == 2 and 'img0 is 32x32 (HxW) and its LR img0 is 8x8' in found[0]


@pytest.mark.parametrize('edit, expected', [
    (lambda o: o['network_g'].update(halt_eps=1.5),
     'network_g: AdaFormer cannot be built from these arguments: ValueError: halt_eps must be in [0, 1), got 1.5'),
    (lambda o: o['network_g'].update(early_exit='false'),
     "network_g.early_exit: AdaFormer takes true or false for early_exit, got 'false' (remove the quotes)"),
    (lambda o: o['network_g'].update(embed_dim='64'),
     "network_g.embed_dim: AdaFormer takes an integer for embed_dim, got '64' (remove the quotes)"),
    (lambda o: o['network_g'].update(halt_eps='a lot'), "network_g.halt_eps: AdaFormer takes a number for halt_eps, "
     "got 'a lot'"),
    (lambda o: o.update(network_g='AdaFormer'), "network_g: expected a block like"),
    (lambda o: o['train']['optim_g'].update(type='Adamm'), "train.optim_g.type: basicsr 1.4.2 builds only Adam"),
    (lambda o: o['train']['optim_g'].update(lr='2e-4'), "train.optim_g.lr: must be a number >= 0, got '2e-4'"),
    (lambda o: o['train']['scheduler'].update(type='MultiStepLRR'), 'train.scheduler.type: basicsr 1.4.2 has'),
    (lambda o: o['train'].update(total_iter='abc'), "train.total_iter: must be a number >= 1, got 'abc'"),
    (lambda o: o['train'].update(estimator_lr_mult=0), 'train.estimator_lr_mult: must be a number > 0, got 0'),
    (lambda o: o['train'].update(estimator_only=True) or o['train'].pop('uncertainty_opt'),
     'train.estimator_only trains the confidence estimator with L_USL'),
    (lambda o: o['datasets']['train'].update(gt_size=17),
     'datasets.train.gt_size: the HR patch must be a positive multiple of scale 2'),
    (lambda o: o['datasets']['train'].update(batch_size_per_gpu='2'),
     "datasets.train.batch_size_per_gpu: must be an integer >= 1, got '2'"),
    (lambda o: o['datasets']['val'].update(type='PairedImageDatset'),
     "datasets.val.type: no data set named 'PairedImageDatset'; did you mean 'PairedImageDataset'?"),
    (lambda o: o['datasets']['val'].pop('dataroot_lq'), 'datasets.val: PairedImageDataset needs dataroot_lq'),
    (lambda o: o['val']['metrics']['psnr'].update(type='calculate_psnrr'),
     "val.metrics.psnr.type: no metric named 'calculate_psnrr'; did you mean 'calculate_psnr'?"),
    (lambda o: o.update(scale='2'), "scale: must be a positive integer, got '2' (remove the quotes)"),
    (lambda o: o['network_g'].update(img_range='-1'),  # what `--force_yml network_g:img_range=-1` gives
     "network_g.img_range: AdaFormer takes a number for img_range, got '-1' (remove the quotes; basicsr 1.4.2's "
     "--force_yml reads a negative number as text, so set it in the option file)"),
    (lambda o: o.update(num_gpu=1), 'num_gpu is 1 but PyTorch finds no CUDA GPU on this machine'),
    (lambda o: o['train'].update(scheduler={'type': 'CosineAnnealingRestartLR', 'periods': [1, 2]}),
     'train.scheduler.restart_weights: CosineAnnealingRestartLR needs one weight per entry of periods (2); none given '
     "(BasicSR's default: one weight, [1])"),
    (lambda o: o['train'].update(scheduler={'type': 'CosineAnnealingRestartLR'}), 'train.scheduler.periods: missing'),
    (lambda o: o['train'].update(scheduler={'type': 'CosineAnnealingRestartLR', 'periods': 4}),
     'train.scheduler.periods: must be a list of integers >= 1, got 4'),
    (lambda o: o['datasets']['train'].update(filename_tmpl='{x}'),
     "datasets.train.filename_tmpl: must be a string with one '{}' for the HR image's name"),
    (lambda o: o['train'].update(scheduler={'type': 'CosineAnnealingRestartLR', 'periods': [1],
                                            'restart_weights': [1]}),
     'train.scheduler.periods: they add up to 1, fewer than train.total_iter 4'),
    (lambda o: o['train'].update(scheduler={'type': 'MultiStepRestartLR', 'milestones': [2], 'restarts': [0, 2]}),
     'train.scheduler.restart_weights: MultiStepRestartLR needs one weight per entry of restarts (2)'),
    (lambda o: o.update(model_type='SRModel'),
     'train.uncertainty_opt is read by AdaFormerModel only; model_type SRModel would ignore it'),
])
def test_values_that_would_fail_after_the_start_are_option_errors(data, monkeypatch, edit, expected):
    """Values BasicSR (or the network) would refuse only once the experiment folder exists, or silently ignore."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    opt = train_options(data)
    edit(opt)
    found = problems(opt)
    assert any(p.startswith(expected) for p in found), found


def test_output_folder_blocked_by_a_file(data, tmp_path):
    (tmp_path / 'results').write_text('not a folder')
    opt = eval_options(data, tiny_weights(data))
    opt['path']['results_root'] = str(tmp_path / 'results' / opt['name'])  # as parse_options sets it
    assert problems(opt, is_train=False) == [
        f'the output folder {tmp_path}/results/tiny_test cannot be created ({tmp_path}/results is a file); run from '
        'another working directory or rename the file in the way']


def test_option_files_of_other_basicsr_models_pass(data, monkeypatch):
    """The checks never refuse what basicsr 1.4.2 runs: a GAN model (network_d, perceptual and GAN losses, a float
    total_iter, lr 0 for a frozen phase, no val metrics), Real-ESRGAN's data set (registered with BasicSR's
    '_basicsr' suffix), SwinIR with a cosine schedule."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    esrgan = train_options(data, model_type='ESRGANModel')
    esrgan['network_g'] = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                           'num_grow_ch': 4, 'scale': 2}
    esrgan['network_d'] = {'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 8}
    esrgan['train'] = {
        'ema_decay': 0.999, 'optim_g': {'type': 'Adam', 'lr': 0, 'betas': [0.9, 0.99]},
        'optim_d': {'type': 'Adam', 'lr': 1e-4}, 'total_iter': 4e5, 'warmup_iter': -1,
        'scheduler': {'type': 'MultiStepLR', 'milestones': [50000], 'gamma': 0.5},
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1e-2},
        'perceptual_opt': {'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1}, 'vgg_type': 'vgg19',
                           'perceptual_weight': 1.0, 'style_weight': 0},
        'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 5e-3}}
    esrgan['val'] = {'val_freq': 4, 'save_img': False}
    del esrgan['datasets']['train']['gt_size']
    esrgan['datasets']['train']['gt_size'] = 16
    assert check_options(parsed(esrgan)) == []
    realesrgan = dict(esrgan)
    realesrgan['datasets'] = {'train': {'name': 'train', 'type': 'RealESRGANDataset', 'dataroot_gt': str(data / 'HR'),
                                       'meta_info': None, 'io_backend': {'type': 'disk'}, 'gt_size': 16}}
    assert check_options(parsed(realesrgan)) == []
    swinir = train_options(data, model_type='SwinIRModel')
    swinir['network_g'] = {'type': 'SwinIR', 'upscale': 2, 'in_chans': 3, 'img_size': 8, 'window_size': 4,
                           'img_range': 1., 'depths': [1], 'embed_dim': 8, 'num_heads': [2], 'mlp_ratio': 2,
                           'upsampler': 'pixelshuffledirect', 'resi_connection': '1conv'}
    swinir['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'restart_weights': [1]}
    del swinir['train']['uncertainty_opt']
    assert check_options(parsed(swinir)) == []


def test_checks_do_not_change_the_seeded_initial_weights(data):
    """parse_options seeds the generators before the checks; the checks build network_g, and must leave the random
    state as it was, so that BasicSR's own build draws the same initial weights as without them."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_options(parsed(train_options(data)))
    assert torch.equal(torch.rand(3), expected)


def test_training_set_smaller_than_a_batch_or_not_a_multiple_of_it(data):
    """BasicSR counts ceil(samples / batch) iterations per epoch but drops the incomplete batch: with fewer samples
    than a batch nothing is trained (exit 0), otherwise training can end short of total_iter."""
    opt = train_options(data, total_iter=4)  # 4 pairs
    opt['datasets']['train']['batch_size_per_gpu'] = 8
    (problem,) = problems(opt)
    assert problem.startswith('datasets.train: 4 samples (image pairs x dataset_enlarge_ratio 1) do not fill one batch '
                              'of 8 per process (batch_size_per_gpu 8): BasicSR would end without training.')
    opt['datasets']['train']['batch_size_per_gpu'] = 3
    assert check_options(parsed(opt)) == [
        'datasets.train: with 4 samples and batches of 3 x 1 processes, BasicSR counts 2 iterations per epoch but its '
        'loader gives 1: a run from iteration 0 ends at iteration 3, not total_iter 4.']
    opt['datasets']['train']['dataset_enlarge_ratio'] = 3  # 12 samples: 4 full batches per epoch
    assert check_options(parsed(opt)) == []
    opt['datasets']['train']['dataset_enlarge_ratio'] = 1
    opt['train']['total_iter'] = 1000  # 1 of 2 counted iterations per epoch: ends at 501
    assert 'a run from iteration 0 ends at iteration 501, not total_iter 1000.' in check_options(parsed(opt))[0]
    opt['train']['total_iter'], opt['datasets']['train']['batch_size_per_gpu'] = 4, 2
    opt['world_size'] = 2  # DDP: 2 samples per process, one batch of 2 each, as BasicSR counts
    assert check_options(parsed(opt)) == []
    opt['world_size'], opt['num_gpu'] = 1, 2  # DataParallel: a loader batch is 2 x 2 = all 4 samples
    assert _check_batches(parsed(opt), {'train': 4}) == ([], [
        'datasets.train: with 4 samples and batches of 4 x 1 processes, BasicSR counts 2 iterations per epoch but its '
        'loader gives 1: a run from iteration 0 ends at iteration 3, not total_iter 4.'])
    opt['datasets']['train']['batch_size_per_gpu'] = 3  # 6 per loader batch: nothing trained
    problems_, _ = _check_batches(parsed(opt), {'train': 4})
    assert 'do not fill one batch of 6 per process (batch_size_per_gpu 3)' in problems_[0]


def test_a_shortfall_under_one_percent_is_not_warned(data):
    """100 samples in batches of 3: BasicSR counts 34 iterations per epoch, the loader gives 33."""
    opt = train_options(data, total_iter=1360)  # 40 counted epochs (+1): ends at 41 x 33 = 1353, 0.5 % short
    opt['datasets']['train'].update(batch_size_per_gpu=3, dataset_enlarge_ratio=25)  # 4 pairs x 25
    assert _check_batches(parsed(opt), {'train': 4}) == ([], [])
    opt['train']['total_iter'] = 3400  # 100 counted epochs: ends at 3333, 2 % short
    assert 'ends at iteration 3333, not total_iter 3400' in _check_batches(parsed(opt), {'train': 4})[1][0]


def test_pretrained_weights_given_as_a_folder(data, tmp_path):
    opt = eval_options(data, str(tmp_path))
    assert problems(opt, is_train=False) == [f'path.pretrain_network_g: {tmp_path} is a folder; give the weights '
                                             'file in it (a .pth).']


def test_test_options_with_save_img_need_a_suffix(data):
    opt = eval_options(data, tiny_weights(data))
    del opt['val']['suffix']
    assert problems(opt, is_train=False)[0].startswith('val.suffix is missing')


def test_misspelt_and_missing_dataset_keys_are_named(data):
    """BasicSR ignores a misspelt PairedImageDataset key (its default is used: no flips, another file name template)
    and fails with a bare KeyError, mid-run, on a missing one it indexes."""
    opt = train_options(data)
    train = opt['datasets']['train']
    train['use_flip'] = train.pop('use_hflip')
    train['batch_size'] = train.pop('batch_size_per_gpu')
    opt['datasets']['val']['filename_tmp'] = opt['datasets']['val'].pop('filename_tmpl')
    assert problems(opt) == [
        "datasets.train.use_flip: PairedImageDataset has no such option; did you mean 'use_hflip'? Fix the spelling.",
        "datasets.train: PairedImageDataset needs 'batch_size_per_gpu' (is 'batch_size' meant?); add it",
        "datasets.val.filename_tmp: PairedImageDataset has no such option; did you mean 'filename_tmpl'? Fix the "
        'spelling.']
    opt = eval_options(data, tiny_weights(data))
    test = opt['datasets']['test_1']
    test['dataroot_gtt'] = test.pop('dataroot_gt')
    del test['io_backend']
    assert problems(opt, is_train=False) == [
        "datasets.test_1.dataroot_gtt: PairedImageDataset has no such option; did you mean 'dataroot_gt'? Fix the "
        'spelling.', "datasets.test_1: PairedImageDataset needs 'io_backend'; add it"]


def test_misspelt_top_level_keys_and_a_test_without_val_are_named(data):
    """``basicsr test`` indexes val and val.save_img (after it has archived the previous results); a misspelt
    top-level key such as manual_seed was silently ignored."""
    opt = eval_options(data, tiny_weights(data))
    opt['vall'] = opt.pop('val')
    opt['manual_sead'] = 0
    assert problems(opt, is_train=False) == [
        "vall: BasicSR has no such option; did you mean 'val'? Fix the spelling.",
        "manual_sead: BasicSR has no such option; did you mean 'manual_seed'? Fix the spelling."]
    opt = eval_options(data, tiny_weights(data))
    del opt['val']
    assert problems(opt, is_train=False) == ['val is missing: basicsr test needs a val block (save_img, metrics); '
                                             'add it']
    opt = eval_options(data, tiny_weights(data))
    del opt['val']['save_img']
    assert problems(opt, is_train=False) == ['val.save_img is missing: basicsr test needs it (true writes the SR '
                                             'images); add it']
    opt = train_options(data)
    del opt['val']
    assert check_options(parsed(opt)) == []  # training needs no validation


def test_all_problems_are_reported_at_once(data):
    opt = train_options(data)
    opt['network_g']['window_sizes'] = 4
    opt['train']['uncertainty_opt']['alpha'] = 1
    opt['datasets']['train']['dataroot_gt'] = 'nowhere'
    assert len(problems(opt)) == 3


def _run(args: List[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')}  # not torchrun's
    return subprocess.Popen([sys.executable, '-m', 'adaformer_arch.cli', *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env, OMP_NUM_THREADS='1'))


def test_commands_exit_with_a_clear_error_before_anything_starts(data, tmp_path):
    bad_train = train_options(data)
    bad_train['network_g']['embed_dimm'] = bad_train['network_g'].pop('embed_dim')
    bad_train['datasets']['train']['dataroot_gt'] = 'nowhere'
    bad_test = eval_options(data, tiny_weights(data))
    bad_test['scale'] = 4
    no_datasets = train_options(data)
    del no_datasets['datasets']
    list_datasets = dict(train_options(data), datasets=[1])
    bad_value = train_options(data)
    bad_value['network_g']['halt_eps'] = 1.5
    no_val = eval_options(data, tiny_weights(data))
    no_val['vall'] = no_val.pop('val')
    runs = [  # side by side: each start-up takes seconds
        _run(['train', '-opt', str(write_yaml(tmp_path / 'train.yml', bad_train))], tmp_path),
        _run(['test', '-opt', str(write_yaml(tmp_path / 'test.yml', bad_test))], tmp_path),
        _run(['train', '-opt', str(write_yaml(tmp_path / 'none.yml', no_datasets))], tmp_path),
        _run(['train', '-opt', str(write_yaml(tmp_path / 'list.yml', list_datasets))], tmp_path),
        _run(['train', '-opt', str(write_yaml(tmp_path / 'value.yml', bad_value))], tmp_path),
        _run(['test', '-opt', str(write_yaml(tmp_path / 'no_val.yml', no_val))], tmp_path),
        _run(['train', '-opt', str(write_yaml(tmp_path / 'good.yml', train_options(data))), '--launcher', 'pytorch'],
             tmp_path),  # outside torchrun
    ]
    (train_out, train_err), (test_out, test_err), (_, none_err), (_, list_err), (_, value_err), (_, no_val_err), (
        _, launcher_err) = (run.communicate(timeout=300) for run in runs)
    assert [run.returncode for run in runs] == [2, 2, 2, 2, 2, 2, 2]
    assert no_val_err == (f"basicsr: error: {tmp_path}/no_val.yml: vall: BasicSR has no such option; did you mean "
                          "'val'? Fix the spelling.\n")
    assert launcher_err.startswith(f'basicsr: error: {tmp_path}/good.yml: the environment variable RANK is not set: '
                                   '--launcher pytorch runs under torchrun')
    assert list_err.startswith(f'basicsr: error: {tmp_path}/list.yml: the options are not laid out as BasicSR expects')
    assert value_err.startswith(f'basicsr: error: {tmp_path}/value.yml: network_g: AdaFormer cannot be built from '
                                'these arguments: ValueError: halt_eps must be in [0, 1), got 1.5')
    assert train_err.startswith(f'basicsr: error: {tmp_path}/train.yml has 2 problems:\n  network_g.embed_dimm:')
    assert 'datasets.train.dataroot_gt: nowhere does not exist' in train_err
    assert test_err.startswith(f'basicsr: error: {tmp_path}/test.yml has 2 problems:\n  scale is 4 but '
                               'network_g.upscale is 2')
    assert 'datasets.test_1: 4 of 4 HR/LR pairs do not fit scale 4' in test_err  # the data are x2
    assert none_err.startswith(f"basicsr: error: {tmp_path}/none.yml: the required option 'datasets' is missing")
    assert 'Traceback' not in train_err + test_err + none_err + list_err + value_err + launcher_err
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'results').exists()


@pytest.mark.parametrize('backend', ['nccl', 'gloo'])
def test_cpu_processes_in_an_nccl_group_are_an_option_error(data, monkeypatch, backend):
    """``num_gpu: 0`` under ``--launcher pytorch`` on a GPU machine: BasicSR starts NCCL, which cannot carry the CPU
    networks' tensors (DDP would fail at its first broadcast). gloo carries them."""
    import torch.distributed as dist

    asked = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'get_backend', lambda group=None: asked.append(group) or backend)
    opt = train_options(data, num_gpu=0, dist=True)
    if backend == 'gloo':
        assert _check_device(opt) == [] and asked  # the check looked at the process group and found no problem
        assert check_options(parsed(opt, True)) == []  # nor any other problem or warning
    else:
        assert problems(opt) == [
            'num_gpu is 0 (the networks stay on the CPU) but the distributed run uses NCCL, which carries CUDA tensors '
            'only: BasicSR starts NCCL for --launcher pytorch whenever CUDA is there. Hide the GPUs '
            '(CUDA_VISIBLE_DEVICES= torchrun ...) to run CPU processes over gloo, or set "num_gpu: auto".']


def test_metric_arguments_are_checked(data):
    """BasicSR's metrics take **kwargs: a misspelt test_y_channel would measure on RGB without a word, a missing
    crop_border fail only at the first image; `better` is read by BasicSR itself."""
    opt = train_options(data)
    psnr = opt['val']['metrics']['psnr']
    psnr['test_y_chanel'] = psnr.pop('test_y_channel')
    psnr['better'] = 'higher'
    [problem] = problems(opt)
    assert problem.startswith("val.metrics.psnr.test_y_chanel: calculate_psnr has no argument 'test_y_chanel'; did "
                              "you mean 'test_y_channel'? (calculate_psnr takes: crop_border, input_order, "
                              'test_y_channel;')
    opt = train_options(data)
    del opt['val']['metrics']['psnr']['crop_border']
    assert problems(opt) == ["val.metrics.psnr: calculate_psnr needs the argument 'crop_border'; add it"]


def test_metrics_comparing_with_hr_need_hr_images(data):
    opt = eval_options(data, tiny_weights(data))
    opt['datasets']['test_1'] = dict(type='SingleImageDataset', name='lr_only', dataroot_lq=str(data / 'LR'),
                                     io_backend={'type': 'disk'})
    found = problems(opt, is_train=False)
    assert [p.split(':')[0] for p in found] == ['val.metrics.psnr', 'val.metrics.ssim']
    assert 'compares with the HR image, which datasets.test_1 (SingleImageDataset, LR only) does not have' in found[0]


def test_path_keys_basicsr_does_not_read_and_a_test_without_weights(data):
    """A misspelt pretrain_network_g: BasicSR tests with random weights (11 dB, exit 0), or makes a folder of the
    weights file's name (FileExistsError) for a key it does not skip."""
    weights = tiny_weights(data)
    opt = eval_options(data, None)
    opt['path'] = {'pretrain_network': weights, 'pretrain_model_G': weights}
    found = problems(opt, is_train=False)
    assert found[0].startswith("path.pretrain_network: BasicSR reads no such option; did you mean "
                               "'pretrain_network_g'?")
    assert found[1].startswith(f"path.pretrain_model_G: BasicSR reads no such option and would make a folder "
                               f"{weights!r} of it")
    assert len(found) == 2
    opt['path'] = {'pretrain_network_g': None}
    assert problems(opt, is_train=False) == [
        'path.pretrain_network_g is not set: the test would run network_g with random weights. Give the weights file '
        '(e.g. experiments/<name>/models/net_g_latest.pth, with param_key_g: params_ema)']
    opt['path'] = {'pretrain_network_g': weights, 'pretrain_network_d': None, 'param_key_d': 'params',
                   'resume_state': None, 'param_key_g': 'params', 'strict_load_g': True}
    assert check_options(parsed(opt, is_train=False)) == []


@pytest.mark.parametrize('entries, key, training_ema, expected', [
    (('params', 'params_ema'), 'param_ema', False,
     "path.param_key_g: {w} has no entry 'param_ema' (it has: params, params_ema); BasicSR would load 'params' "
     "instead without an error. Set param_key_g to one of its entries; did you mean 'params_ema'?"),
    (('params', 'params_ema'), None, False, 'path.param_key_g is ~ (load the file as it is), but {w} holds the '
     'entries params, params_ema: set param_key_g to one of them'),
    ((), 'params', False, "path.param_key_g is 'params', but {w} is a plain state dict (no entries params / "
     "params_ema): set param_key_g: ~ to load it as it is, or re-save it as {{'params': state_dict}}"),
    ((), None, True, "path.pretrain_network_g: {w} is a plain state dict, and with train.ema_decay BasicSR loads the "
     "EMA network from its 'params_ema' (or 'params') entry, which it lacks: re-save it as {{'params': "
     "state_dict}}, or set ema_decay: 0"),
    (('params_ema',), 'params', False,
     "path.param_key_g: {w} has no entry 'params' (it has: params_ema): set param_key_g to one of them"),
    (('params',), 'params_ema', True, None),  # BasicSR falls back to params: the shipped weights' layout
    ((), None, False, None),
])
def test_param_key_is_checked_as_basicsr_loads_it(data, tmp_path, entries, key, training_ema, expected):
    """What BasicSR's load_network does with param_key_g (and, training with EMA, with params_ema for the EMA
    network): a key the file lacks fails once the run has started, a misspelt one loads params silently."""
    state = build_network(dict(train_options(data)['network_g'])).state_dict()
    path = tmp_path / 'w.pth'
    torch.save({entry: state for entry in entries} if entries else state, path)
    opt = train_options(data)
    opt['path'].update(pretrain_network_g=str(path), param_key_g=key)
    opt['train']['ema_decay'] = 0.9 if training_ema else 0
    if expected is None:
        assert check_options(parsed(opt)) == []
    else:
        assert problems(opt) == [expected.format(w=path)]


def test_estimator_only_without_weights_to_start_from_is_warned(data):
    opt = train_options(data)
    opt['train']['estimator_only'] = True
    assert check_options(parsed(opt)) == [
        'train.estimator_only trains only the confidence estimator, but path.pretrain_network_g is not set: the rest '
        'of the network stays random. Set it to the trained weights whose estimator you train.']
    opt['path']['pretrain_network_g'] = tiny_weights(data)
    assert check_options(parsed(opt)) == []


def test_a_training_state_given_as_weights_is_named_as_such(data, tmp_path):
    """BasicSR's .state files hold the optimisers and the iteration, not the network: pointing pretrain_network_g at
    one asked to set param_key_g to one of its entries, which cannot work."""
    state = tmp_path / '4.state'
    torch.save({'epoch': 0, 'iter': 4, 'optimizers': [{}], 'schedulers': [{}]}, state)
    for key in ('params', None):
        opt = eval_options(data, str(state))
        opt['path']['param_key_g'] = key
        assert problems(opt, is_train=False) == [
            f'path.pretrain_network_g: {state} is a training state (optimizers, schedulers, iteration: for '
            'path.resume_state or --auto_resume), not weights; give the weights file saved with it '
            '(experiments/<name>/models/net_g_<iter>.pth)']


def test_model_setup_errors_basicsr_would_raise_late(data):
    """Each is a KeyError or a traceback from BasicSR once the experiment folder exists (some at the first
    validation)."""
    opt = train_options(data, model_type='AdaformerModel')
    assert problems(opt)[0] == ("model_type: no model named 'AdaformerModel' is registered; did you mean "
                                "'AdaFormerModel'? (AdaFormer trains with AdaFormerModel)")
    opt = train_options(data)
    opt['network_G'] = opt.pop('network_g')
    assert problems(opt)[0].startswith("network_g is missing; did you mean 'network_G'?")
    opt = train_options(data, model_type='SwinIRModel')
    del opt['train']['uncertainty_opt']
    del opt['network_g']['window_size']
    assert problems(opt)[0].startswith('network_g.window_size: model_type SwinIRModel reads it')
    opt = train_options(data)
    del opt['datasets']['train']['gt_size']
    assert problems(opt) == ['datasets.train.gt_size is missing: PairedImageDataset cuts training patches of gt_size '
                             'HR pixels; add it (scale x the LR patch, e.g. 192 for 48 LR pixels at x4)']  # once
    opt = train_options(data, network_g={'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8,
                                         'num_block': 1, 'upscale': 2})
    assert problems(opt) == ['train.uncertainty_opt trains the confidence estimator of AdaFormer; network_g EDSR has '
                             'none: remove uncertainty_opt for this network']


def test_a_number_in_exponent_form_gets_a_yaml_hint(data):
    opt = train_options(data)
    opt['network_g']['halt_eps'] = '5e-2'  # what YAML 1.1 (PyYAML) makes of halt_eps: 5e-2
    assert problems(opt) == ["network_g.halt_eps: AdaFormer takes a number for halt_eps, got '5e-2' (YAML reads a "
                             'number in exponent form without a decimal point as text: write 0.05 or !!float 5e-2)']


def test_adaformer_trained_without_its_loss_is_warned(data):
    """Swapped into an SRModel experiment AdaFormer trains, but its estimator gets no gradient: a warning, not an
    error (an ablation without L_USL is legitimate)."""
    opt = train_options(data, model_type='SRModel')
    del opt['train']['uncertainty_opt']
    [warning] = check_options(parsed(opt))
    assert warning.startswith('network_g AdaFormer is trained without its uncertainty loss (model_type SRModel, which '
                              'has none): its confidence estimator gets no gradient')
    opt['model_type'] = 'AdaFormerModel'
    assert check_options(parsed(opt))[0].startswith('network_g AdaFormer is trained without its uncertainty loss '
                                                    '(model_type AdaFormerModel):')
    assert check_options(parsed(train_options(data))) == []


def test_force_yml_values_get_a_force_yml_hint(monkeypatch):
    """BasicSR's --force_yml keeps 1.0e-4 as text (it converts only plain decimals): the YAML hint 'remove the
    quotes' would be wrong there; the message says how to write the value on the command line."""
    from adaformer_arch.option_checks import _force_yml_hint

    monkeypatch.setattr('sys.argv', ['basicsr', 'train', '-opt', 'x.yml', '--force_yml', 'name=a',
                                     'train:optim_g:lr=1.0e-4', 'network_g:early_exit=True'])
    assert _force_yml_hint("train.optim_g.lr: must be a number >= 0, got '1.0e-4' (remove the quotes)") == (
        "train.optim_g.lr: must be a number >= 0, got '1.0e-4' (--force_yml train:optim_g:lr=1.0e-4: BasicSR passes "
        'this value on as text; write --force_yml train:optim_g:lr=0.0001)')
    assert _force_yml_hint("network_g.early_exit: AdaFormer takes true or false for early_exit, got 'True' (remove "
                           "the quotes)").endswith('write --force_yml network_g:early_exit=true)')
    in_the_file = "network_g.halt_eps: AdaFormer takes a number for halt_eps, got '0.1' (remove the quotes)"
    assert _force_yml_hint(in_the_file) == in_the_file
