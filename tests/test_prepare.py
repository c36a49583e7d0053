"""`basicsr prepare`: sizes and names of every subcommand, LMDB through PairedImageDataset, resuming, bad input."""
import json
import os
import shutil
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

import adaformer_arch  # noqa: F401  (basicsr compat before basicsr imports)
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.matlab_functions import imresize

from adaformer_arch.data.prepare import main as prepare
from adaformer_arch.data import jobs
from adaformer_arch.data.jobs import InputError, JobResult, run_jobs
from adaformer_arch.data.provenance import LOCK_NAME, RECORD_NAME, claim_outputs
from helpers import run_cli


def smooth_image(height: int, width: int, seed: int = 0, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """Random colour blobs bicubically enlarged: (height, width, channels), full range of ``dtype``."""
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    small = rng.integers(0, peak + 1, (max(height // 6, 2), max(width // 6, 2), channels)).astype(np.float32)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, peak).astype(dtype).reshape(height, width, channels).squeeze()


def write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def matlab_x1(img: np.ndarray, factor: int) -> np.ndarray:
    """Reference: BasicSR's MATLAB imresize of a uint8 image by 1/factor, rounded."""
    return np.clip(np.round(imresize(img.astype(np.float32) / 255.0, 1 / factor) * 255), 0, 255).astype(np.uint8)


def names(folder: Path) -> List[str]:
    return sorted(os.listdir(folder))


def test_benchmark_mod_crops_hr_and_computes_matlab_bicubic_lr(tmp_path, capsys):
    hr = {'a': smooth_image(41, 53, 1), 'b': smooth_image(60, 64, 2)}
    for name, img in hr.items():
        write(tmp_path / 'in' / f'{name}.png', img)
    write(tmp_path / 'in' / 'c.jpg', smooth_image(44, 48, 3))
    (tmp_path / 'in' / 'notes.txt').write_text('not an image')
    out = tmp_path / 'out'
    prepare(['benchmark', '--hr', str(tmp_path / 'in'), '--out', str(out), '--scale', '4', '--workers', '2'])
    assert names(out / 'HR') == names(out / 'LR_bicubic' / 'X4') == ['a.png', 'b.png', 'c.png']
    assert read(out / 'HR' / 'a.png').shape == (40, 52, 3)
    np.testing.assert_array_equal(read(out / 'HR' / 'a.png'), hr['a'][:40, :52])
    np.testing.assert_array_equal(read(out / 'LR_bicubic' / 'X4' / 'a.png'), matlab_x1(hr['a'][:40, :52], 4))
    assert read(out / 'LR_bicubic' / 'X4' / 'b.png').shape == (15, 16, 3)
    summary = capsys.readouterr().out
    assert '3 images: 3 processed, 0 already complete, 0 skipped; 6 files written' in summary
    assert 'HR' in summary and '3 files' in summary


def test_benchmark_takes_official_lr_paired_by_sorted_name_with_prefix(tmp_path):
    # SelfExSR numbers its LR files in the alphabetical order of the HR names: img_001 = apple, img_002 = zebra
    hr = {'zebra': smooth_image(48, 40, 1), 'apple': smooth_image(36, 44, 2)}
    lr = {'img_001_SRF_4_LR.png': smooth_image(9, 11, 3), 'img_002_SRF_4_LR.png': smooth_image(12, 10, 4)}
    for name, img in hr.items():
        write(tmp_path / 'HR' / f'{name}.png', img)
    for name, img in lr.items():
        write(tmp_path / 'LR' / name, img)
    out = tmp_path / 'out'
    prepare(['benchmark', '--hr', str(tmp_path / 'HR'), '--lr-dir', str(tmp_path / 'LR'), '--out', str(out),
             '--scale', '4', '--prefix', 'T91_', '--workers', '1'])
    assert names(out / 'HR') == names(out / 'LR_bicubic' / 'X4') == ['T91_apple.png', 'T91_zebra.png']
    np.testing.assert_array_equal(read(out / 'LR_bicubic' / 'X4' / 'T91_apple.png'), lr['img_001_SRF_4_LR.png'])
    np.testing.assert_array_equal(read(out / 'LR_bicubic' / 'X4' / 'T91_zebra.png'), lr['img_002_SRF_4_LR.png'])


def test_benchmark_lr_that_does_not_match_hr_is_a_clear_error(tmp_path, capsys):
    write(tmp_path / 'HR' / 'a.png', smooth_image(40, 40))
    write(tmp_path / 'LR' / 'img_001.png', smooth_image(11, 10))
    with pytest.raises(SystemExit) as exit_info:
        prepare(['benchmark', '--hr', str(tmp_path / 'HR'), '--lr-dir', str(tmp_path / 'LR'), '--out',
                 str(tmp_path / 'out'), '--scale', '4'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'a.png' in err and 'img_001.png' in err and 'not exactly 1/4' in err
    assert not (tmp_path / 'out').exists()


def test_bad_inputs_are_reported_converted_or_skipped(tmp_path, capsys):
    src = tmp_path / 'in'
    write(src / 'good.png', smooth_image(32, 32, 1))
    (src / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + os.urandom(200))
    grey = write(src / 'grey.png', smooth_image(33, 35, 2, channels=1))
    deep = smooth_image(32, 36, 3, dtype=np.uint16)
    write(src / 'deep.png', deep)
    rgba = smooth_image(28, 32, 4, channels=4)
    write(src / 'alpha.png', rgba)
    write(src / 'tiny.png', smooth_image(3, 40, 5))  # 3 px high: smaller than the scale
    write(src / 'small.png', smooth_image(20, 24, 6))  # below --min-size 24 after the crop
    out = tmp_path / 'out'
    prepare(['benchmark', '--hr', str(src), '--out', str(out), '--scale', '4', '--min-size', '24', '--workers', '2'])
    assert names(out / 'HR') == names(out / 'LR_bicubic' / 'X4') == ['alpha.png', 'deep.png', 'good.png',
                                                                      'grey.png']
    grey_out = read(out / 'HR' / 'grey.png')
    assert grey_out.shape == (32, 32, 3)
    np.testing.assert_array_equal(grey_out[..., 1], read(grey)[:32, :32])
    np.testing.assert_array_equal(read(out / 'HR' / 'deep.png'), np.round(deep / 257.0).astype(np.uint8))
    np.testing.assert_array_equal(read(out / 'HR' / 'alpha.png'), rgba[..., :3])
    summary = capsys.readouterr().out
    assert '7 images: 4 processed, 0 already complete, 3 skipped' in summary
    assert 'broken.png: ' in summary and 'corrupt' in summary
    assert 'tiny.png: 40x3 is smaller than the scale 4' in summary
    assert 'small.png: 24x20 after the mod-4 crop is smaller than --min-size 24' in summary
    assert 'greyscale converted to 3 channels: grey.png' in summary
    assert '16-bit converted to 8-bit: deep.png' in summary
    assert 'alpha channel dropped: alpha.png' in summary


def test_benchmark_skips_an_image_whose_lr_would_be_one_pixel(tmp_path, capsys):
    """A 3 px side at x3 is not smaller than the scale, but BasicSR's imresize cannot shrink it to 1 px (a
    traceback, and an HR without its LR, before)."""
    write(tmp_path / 'in' / 'thin.png', smooth_image(3, 40, 1))
    write(tmp_path / 'in' / 'ok.png', smooth_image(6, 40, 2))
    prepare(['benchmark', '--hr', str(tmp_path / 'in'), '--out', str(tmp_path / 'out'), '--scale', '3'])
    assert 'thin.png: 39x3 is too small for x3: its LR would be under 2 px a side' in capsys.readouterr().out
    assert names(tmp_path / 'out' / 'HR') == names(tmp_path / 'out' / 'LR_bicubic' / 'X3') == ['ok.png']
    prepare(['benchmark', '--hr', str(tmp_path / 'in'), '--out', str(tmp_path / 'out'), '--scale', '8'])
    assert 'ok.png: 40x6 is smaller than the scale 8' in capsys.readouterr().out  # not "its mod-8 HR crop 40x0"


def test_missing_folder_exits_2_naming_it_without_traceback(tmp_path):
    proc = run_cli(['prepare', 'benchmark', '--hr', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'out')],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert f"--hr folder '{tmp_path / 'nowhere'}' does not exist" in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_out_folder_that_cannot_be_created_exits_2(tmp_path, capsys):
    write(tmp_path / 'Set' / 'HR' / 'a.png', smooth_image(42, 42))
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(SystemExit) as exit_info:
        prepare(['benchmark', '--hr', str(tmp_path / 'Set' / 'HR'), '--out', str(tmp_path / 'afile' / 'out')])
    assert exit_info.value.code == 2
    assert f"--out folder '{tmp_path / 'afile' / 'out'}' cannot be created" in capsys.readouterr().err


def test_benchmark_refuses_to_write_over_its_input(tmp_path, capsys):
    write(tmp_path / 'Set' / 'HR' / 'a.png', smooth_image(42, 42))
    with pytest.raises(SystemExit) as exit_info:
        prepare(['benchmark', '--hr', str(tmp_path / 'Set' / 'HR'), '--out', str(tmp_path / 'Set')])
    assert exit_info.value.code == 2
    assert 'over the input folder' in capsys.readouterr().err
    assert names(tmp_path / 'Set') == ['HR']


def test_rerun_writes_only_the_missing_files(tmp_path, capsys):
    for i in range(3):
        write(tmp_path / 'in' / f'{i}.png', smooth_image(32, 32, i))
    out = tmp_path / 'out'
    args = ['benchmark', '--hr', str(tmp_path / 'in'), '--out', str(out), '--scale', '2', '--workers', '1']
    prepare(args)
    files = sorted(out.rglob('*.png'))
    before = {f: f.stat().st_mtime_ns for f in files}
    deleted = out / 'LR_bicubic' / 'X2' / '1.png'
    content = read(deleted)
    deleted.unlink()
    os.utime(out / 'HR' / '1.png', ns=(1, 1))  # a rewrite would change this too
    capsys.readouterr()
    prepare(args)
    assert '3 images: 1 processed, 2 already complete, 0 skipped; 1 files written, 5 already there' in \
        capsys.readouterr().out
    np.testing.assert_array_equal(read(deleted), content)
    assert (out / 'HR' / '1.png').stat().st_mtime_ns == 1
    assert all(f.stat().st_mtime_ns == before[f] for f in files if f.name != '1.png')
    assert not [p for p in out.rglob('*') if p.name.startswith('.') and p.name not in (RECORD_NAME, LOCK_NAME)]


@pytest.mark.parametrize('command, stem', [('div2k', '0001'), ('div8k', '1205'), ('benchmark', 'a')])
def test_inputs_differing_only_in_extension_are_refused(tmp_path, capsys, command, stem):
    """Outputs are named after the input's stem: 0001.png and 0001.jpg would take each other's place (a div2k pair
    was HR of one and LR of the other, depending on which worker finished last)."""
    write(tmp_path / 'HR' / f'{stem}.png', smooth_image(48, 48, 1))
    write(tmp_path / 'HR' / f'{stem}.jpg', smooth_image(48, 48, 2))
    args = [command, '--hr', str(tmp_path / 'HR'), '--out', str(tmp_path / 'out')]
    with pytest.raises(SystemExit) as exit_info:
        prepare(args + (['--scales', '4'] if command == 'div2k' else []))
    assert exit_info.value.code == 2
    assert f"have the same name with different extensions ({stem})" in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_div2k_notes_images_outside_the_split(tmp_path, capsys):
    """--split valid on training images (0001-0800) is likely a mix-up: noted, not refused (other sets use it)."""
    write(tmp_path / 'HR' / '0001.png', smooth_image(48, 48, 1))
    write(tmp_path / 'HR' / '0801.png', smooth_image(48, 48, 2))
    prepare(['div2k', '--hr', str(tmp_path / 'HR'), '--out', str(tmp_path / 'out'), '--split', 'valid', '--scales',
             '4'])
    out = capsys.readouterr().out
    assert "note: 1 of 2 images in" in out and "are not numbered 0801-0900 as DIV2K's valid split (0001.png)" in out
    assert names(tmp_path / 'out' / 'DIV2K_valid_HR') == ['0001.png', '0801.png']


def test_div2k_skips_an_image_whose_lr_would_be_one_pixel_at_the_largest_scale(tmp_path, capsys):
    """The crop is by lcm(2, 4) = 4, so a 4 px side passes it, but its x4 LR would be 1 px (a traceback before)."""
    write(tmp_path / 'HR' / '0801.png', smooth_image(4, 40, 1))
    write(tmp_path / 'HR' / '0802.png', smooth_image(8, 40, 2))
    prepare(['div2k', '--hr', str(tmp_path / 'HR'), '--out', str(tmp_path / 'out'), '--split', 'valid', '--scales',
             '2', '4'])
    out = capsys.readouterr().out
    assert '0801.png: 40x4 is too small for x4: its LR would be under 2 px a side' in out
    assert names(tmp_path / 'out' / 'DIV2K_valid_HR') == ['0802.png']
    assert read(tmp_path / 'out' / 'DIV2K_valid_LR_bicubic' / 'X4' / '0802x4.png').shape == (2, 10, 3)


def test_div2k_lmdb_without_any_sub_image_says_so(tmp_path, capsys):
    write(tmp_path / 'HR' / '0001.png', smooth_image(40, 40, 1))  # smaller than the crop: no sub-images
    prepare(['div2k', '--hr', str(tmp_path / 'HR'), '--out', str(tmp_path / 'out'), '--scales', '4', '--lmdb'])
    out = capsys.readouterr().out
    assert 'no sub-images' in out and 'No sub-images were made (every image was skipped): no LMDB built.' in out
    assert not list((tmp_path / 'out').glob('*.lmdb'))


def test_div2k_sub_images_lr_and_lmdb_read_by_paired_image_dataset(tmp_path, capsys):
    hr = smooth_image(77, 101, 1)  # mod-4 crop: 76x100
    write(tmp_path / 'DIV2K_train_HR' / '0001.png', hr)
    write(tmp_path / 'DIV2K_train_HR' / '0002.png', smooth_image(40, 48, 2))
    write(tmp_path / 'DIV2K_train_HR' / '0003.png', smooth_image(20, 28, 3))  # smaller than the crop size
    out = tmp_path / 'DIV2K'
    args = ['div2k', '--hr', str(tmp_path / 'DIV2K_train_HR'), '--out', str(out), '--scales', '2', '4',
            '--crop-size', '24', '--step', '16', '--lmdb', '--workers', '2']
    prepare(args)
    cropped = hr[:76, :100]
    np.testing.assert_array_equal(read(out / 'DIV2K_train_HR' / '0001.png'), cropped)
    lr4 = read(out / 'DIV2K_train_LR_bicubic' / 'X4' / '0001x4.png')
    np.testing.assert_array_equal(lr4, matlab_x1(cropped, 4))
    assert read(out / 'DIV2K_train_LR_bicubic' / 'X2' / '0002x2.png').shape == (20, 24, 3)
    # 76 high: rows at 0, 16, 32, 48 and a last one flush with the border at 52; 100 wide: 0..64 and 76
    subs = names(out / 'DIV2K_train_HR_sub')
    assert len([s for s in subs if s.startswith('0001_')]) == 5 * 6
    assert len([s for s in subs if s.startswith('0002_')]) == 2 * 3
    assert not [s for s in subs if s.startswith('0003_')]
    for scale in (2, 4):
        assert names(out / 'DIV2K_train_LR_bicubic' / f'X{scale}_sub') == subs
    np.testing.assert_array_equal(read(out / 'DIV2K_train_HR_sub' / '0001_s030.png'), cropped[52:76, 76:100])
    np.testing.assert_array_equal(read(out / 'DIV2K_train_LR_bicubic' / 'X4_sub' / '0001_s030.png'),
                                  lr4[13:19, 19:25])
    assert 'smaller than --crop-size 24: no sub-images: 0003.png' in capsys.readouterr().out
    prepare(args)  # a re-run: everything complete, and the image without sub-images is still named
    assert 'smaller than --crop-size 24: no sub-images: 0003.png' in capsys.readouterr().out

    dataset = PairedImageDataset({
        'name': 'div2k', 'phase': 'val', 'scale': 4, 'filename_tmpl': '{}', 'io_backend': {'type': 'lmdb'},
        'dataroot_gt': str(out / 'DIV2K_train_HR_sub.lmdb'),
        'dataroot_lq': str(out / 'DIV2K_train_LR_bicubic_X4_sub.lmdb')})
    assert len(dataset) == len(subs)
    item = dataset[[os.path.splitext(s)[0] for s in sorted(subs)].index('0001_s030')]
    assert item['lq_path'] == '0001_s030' and tuple(item['gt'].shape) == (3, 24, 24)
    gt = np.round(item['gt'].numpy().transpose(1, 2, 0)[..., ::-1] * 255)  # RGB [0,1] -> BGR uint8
    np.testing.assert_array_equal(gt, cropped[52:76, 76:100])

    prepare(args)
    assert 'DIV2K_train_HR_sub.lmdb: up to date' in capsys.readouterr().out


def test_div2k_crop_size_must_be_a_multiple_of_every_scale(tmp_path, capsys):
    write(tmp_path / 'in' / '0001.png', smooth_image(48, 48))
    with pytest.raises(SystemExit) as exit_info:
        prepare(['div2k', '--hr', str(tmp_path / 'in'), '--out', str(tmp_path / 'out'), '--scales', '3',
                 '--crop-size', '24', '--step', '16'])
    assert exit_info.value.code == 2
    assert '--crop-size 24 and --step 16 must be multiples of every scale' in capsys.readouterr().err


def test_div8k_makes_test2k_4k_8k(tmp_path, capsys):
    originals = {1201: smooth_image(50, 66, 1), 1301: smooth_image(36, 42, 2), 1401: smooth_image(22, 30, 3)}
    for number, img in originals.items():
        write(tmp_path / 'DIV8K' / f'{number}.png', img)
    write(tmp_path / 'DIV8K' / '0001.png', smooth_image(20, 20, 4))
    out = tmp_path / 'datasets'
    prepare(['div8k', '--hr', str(tmp_path / 'DIV8K'), '--out', str(out), '--workers', '2'])
    expected = {'Test2K': (1201, (12, 16), (3, 4)), 'Test4K': (1301, (16, 20), (4, 5)),
                'Test8K': (1401, (20, 28), (5, 7))}
    for test_set, (number, hr_size, lr_size) in expected.items():
        assert names(out / test_set / 'HR') == names(out / test_set / 'LR_bicubic' / 'X4') == [f'{number}.png']
        assert read(out / test_set / 'HR' / f'{number}.png').shape[:2] == hr_size
        assert read(out / test_set / 'LR_bicubic' / 'X4' / f'{number}.png').shape[:2] == lr_size
    # Test2K: the original cropped to a multiple of 16, then x1/4
    np.testing.assert_array_equal(read(out / 'Test2K' / 'HR' / '1201.png'), matlab_x1(originals[1201][:48, :64], 4))
    np.testing.assert_array_equal(read(out / 'Test8K' / 'HR' / '1401.png'), originals[1401][:20, :28])
    assert 'ignoring 1 images outside 1201-1500: 0001.png' in capsys.readouterr().out


def refused(args: List[str], capsys) -> str:
    """``basicsr prepare ARGS`` must exit 2; its message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        prepare(args + ['--workers', '1'])
    assert exit_info.value.code == 2
    return ' '.join(capsys.readouterr().err.split())


def test_rerun_with_other_settings_or_another_set_of_the_same_names_is_refused(tmp_path, capsys):
    """Existing outputs are kept, so a re-run that would make them differently must not pass them as complete: the
    official LR instead of the computed one, other sub-image grids, another set's images of the same names."""
    write(tmp_path / 'a' / 'im_1.png', smooth_image(32, 32, 1))
    write(tmp_path / 'b' / 'im_1.png', smooth_image(32, 32, 2))
    write(tmp_path / 'lr' / 'im_1.png', smooth_image(8, 8, 3))
    out = str(tmp_path / 'out')
    bench = ['benchmark', '--hr', str(tmp_path / 'a'), '--out', out, '--scale', '4']
    prepare(bench + ['--workers', '1'])
    lr_before = read(tmp_path / 'out' / 'LR_bicubic' / 'X4' / 'im_1.png')
    message = refused(bench + ['--lr-dir', str(tmp_path / 'lr')], capsys)
    assert f"holds 1 output of '{tmp_path / 'a'}' made with LR x4 'bicubic' (HR/im_1.png); this run asks for " \
           f"LR x4 '{tmp_path / 'lr'}'" in message
    np.testing.assert_array_equal(read(tmp_path / 'out' / 'LR_bicubic' / 'X4' / 'im_1.png'), lr_before)
    assert "made with prefix '' (HR/im_1.png); this run asks for prefix 'a_'" in refused(bench + ['--prefix', 'a_'],
                                                                                         capsys)
    message = refused(['benchmark', '--hr', str(tmp_path / 'b'), '--out', out, '--scale', '4'], capsys)
    assert f"already holds 1 output of the same names made from '{tmp_path / 'a'}' (HR/im_1.png)" in message
    assert 'own --prefix' in message
    prepare(['benchmark', '--hr', str(tmp_path / 'b'), '--out', out, '--scale', '4', '--prefix', 'b_'])
    assert names(tmp_path / 'out' / 'HR') == ['b_im_1.png', 'im_1.png']
    for folder in ('HR', 'LR_bicubic'):  # the files are gone: the record no longer stands in the way
        shutil.rmtree(tmp_path / 'out' / folder)
    prepare(bench + ['--lr-dir', str(tmp_path / 'lr')])
    np.testing.assert_array_equal(read(tmp_path / 'out' / 'LR_bicubic' / 'X4' / 'im_1.png'),
                                  read(tmp_path / 'lr' / 'im_1.png'))

    write(tmp_path / 'div2k' / '0001.png', smooth_image(64, 64, 4))
    write(tmp_path / 'flickr' / '0001f.png', smooth_image(64, 64, 5))
    div2k = ['div2k', '--hr', str(tmp_path / 'div2k'), '--out', str(tmp_path / 'd'), '--scales', '4']
    prepare(div2k + ['--crop-size', '32', '--step', '16'])
    message = refused(div2k + ['--crop-size', '16', '--step', '16'], capsys)
    assert "made with crop_size 32 (DIV2K_train_HR/0001.png); this run asks for crop_size 16" in message
    flickr = ['div2k', '--hr', str(tmp_path / 'flickr'), '--out', str(tmp_path / 'd'), '--scales', '4']
    assert 'crop_size 32' in refused(flickr + ['--crop-size', '16', '--step', '16'], capsys)  # shared sub-images
    prepare(flickr + ['--crop-size', '32', '--step', '16'])


def test_in_place_div2k_continues_the_record_of_the_runs_that_made_its_input(tmp_path, capsys):
    """docs/datasets.md: a later run may take the prepared DIV2K_<split>_HR as its input (to add a scale), also when
    two sets (DIV2K, Flickr2K) made it; each set's files stay its own."""
    write(tmp_path / 'div2k' / '0801.png', smooth_image(48, 48, 1))
    write(tmp_path / 'flickr' / '0001f.png', smooth_image(48, 48, 2))
    out = tmp_path / 'D'
    for folder in ('div2k', 'flickr'):
        prepare(['div2k', '--hr', str(tmp_path / folder), '--out', str(out), '--split', 'valid', '--scales', '4'])
    prepare(['div2k', '--hr', str(out / 'DIV2K_valid_HR'), '--out', str(out), '--split', 'valid', '--scales', '2',
             '4'])
    assert names(out / 'DIV2K_valid_LR_bicubic' / 'X2') == ['0001fx2.png', '0801x2.png']
    prepare(['div2k', '--hr', str(tmp_path / 'flickr'), '--out', str(out), '--split', 'valid', '--scales', '4'])
    write(tmp_path / 'other' / '0801.png', smooth_image(48, 48, 3))  # a third set taking DIV2K's name
    message = refused(['div2k', '--hr', str(tmp_path / 'other'), '--out', str(out), '--split', 'valid', '--scales',
                       '4'], capsys)
    assert f"already holds 1 output of the same names made from '{tmp_path / 'div2k'}' " \
           '(DIV2K_valid_HR/0801.png)' in message


def test_runs_started_together_keep_each_others_record(tmp_path):
    """Two inputs claim before either has written a file (the per-set loop run with '&'): both entries stay, so a
    third input of the same names as the first is refused once the first has written its file."""
    out = tmp_path / 'out'
    for source in ('a', 'b'):
        (tmp_path / source).mkdir()
        claim_outputs(str(out), 'benchmark', str(tmp_path / source), {}, [f'HR/{source}.png'])
    assert [run['source'] for run in json.loads((out / RECORD_NAME).read_text())['runs']] == \
        [str(tmp_path / 'a'), str(tmp_path / 'b')]
    write(out / 'HR' / 'a.png', smooth_image(8, 8))
    with pytest.raises(InputError, match="already holds 1 output of the same names made from '.*/a' "):
        claim_outputs(str(out), 'benchmark', str(tmp_path / 'b'), {}, ['HR/a.png'])


def test_existing_outputs_of_another_crop_are_skipped_by_name(tmp_path, capsys):
    """A mod-4 HR met by a run at x2 (or x3 for div2k) is not the crop that run makes: the image is skipped and
    named; images whose crops agree get the new scale."""
    write(tmp_path / 'in' / 'odd.png', smooth_image(34, 38, 1))  # mod 4: 32x36, mod 2: 34x38
    write(tmp_path / 'in' / 'even.png', smooth_image(32, 36, 2))
    out = tmp_path / 'out'
    prepare(['benchmark', '--hr', str(tmp_path / 'in'), '--out', str(out), '--scale', '4'])
    capsys.readouterr()
    prepare(['benchmark', '--hr', str(tmp_path / 'in'), '--out', str(out), '--scale', '2'])
    summary = capsys.readouterr().out
    assert f'odd.png: odd.png in {out / "HR"} (made by an earlier run) is 36x32, but this run makes its mod-2 HR ' \
           'crop 38x34' in summary
    assert names(out / 'LR_bicubic' / 'X2') == ['even.png']

    write(tmp_path / 'div2k' / '0001.png', smooth_image(40, 44, 3))  # mod 4: 40x44, mod 12: 36x36
    args = ['div2k', '--hr', str(tmp_path / 'div2k'), '--out', str(tmp_path / 'd'), '--split', 'valid']
    prepare(args + ['--scales', '4'])
    capsys.readouterr()
    prepare(args + ['--scales', '3', '4'])
    assert 'is 44x40, but this run makes its HR (mod-12 crop) 36x36' in capsys.readouterr().out
    assert not (tmp_path / 'd' / 'DIV2K_valid_LR_bicubic' / 'X3').exists()


def test_output_names_and_folders_that_would_go_wrong_are_refused(tmp_path, capsys):
    write(tmp_path / 'in' / 'a.png', smooth_image(32, 32, 1))
    bench = ['benchmark', '--hr', str(tmp_path / 'in'), '--scale', '4']
    assert 'holds a path separator' in refused(bench + ['--out', str(tmp_path / 'o1'), '--prefix', 'T91/'], capsys)
    assert '--min-size must be >= 0, got -5' in refused(bench + ['--out', str(tmp_path / 'o1'), '--min-size', '-5'],
                                                        capsys)
    (tmp_path / 'o2').mkdir()
    (tmp_path / 'o2' / 'HR').write_text('a file where the HR folder goes')
    assert f"output folder '{tmp_path / 'o2' / 'HR'}' cannot be used ({tmp_path / 'o2' / 'HR'} is a file); move that " \
           'file' in \
        refused(bench + ['--out', str(tmp_path / 'o2')], capsys)
    write(tmp_path / 'div8k' / '1205.png', smooth_image(32, 32, 2))
    write(tmp_path / 'div8k' / '1205_copy.png', smooth_image(32, 32, 3))
    message = refused(['div8k', '--hr', str(tmp_path / 'div8k'), '--out', str(tmp_path / 'o3')], capsys)
    assert 'have the same DIV8K number (1205.png, 1205_copy.png)' in message
    assert not (tmp_path / 'o1').exists() and not (tmp_path / 'o3').exists()


def test_in_place_div2k_hr_is_not_left_unconverted(tmp_path, capsys):
    """--out making DIV2K_train_HR the input folder: that folder is not rewritten, so an input that needs converting
    (16-bit here) is skipped and named instead of getting 8-bit LR next to a 16-bit HR."""
    hr = tmp_path / 'd' / 'DIV2K_valid_HR'
    write(hr / '0801.png', smooth_image(32, 32, 1))
    write(hr / '0802.png', smooth_image(32, 32, 2, dtype=np.uint16))
    (hr / '0803.png').write_bytes(b'')
    prepare(['div2k', '--hr', str(hr), '--out', str(tmp_path / 'd'), '--split', 'valid', '--scales', '4'])
    summary = capsys.readouterr().out
    assert '0802.png: 32x32 needs 16-bit converted to 8-bit, but the HR output folder is the input folder' in summary
    assert '0803.png: the file is empty (0 bytes)' in summary
    assert names(tmp_path / 'd' / 'DIV2K_valid_LR_bicubic' / 'X4') == ['0801x4.png']


def _report_inherited_state(task: str) -> JobResult:
    """A worker that reports whether it inherited the parent's run-time state (see the test below)."""
    return JobResult(source=task, notes=[str(getattr(jobs, 'set_in_the_parent', False))])


def test_workers_do_not_inherit_the_parents_threads(monkeypatch):
    """--workers start from a clean process, not a fork of the caller: a fork copies the caller's OpenMP and OpenCV
    thread pools without their threads, and workers forked from the test process hung once at 0 % CPU in a full
    suite run. State the caller set at run time is what a fork would carry over."""
    monkeypatch.setattr(jobs, 'set_in_the_parent', True, raising=False)
    results = run_jobs(_report_inherited_state, ['a', 'b', 'c'], workers=2, desc='check')
    assert [r.source for r in results] == ['a', 'b', 'c']
    assert all(r.notes == ['False'] for r in results)
