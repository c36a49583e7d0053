"""`basicsr infer` with a tiny random AdaFormer: every input mode, bad files skipped and reported, tiling against the
whole image, weights written on a GPU, and weights files that must be refused (unsafe pickle, wrong scale, missing
default)."""
import argparse
import copy
import os
import pickle
import weakref
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from adaformer_arch import infer
from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.data.image_io import image_size
from adaformer_arch.utils.halting_maps import depth_to_png
from adaformer_arch.utils.image_io import ImageReadError, check_image_file, read_image
from adaformer_arch.utils.tiling import spans
from helpers import TINY_NET, CreatesMarker, run_cli, save_as_if_on_gpu, set_confidence_bias, write_yaml

SCALE = TINY_NET['upscale']
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is much faster than several competing for a busy machine (as run_cli's
    OMP_NUM_THREADS=1 for the subprocess)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_net(seed: int, **overrides) -> AdaFormer:
    torch.manual_seed(seed)
    return AdaFormer(**dict({k: v for k, v in TINY_NET.items() if k != 'type'}, **overrides)).eval()


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """(H, W[, C]) smooth random picture (bicubic upsampling of a coarse grid), like a photo rather than noise."""
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    coarse = rng.uniform(0, 1, (max(height // 6, 2), max(width // 6, 2), channels)).astype(np.float32)
    img = np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)
    img = np.round(img.reshape(height, width, channels) * peak).astype(dtype)
    return img[:, :, 0] if channels == 1 else img


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Tuple[Path, Path, AdaFormer]:
    """(option file with the tiny network_g, BasicSR checkpoint, the network of its params_ema)."""
    root = tmp_path_factory.mktemp('model')
    ema = tiny_net(seed=0)
    other = tiny_net(seed=1)  # 'params' differ from 'params_ema': the output shows which one was loaded
    weights = root / 'tiny.pth'
    torch.save({'params': other.state_dict(), 'params_ema': ema.state_dict()}, weights)
    opt = write_yaml(root / 'tiny.yml', {'name': 'tiny', 'network_g': dict(TINY_NET)})
    return opt, weights, ema


def run_infer(args: List[str], capsys) -> Tuple[int, str, str]:
    """``basicsr infer ARGS`` in this process -> (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        infer.main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_folder_of_every_mode_with_bad_files_reported_and_skipped(model, tmp_path):
    opt, weights, _ = model
    src = tmp_path / 'in'
    src.mkdir()
    rgba = np.dstack([smooth_image(12, 20, seed=3), np.tile(np.linspace(0, 255, 20), (12, 1)).astype(np.uint8)])
    cv2.imwrite(str(src / 'rgb.png'), smooth_image(20, 30, seed=1))
    cv2.imwrite(str(src / 'grey.png'), smooth_image(16, 24, channels=1, seed=2))
    cv2.imwrite(str(src / 'rgba.png'), rgba)
    cv2.imwrite(str(src / 'deep.png'), smooth_image(12, 16, seed=4, dtype=np.uint16))
    cv2.imwrite(str(src / 'tiny.png'), smooth_image(5, 7, seed=5))
    cv2.imwrite(str(src / 'odd.jpg'), smooth_image(13, 19, seed=6))
    cv2.imwrite(str(tmp_path / 'whole.png'), smooth_image(40, 40, seed=7))
    data = (tmp_path / 'whole.png').read_bytes()
    (src / 'trunc.png').write_bytes(data[:len(data) // 2])
    (src / 'notes.png').write_text('not an image')
    (src / 'readme.txt').write_text('ignored: not an image extension')
    out = tmp_path / 'out'

    proc = run_cli(['infer', '-i', src, '-o', out, '--opt', opt, '--weights', weights, '--save-maps'], cwd=tmp_path,
                   check=False)

    assert proc.returncode == 1, proc.stderr
    assert '6 of 8 image(s)' in proc.stdout and '2 failed' in proc.stdout
    for bad in ('trunc.png', 'notes.png'):
        assert f'FAILED {src / bad}' in proc.stderr
    assert 'truncated' in proc.stderr and 'readme.txt' in proc.stderr
    expected = {  # stem: (shape, dtype) of the SR output
        'rgb': ((40, 60, 3), np.uint8), 'grey': ((32, 48), np.uint8), 'rgba': ((24, 40, 4), np.uint8),
        'deep': ((24, 32, 3), np.uint16), 'tiny': ((10, 14, 3), np.uint8), 'odd': ((26, 38, 3), np.uint8)}
    for stem, (shape, dtype) in expected.items():
        sr = cv2.imread(str(out / f'{stem}_x{SCALE}.png'), cv2.IMREAD_UNCHANGED)
        assert sr is not None and sr.shape == shape and sr.dtype == dtype, stem
        for suffix in ('depth', 'confidence'):
            assert cv2.imread(str(out / f'{stem}_{suffix}.png')).shape == shape[:2] + (3,), (stem, suffix)
    alpha = cv2.imread(str(out / f'rgba_x{SCALE}.png'), cv2.IMREAD_UNCHANGED)[:, :, 3].astype(np.float32)
    assert np.abs(alpha - cv2.resize(rgba[:, :, 3], (40, 24), interpolation=cv2.INTER_LINEAR)).max() <= 16
    deep = cv2.imread(str(out / f'deep_x{SCALE}.png'), cv2.IMREAD_UNCHANGED)
    assert len(np.unique(deep)) > 256  # really 16-bit values, not 8-bit ones scaled up
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 18 and not any(n.startswith(('trunc', 'notes', '.')) for n in written), written


def test_read_image_modes(tmp_path):
    deep = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'deep.png'), deep)
    img, info = read_image(str(tmp_path / 'deep.png'))
    assert img.shape == (2, 2, 3) and img.dtype == np.float32 and (info.mode, info.bit_depth) == ('grey', 16)
    assert np.allclose(img[:, :, 0], deep / 65535.0) and np.array_equal(img[:, :, 0], img[:, :, 2])
    cv2.imwrite(str(tmp_path / 'rgba.png'), np.dstack([np.full((3, 4), v, np.uint8) for v in (10, 20, 30, 51)]))
    img, info = read_image(str(tmp_path / 'rgba.png'))
    assert img.shape == (3, 4, 3) and info.mode == 'rgba' and np.allclose(info.alpha, 0.2)


@pytest.mark.parametrize('ext, save', [('png', {}), ('jpg', {'quality': 100}), ('webp', {'lossless': True}),
                                       ('tif', {})])
def test_exif_orientation_is_applied_as_a_viewer_and_basicsr_apply_it(tmp_path, ext, save):
    """A phone photo is stored sideways with an EXIF orientation. OpenCV's IMREAD_UNCHANGED (which keeps alpha and
    16 bits) ignores it in a JPEG, PNG or WebP, so `basicsr infer` and `basicsr prepare` worked on the sideways
    picture; the pixels and the header sizes now come upright, as Pillow's exif_transpose and BasicSR's decoder
    (IMREAD_COLOR) give them. A TIFF's orientation both libraries apply themselves: it must not be applied twice."""
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        path = str(tmp_path / f'o{orientation}.{ext}')
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(rgb).save(path, exif=exif, **save)
        with Image.open(path) as img:
            upright = np.asarray(ImageOps.exif_transpose(img).convert('RGB'))[..., ::-1]  # BGR
        got, _ = read_image(path)
        assert np.array_equal(np.round(got * 255).astype(np.uint8), upright), orientation
        basicsr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)  # BasicSR's imfrombytes
        assert np.array_equal(basicsr, upright)
        assert check_image_file(path) == image_size(path) == upright.shape[:2]


def test_header_sizes_do_not_decode_the_pixels(tmp_path):
    """The orientation is read from the header's EXIF bytes: a PNG cut off in its pixel data still has a header size
    (basicsr prepare lists it, then skips it by name when it reads it), as before orientations were applied."""
    cv2.imwrite(str(tmp_path / 'whole.png'), smooth_image(64, 64))
    data = (tmp_path / 'whole.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
    assert image_size(str(tmp_path / 'cut.png')) == (64, 64)
    with pytest.raises(ImageReadError, match='truncated or corrupt'):
        check_image_file(str(tmp_path / 'cut.png'))


def test_grey_with_alpha_stays_grey_with_alpha(model, tmp_path, capsys):
    """A grey+alpha PNG (OpenCV decodes it as BGRA with equal colour channels) comes out grey with its alpha, not
    as colour: the network's three output channels differ a little, and are made one grey again."""
    opt, weights, _ = model
    grey, alpha = smooth_image(12, 16, channels=1, seed=9), np.tile(np.linspace(0, 255, 16), (12, 1)).astype(np.uint8)
    Image.fromarray(np.dstack([grey, alpha]), mode='LA').save(tmp_path / 'la.png')
    img, info = read_image(str(tmp_path / 'la.png'))
    assert info.mode == 'grey_alpha' and info.alpha is not None
    code, _, err = run_infer(['-i', tmp_path / 'la.png', '-o', tmp_path / 'out', '--opt', opt, '--weights', weights],
                             capsys)
    assert code == 0, err
    sr = cv2.imread(str(tmp_path / 'out' / f'la_x{SCALE}.png'), cv2.IMREAD_UNCHANGED)
    assert sr.shape == (12 * SCALE, 16 * SCALE, 4)
    assert np.array_equal(sr[:, :, 0], sr[:, :, 1]) and np.array_equal(sr[:, :, 1], sr[:, :, 2])
    assert np.abs(sr[:, :, 3].astype(int) - cv2.resize(alpha, (16 * SCALE, 12 * SCALE))).max() <= 16


def test_output_is_the_network_of_params_ema_and_tiling_matches_whole_image(model, tmp_path, capsys):
    opt, weights, ema = model
    lr = smooth_image(40, 44, seed=8)
    cv2.imwrite(str(tmp_path / 'img.png'), lr)
    common = ['-i', tmp_path / 'img.png', '--opt', opt, '--weights', weights, '--save-maps', '--halt-eps', '0.955']
    results = {}
    for name, tiling in (('whole', []), ('tiled', ['--tile', 16, '--tile-overlap', 8]),
                         ('seams', ['--tile', 16, '--tile-overlap', 0])):
        code, _, err = run_infer(common + ['-o', tmp_path / name] + tiling, capsys)
        assert code == 0, err
        results[name] = {suffix: cv2.imread(str(tmp_path / name / f'img_{suffix}.png')).astype(np.int32)
                         for suffix in (f'x{SCALE}', 'depth', 'confidence')}

    net = copy.deepcopy(ema)
    net.halt_eps = 0.955
    with torch.inference_mode():
        rgb = torch.from_numpy(lr[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255.0
        direct = net(rgb)[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1]
    assert np.abs(results['whole'][f'x{SCALE}'] - np.round(direct * 255.0)).max() <= 1
    for suffix, maps in results['tiled'].items():  # overlap 8 (4 px context per side): same up to rounding
        assert maps.shape == results['whole'][suffix].shape
        # the confidence colour map is steep: a rounding-size change of the confidence can move it by 2 levels
        assert np.abs(maps - results['whole'][suffix]).max() <= (2 if suffix == 'confidence' else 1), suffix
    # without overlap, pixels at the cuts lack their neighbours: the tiles really were processed separately
    assert np.abs(results['seams'][f'x{SCALE}'] - results['whole'][f'x{SCALE}']).max() > 2


def direct_sr(net: AdaFormer, lr_bgr: np.ndarray) -> np.ndarray:
    """The network run directly on an 8- or 16-bit BGR image -> the levels of its output at that depth (as float)."""
    peak = np.iinfo(lr_bgr.dtype).max
    with torch.inference_mode():
        rgb = torch.from_numpy(lr_bgr[:, :, ::-1].astype(np.float32) / peak).permute(2, 0, 1)[None]
        sr = net(rgb)[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1]
    return np.round(sr * float(peak))


def test_no_early_exit_runs_every_token_through_every_block(tmp_path, capsys):
    """Weights whose estimator halts some tokens: with --no-early-exit the output is the network's with early_exit
    off and the depth map says L blocks everywhere; without it, some tokens stop after the first block. A 16-bit
    image, whose output stays 16-bit: at 8 bits the two outputs of this tiny network differ by at most one level."""
    net = tiny_net(seed=0)
    set_confidence_bias(net, 2.0)
    weights = tmp_path / 'halting.pth'
    torch.save({'params': net.state_dict()}, weights)
    opt = write_yaml(tmp_path / 'tiny.yml', {'network_g': dict(TINY_NET)})
    lr = smooth_image(16, 20, seed=5, dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'img.png'), lr)
    sr, depth = {}, {}
    for name, flags in (('exit', []), ('no_exit', ['--no-early-exit'])):
        code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / name, '--opt', opt, '--weights',
                                  weights, '--save-maps', *flags], capsys)
        assert code == 0, err
        sr[name] = cv2.imread(str(tmp_path / name / f'img_x{SCALE}.png'), cv2.IMREAD_UNCHANGED).astype(np.int64)
        depth[name] = cv2.imread(str(tmp_path / name / 'img_depth.png'))
    blocks = TINY_NET['depth']
    every_block = depth_to_png(np.full((1, 1), blocks), blocks)[0, 0]  # the colour of depth L
    assert (depth['no_exit'] == every_block).all()
    assert not (depth['exit'] == every_block).all()
    dense = copy.deepcopy(net)
    dense.early_exit = False
    expected = direct_sr(dense, lr)
    assert np.abs(sr['no_exit'] - expected).max() <= 1
    assert np.abs(sr['exit'] - expected).max() > 16  # halting changed the output
    assert np.abs(sr['exit'] - direct_sr(net, lr)).max() <= 1


def test_default_network_is_the_shipped_x4_one(tmp_path, capsys):
    """``basicsr infer -i IMG -o OUT`` (the README's first example): AdaFormer x4 with the shipped weights."""
    lr = smooth_image(16, 16, seed=6)
    cv2.imwrite(str(tmp_path / 'img.png'), lr)
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'out'], capsys)
    assert code == 0, err
    assert f"basicsr infer: weights {infer.DEFAULT_WEIGHTS}, entry 'params'\n" in err  # says what it loaded
    got = cv2.imread(str(tmp_path / 'out' / 'img_x4.png'))
    assert got.shape == (64, 64, 3)
    net = AdaFormer(upscale=4).eval()
    state = torch.load(REPO / 'experiments' / 'pretrained_models' / 'AdaFormer_x4_cpu.pth', weights_only=True)
    net.load_state_dict(state['params'])
    assert np.abs(got.astype(np.int32) - direct_sr(net, lr)).max() <= 1


@pytest.mark.parametrize('length,tile,overlap', [(40, 16, 8), (44, 16, 0), (5, 8, 4), (33, 8, 7), (16, 16, 4)])
def test_tiles_keep_every_pixel_exactly_once_inside_their_tile(length, tile, overlap):
    kept = np.zeros(length, dtype=int)
    for span in spans(length, tile, overlap):
        assert span.start <= span.keep_start < span.keep_stop <= span.stop <= length
        assert span.stop - span.start <= tile and span.start % (tile - overlap) == 0
        kept[span.keep_start:span.keep_stop] += 1
    assert (kept == 1).all()


def test_tile_not_multiple_of_window_is_refused(model, tmp_path, capsys):
    opt, weights, _ = model
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(8, 8))
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'out', '--opt', opt, '--weights', weights,
                              '--tile', 6], capsys)
    assert code == 2 and '--tile 6' in err and f'multiple of the window size {TINY_NET["window_size"]}' in err


def test_weights_written_on_a_gpu_give_the_same_image_on_the_cpu(model, tmp_path, capsys):
    opt, weights, _ = model
    save_as_if_on_gpu(torch.load(weights, weights_only=True), tmp_path / 'gpu.pth')
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(16, 20, seed=3))
    images = []
    for name, checkpoint in (('cpu', weights), ('gpu', tmp_path / 'gpu.pth')):
        code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / name, '--opt', opt, '--weights',
                                  checkpoint], capsys)
        assert code == 0, err
        images.append(cv2.imread(str(tmp_path / name / f'img_x{SCALE}.png')))
    assert images[0].shape == (16 * SCALE, 20 * SCALE, 3)
    assert np.array_equal(images[0], images[1])


def test_dtype_bfloat16_gives_nearly_the_float32_image_and_float16_is_refused_on_the_cpu(model, tmp_path, capsys):
    opt, weights, _ = model
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(24, 32, seed=4))
    images = {}
    for dtype, tiling in (('float32', []), ('bfloat16', []), ('float32', ['--tile', 16]), ('bfloat16', ['--tile', 16])):
        out = tmp_path / f'{dtype}{len(tiling)}'
        code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', out, '--opt', opt, '--weights', weights,
                                  '--dtype', dtype, '--save-maps'] + tiling, capsys)
        assert code == 0, err
        images[dtype, bool(tiling)] = cv2.imread(str(out / f'img_x{SCALE}.png')).astype(np.int32)
        assert (out / 'img_confidence.png').is_file()
    for tiled in (False, True):
        difference = np.abs(images['bfloat16', tiled] - images['float32', tiled])
        assert 0 < difference.mean() < 1.0 and difference.max() <= 8  # bfloat16 rounding of a random tiny network
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'half', '--opt', opt, '--weights', weights,
                              '--dtype', 'float16', '--device', 'cpu'], capsys)
    assert code == 2 and '--dtype float16: float16 is for GPUs' in err and 'use bfloat16 on the CPU' in err
    assert not (tmp_path / 'half').exists()


def test_malicious_pickle_checkpoint_is_refused_without_running_code(model, tmp_path, capsys):
    opt, _, _ = model
    proof = tmp_path / 'payload_works'
    pickle.loads(pickle.dumps(CreatesMarker(proof))).close()
    assert proof.exists()  # the payload does run under a plain unpickler
    marker = tmp_path / 'pwned'
    torch.save({'params': CreatesMarker(marker)}, tmp_path / 'evil.pth')
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(8, 8))

    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'out', '--opt', opt, '--weights',
                              tmp_path / 'evil.pth'], capsys)

    assert code == 2 and 'refusing to load' in err and 'evil.pth' in err
    assert not marker.exists()
    assert not (tmp_path / 'out' / f'img_x{SCALE}.png').exists()


def infer_with_checkpoint(model, tmp_path, capsys, name: str, **overrides) -> Tuple[int, str]:
    """Exit status and stderr of `basicsr infer` given the tiny network's options and the weights of a tiny network
    built with ``overrides``, saved as ``name``."""
    opt, _, _ = model
    torch.save({'params': tiny_net(seed=0, **overrides).state_dict()}, tmp_path / name)
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(8, 8))
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'out', '--opt', opt, '--weights',
                              tmp_path / name], capsys)
    return code, err


def test_checkpoint_for_another_scale_names_the_tensors_that_disagree(model, tmp_path, capsys):
    code, err = infer_with_checkpoint(model, tmp_path, capsys, 'x3.pth', upscale=3)
    feat = TINY_NET['num_feat']
    assert code == 2 and 'x3.pth does not fit' in err
    assert f'conv_up.weight: checkpoint ({3 * 9}, {feat}, 3, 3), network ({3 * 4}, {feat}, 3, 3)' in err
    assert 'conv_up.bias' in err and 'conv_first' not in err
    assert f'the checkpoint is for x3 (its conv_up has 27 = 3*3^2 outputs), the network for x2: use x2 weights' in err


def test_checkpoint_with_another_estimator_width_says_which_width(model, tmp_path, capsys):
    code, err = infer_with_checkpoint(model, tmp_path, capsys, 'est5.pth', estimator_dim=5)
    assert code == 2 and 'est5.pth does not fit' in err
    assert 'confidence estimator has 5 hidden channels: set network_g estimator_dim: 5' in err


def test_other_network_width_gives_no_estimator_hint(model, tmp_path, capsys):
    """The estimator's input width follows num_feat; only its hidden channels are estimator_dim."""
    code, err = infer_with_checkpoint(model, tmp_path, capsys, 'wide.pth', num_feat=12)
    assert code == 2 and 'conv_first.weight: checkpoint (12, 3, 3, 3)' in err
    assert 'estimator_dim' not in err


def test_estimator_width_hint_survives_a_long_mismatch_report(model, tmp_path, capsys):
    code, err = infer_with_checkpoint(model, tmp_path, capsys, 'wide.pth', num_feat=12, estimator_dim=5)
    assert code == 2 and '... and' in err  # more tensors disagree than the report names
    assert 'confidence estimator has 5 hidden channels: set network_g estimator_dim: 5' in err


def test_missing_default_weights_say_how_to_pass_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(infer, 'DEFAULT_WEIGHTS', tmp_path / 'not_shipped_yet.pth')
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(8, 8))
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'out'], capsys)
    assert code == 2 and 'not_shipped_yet.pth not found' in err and '--weights PATH' in err



def test_out_of_memory_is_reported_per_image_and_other_errors_are_not(monkeypatch):
    """An image that runs out of memory is skipped with the advice to tile; an error that only mentions memory
    (a lost CUDA context: "illegal memory access") is not taken for that and stops the run."""
    def failing(error: RuntimeError):
        def process(*args, **kwargs):
            raise error
        return process

    try:
        torch.empty(1 << 62, dtype=torch.uint8)  # the CPU allocator's real error
    except RuntimeError as err:
        cpu_oom = err
    monkeypatch.setattr(infer, 'process', failing(cpu_oom))
    why = infer.try_process('big.png', None, None, torch.device('cpu'), None, 0, 'big')
    assert why.startswith('out of memory') and 'use --tile 256' in why

    def gpu_oom(*args, **kwargs):
        activations = torch.empty(16)  # stands for the failed forward's tensors, held by the error's traceback
        alive.append(weakref.ref(activations))
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')

    alive, when_emptied = [], []
    monkeypatch.setattr(infer, 'process', gpu_oom)
    monkeypatch.setattr(torch.cuda, 'empty_cache', lambda: when_emptied.append(alive[0]() is not None))
    why = infer.try_process('big.png', None, None, torch.device('cuda'), None, 0, 'big')
    assert why.startswith('out of memory') and when_emptied == [False]  # emptied once the tensors were freed
    lost = RuntimeError('CUDA error: an illegal memory access was encountered')
    monkeypatch.setattr(infer, 'process', failing(lost))
    with pytest.raises(RuntimeError, match='illegal memory access'):
        infer.try_process('a.png', None, None, torch.device('cpu'), None, 0, 'a')


def test_option_file_asking_for_params_ema_falls_back_to_params(tmp_path, capsys):
    """As BasicSR's load_network: param_key_g params_ema and a file with 'params' only (the shipped weights) loads
    'params' (basicsr test does so; basicsr infer --opt used to refuse)."""
    net = tiny_net(seed=2)
    weights = tmp_path / 'params_only.pth'
    torch.save({'params': net.state_dict()}, weights)
    opt = write_yaml(tmp_path / 'tiny.yml', {'network_g': dict(TINY_NET), 'path': {
        'pretrain_network_g': str(weights), 'param_key_g': 'params_ema'}})
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(8, 8))
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'out', '--opt', opt], capsys)
    assert code == 0, err
    assert f"basicsr infer: weights {weights}, entry 'params'\n" in err  # not the params_ema it asked for
    got = cv2.imread(str(tmp_path / 'out' / f'img_x{SCALE}.png'))
    assert np.abs(got.astype(int) - direct_sr(net, cv2.imread(str(tmp_path / 'img.png')))).max() <= 1


def test_option_file_without_param_key_loads_params_as_basicsr_test_does(model, tmp_path, capsys):
    """An option file's weights are read as `basicsr test` reads them: param_key_g, BasicSR's default 'params' when
    unset (infer used to prefer params_ema there, giving another image than `basicsr test -opt` of the same file)."""
    _, weights, ema = model
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(8, 8))
    lr = cv2.imread(str(tmp_path / 'img.png'))
    for name, path_opt, net in (('unset', {}, tiny_net(seed=1)), ('ema', {'param_key_g': 'params_ema'}, ema)):
        opt = write_yaml(tmp_path / f'{name}.yml', {'network_g': dict(TINY_NET), 'path': dict(
            path_opt, pretrain_network_g=str(weights))})
        code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / name, '--opt', opt], capsys)
        assert code == 0, err
        got = cv2.imread(str(tmp_path / name / f'img_x{SCALE}.png')).astype(int)
        assert np.abs(got - direct_sr(net, lr)).max() <= 1, name


@pytest.mark.parametrize('args, message', [
    (['--scale', '0'], "argument --scale: must be a positive integer, got '0'"),
    (['--scale', '-2'], "argument --scale: must be a positive integer, got '-2'"),
])
def test_bad_scale_is_an_argument_error(tmp_path, capsys, args, message):
    code, _, err = run_infer(['-i', tmp_path, '-o', tmp_path / 'out', *args], capsys)
    assert code == 2 and message in err


def test_option_file_scale_and_upscale_are_checked(tmp_path, capsys):
    """``scale`` without ``network_g.upscale`` used to be ignored (an x4 network built from an x3 file, and a
    message blaming an ``upscale`` the file does not have); a bad upscale is refused naming it (torch errors before)."""
    network_g = {k: v for k, v in TINY_NET.items() if k != 'upscale'}
    opt = write_yaml(tmp_path / 'noup.yml', {'scale': 3, 'network_g': network_g})
    code, _, err = run_infer(['-i', tmp_path, '-o', tmp_path / 'out', '--opt', opt], capsys)
    file_says = f'{opt}: scale is 3 but network_g.upscale (the default of AdaFormer) is 4'
    assert code == 2 and file_says in err
    code, _, err = run_infer(['-i', tmp_path, '-o', tmp_path / 'out', '--opt', opt, '--scale', '3'], capsys)
    assert code == 2 and file_says in err
    network_up3 = write_yaml(tmp_path / 'up3.yml', {'network_g': dict(network_g, upscale=3)})
    code, _, err = run_infer(['-i', tmp_path, '-o', tmp_path / 'out', '--opt', network_up3, '--scale', '4'], capsys)
    assert code == 2 and f'--scale 4 disagrees with network_g.upscale=3 in {network_up3}' in err
    no_scale = write_yaml(tmp_path / 'noscale.yml', {'network_g': network_g})
    code, _, err = run_infer(['-i', tmp_path, '-o', tmp_path / 'out', '--opt', no_scale, '--scale', '3'], capsys)
    assert code == 2 and f"AdaFormer's default upscale=4 (network_g of {no_scale} sets none)" in err
    for bad, message in ((-2, 'upscale must be a positive integer, got -2'),
                         (0, 'upscale must be a positive integer, got 0'),
                         (2.5, 'network_g.upscale: AdaFormer takes an integer for upscale, got 2.5'),
                         ('3', "network_g.upscale: AdaFormer takes an integer for upscale, got '3' "
                               '(remove the quotes)')):
        opt = write_yaml(tmp_path / 'bad.yml', {'network_g': dict(network_g, upscale=bad)})
        code, _, err = run_infer(['-i', tmp_path, '-o', tmp_path / 'out', '--opt', opt], capsys)
        assert code == 2 and message in err and 'Traceback' not in err


def test_option_file_arguments_are_checked_as_basicsr_test_checks_them(tmp_path, capsys):
    """A misspelt network_g argument gets the same message as from basicsr test, with every other problem."""
    network_g = {k: v for k, v in TINY_NET.items() if k != 'upscale'}
    opt = write_yaml(tmp_path / 'scale.yml', {'scale': 2, 'network_g': dict(network_g, scale=2)})
    code, _, err = run_infer(['-i', tmp_path, '-o', tmp_path / 'out', '--opt', opt], capsys)
    assert code == 2 and f'{opt} has 2 problems:' in err
    assert "network_g.scale: AdaFormer has no argument 'scale'; did you mean 'upscale'?" in err
    assert 'scale is 2 but network_g.upscale (the default of AdaFormer) is 4' in err


def test_unusable_output_folder_and_a_weights_file_that_is_an_image(model, tmp_path, capsys):
    opt, weights, _ = model
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(8, 8))
    (tmp_path / 'afile').write_text('x')
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'afile', '--opt', opt, '--weights',
                              weights], capsys)
    assert code == 2 and f'cannot create the output folder {tmp_path / "afile"}' in err and 'Traceback' not in err
    code, _, err = run_infer(['-i', tmp_path, '-o', f'{tmp_path}/./', '--opt', opt, '--weights', weights], capsys)
    assert code == 2 and 'is the input folder' in err and sorted(os.listdir(tmp_path)) == ['afile', 'img.png']
    code, _, err = run_infer(['-i', tmp_path / 'img.png', '-o', tmp_path / 'out', '--opt', opt, '--weights',
                              tmp_path / 'img.png'], capsys)
    assert code == 2 and 'cannot read' in err and 'as a PyTorch weights file' in err and 'run code' not in err


def test_option_file_is_taken_with_one_dash_as_in_train_and_test():
    """``-opt FILE`` as ``basicsr train``/``test`` spell it, next to ``-o``, and ``--opt FILE``."""
    for argv in (['-i', 'in', '-o', 'out', '-opt', 'x.yml'], ['-i', 'in', '-opt', 'x.yml', '-o', 'out'],
                 ['-i', 'in', '-o', 'out', '--opt', 'x.yml']):
        args = infer.parse_args(argv)
        assert (args.opt, args.output) == ('x.yml', 'out')


@pytest.mark.parametrize('tile,overlap,expected', [(40, None, 24), (40, 20, 24), (40, 8, 8), (64, None, 32),
                                                   (8, None, 4), (16, 12, 12)])
def test_tile_starts_lie_on_the_window_grid(tile, overlap, expected):
    """The step between tile starts is rounded down to a multiple of the window (the overlap raised), so the last
    tile too has the whole image's windows and border padding; a step shorter than a window is kept."""
    assert infer.tile_settings(argparse.Namespace(tile=tile, tile_overlap=overlap), 8) == (tile, expected)
    if tile - expected >= 8:
        assert all(span.start % 8 == 0 for span in spans(41, tile, expected))
