"""`basicsr bench`: one tiny end-to-end run through the CLI (tiny AdaFormer + tiny EDSR, 16x16, random weights),
its error for a missing weights file, and the pieces whose numbers can be checked by hand. No timing assertions."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from adaformer_arch import bench
from adaformer_arch.archs.adaformer_arch import AdaFormer, pad_to_multiple
from adaformer_arch.benchmark.macs import METHOD_ADAFORMER, METHOD_HOOKS, _profile_with_hooks, profile
from adaformer_arch.benchmark.memory import cpu_peak_memory
from adaformer_arch.benchmark.networks import bare, build
from adaformer_arch.benchmark.options import BenchError, NetworkSpec, load_options, parse_size
from adaformer_arch.benchmark.runner import round_order
from adaformer_arch.benchmark.tradeoff import dataset_pairs, sweep
from basicsr.metrics import calculate_psnr
from basicsr.utils import img2tensor, tensor2img
from helpers import TINY_NET, make_pairs, run_cli, set_confidence_bias, write_yaml

TINY_EDSR = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2, img_range=1.)
NAMES = ['AdaFormer tiny', 'EDSR tiny']
RUNS, WARMUP = 2, 1


def bench_options(weights: str = 'random') -> dict:
    return {
        'scale': 2, 'sizes': ['16x16'], 'runs': RUNS, 'warmup': WARMUP,
        'networks': [
            {'name': NAMES[0], 'network_g': dict(TINY_NET), 'weights': weights, 'attributes': {'halt_eps': 0.3}},
            {'name': NAMES[1], 'network_g': dict(TINY_EDSR)},
        ],
        'train_throughput': {'networks': NAMES, 'batch_size': 2, 'lr_patch': 8, 'steps': 1, 'warmup': 0,
                             'autocast': ['bfloat16']},
        'tradeoff': {'network': NAMES[0], 'halt_eps': [0.0, 0.5]},
    }


@pytest.fixture(scope='module')
def bench_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('bench')
    data = make_pairs(root / 'data', count=2, size=16)
    opt = write_yaml(root / 'bench.yml', bench_options(weights=str(root / 'not_trained_yet.pth')))
    out = root / 'out'
    proc = run_cli(['bench', '-opt', str(opt), '--random-weights', '--gemm-size', '64', '--threads', '1',
                    '--out', str(out), '--train-throughput', '--train-batch', '3', '--dataset-hr', str(data / 'HR'),
                    '--dataset-lr', str(data / 'LR')], cwd=root)
    return out, json.loads((out / 'bench.json').read_text()), proc


def test_json_has_every_network_and_size_with_consistent_numbers(bench_run):
    _, result, _ = bench_run
    for key in ('command', 'machine', 'settings', 'gemm', 'memory_method', 'networks', 'results', 'schedule',
                'train_throughput', 'tradeoff'):
        assert key in result, key
    assert '--random-weights' in result['command'] and result['command'].startswith('basicsr bench -opt ')
    assert result['settings']['threads'] == 1 and result['settings']['allocator']['mode'] == 'tuned'
    assert result['gemm']['gflops_best'] > 0
    rows = {(r['network'], r['size']): r for r in result['results']}
    assert set(rows) == {(name, '16x16') for name in NAMES}
    for row in rows.values():
        assert row['macs'] > 0
        assert len(row['latency_ms']['runs_ms']) == RUNS
        assert 0 < row['latency_ms']['min'] <= row['latency_ms']['median'] <= row['latency_ms']['max']
        assert row['gflops_achieved'] == pytest.approx(2 * row['macs'] / row['latency_ms']['median'] / 1e6)
        assert row['peak_memory_bytes'] is not None and row['peak_memory_bytes'] >= 0
        assert row['random_weights'] is True and row['params'] > 0
    ada, edsr = rows[(NAMES[0], '16x16')], rows[(NAMES[1], '16x16')]
    assert ada['macs_method'] == METHOD_ADAFORMER and edsr['macs_method'] == METHOD_HOOKS
    assert 0.0 <= ada['sparsity'] <= 1.0 and len(ada['sparsity_per_block']) == TINY_NET['depth']
    assert edsr['sparsity'] is None
    assert result['networks'][0]['attributes'] == {'halt_eps': 0.3} and result['networks'][0]['weights'] == 'random'


def test_interleaving_order_is_recorded(bench_run):
    _, result, _ = bench_run
    schedule = result['schedule']['16x16']
    assert schedule['warmup_rounds'] == WARMUP
    assert len(schedule['rounds']) == WARMUP + RUNS
    for r, order in enumerate(schedule['rounds']):
        assert sorted(order) == sorted(NAMES)
        assert order[0] == NAMES[r % len(NAMES)]  # rotated by one each round


def test_train_throughput_and_tradeoff_recorded(bench_run):
    _, result, _ = bench_run
    train = result['train_throughput']['networks']
    assert set(train) == set(NAMES) | {f'{n} [bfloat16 autocast]' for n in NAMES}
    assert all(v['iters_per_s'] > 0 for v in train.values())
    assert result['train_throughput']['random_weights'] == {name: True for name in train}
    assert result['train_throughput']['batch_size'] == 3 and result['train_throughput']['lr_patch'] == 8  # flag, file
    assert '--train-batch 3 --train-patch 8' in result['command']
    tradeoff = result['tradeoff']
    assert [v['halt_eps'] for v in tradeoff['variants']] == [0.0, 0.5]
    assert tradeoff['num_images'] == 2
    assert all(len(v['images']) == 2 and v['psnr_y'] > 0 for v in tradeoff['variants'])


def test_tradeoff_sweep_runs_each_halt_eps(tmp_path: Path):
    """The sweep sets each halt_eps before its forwards: with an estimator that halts some tokens, sparsity grows with
    halt_eps, and each variant's PSNR is that of the network run directly at its halt_eps (and it is restored)."""
    data = make_pairs(tmp_path / 'data', count=2, size=16)
    pairs = dataset_pairs(str(data / 'HR'), str(data / 'LR'), 2)
    torch.manual_seed(0)
    net = build(NetworkSpec('a', dict(TINY_NET)), 2, True, 'test')
    set_confidence_bias(bare(net), 2.0)
    halt_eps = [0.0, 0.03, 0.2, 0.6]
    result = sweep(net, halt_eps, {}, pairs, 2, torch.device('cpu'), step=lambda: None)
    assert bare(net).halt_eps == 0.05
    variants = result['variants']
    assert [v['halt_eps'] for v in variants] == halt_eps
    sparsity = [v['sparsity_mean'] for v in variants]
    assert sparsity == sorted(sparsity) and sparsity[0] < sparsity[-1], sparsity
    for variant in variants:
        bare(net).halt_eps = variant['halt_eps']
        expected = []
        for pair in pairs:
            lq, gt = cv2.imread(pair['lq_path']), cv2.imread(pair['gt_path'])
            with torch.no_grad():
                sr = tensor2img(net(img2tensor(lq.astype(np.float32) / 255.0, bgr2rgb=True)[None]))
            expected.append(calculate_psnr(sr, gt, crop_border=2, test_y_channel=True))
        assert [r['psnr_y'] for r in variant['images']] == pytest.approx(expected, rel=1e-9), variant['halt_eps']
        assert variant['psnr_y'] == pytest.approx(np.mean(expected), rel=1e-9)
    assert len({v['psnr_y'] for v in variants}) > 1  # halting changed the output: the PSNR check tells them apart


def test_a_reference_that_is_the_swept_network_runs_at_its_own_halt_eps(tmp_path: Path):
    """The swept network listed among the references too: every image of the reference row runs at the halt_eps the
    network had (not at whichever sweep value ran before it in the rotated order)."""
    data = make_pairs(tmp_path / 'data', count=3, size=16)
    pairs = dataset_pairs(str(data / 'HR'), str(data / 'LR'), 2)
    torch.manual_seed(0)
    net = build(NetworkSpec('a', dict(TINY_NET)), 2, True, 'test')
    set_confidence_bias(bare(net), 2.0)
    bare(net).halt_eps = 0.0
    result = sweep(net, [0.0, 0.6], {'itself': net}, pairs, 2, torch.device('cpu'), step=lambda: None)
    at_zero, at_high, itself = result['variants']
    assert (itself['halt_eps'], itself['reference_halt_eps']) == (None, 0.0)
    assert [r['sparsity'] for r in itself['images']] == [r['sparsity'] for r in at_zero['images']]
    assert [r['psnr_y'] for r in itself['images']] == pytest.approx([r['psnr_y'] for r in at_zero['images']])
    assert at_high['sparsity_mean'] > at_zero['sparsity_mean']  # the two settings differ: the check can fail


def test_cpu_peak_memory_measures_what_a_forward_allocates():
    """The meter of peak_memory_bytes: a x4 Bicubic forward whose output alone is 3 x 2560 x 2560 float32 (75 MiB)
    reads at least 64 MiB; a 16x16 one (a 0.2 MiB output) far less."""
    spec = NetworkSpec('bicubic', {'type': 'Bicubic', 'upscale': 4})
    big = cpu_peak_memory(spec, 4, True, 'test', torch.rand(1, 3, 640, 640), 1, 'tuned')
    if big is None:
        pytest.skip('no /proc/self/clear_refs: the CPU meter is not available here')
    small = cpu_peak_memory(spec, 4, True, 'test', torch.rand(1, 3, 16, 16), 1, 'tuned')
    assert big >= 64 * 2**20, big
    assert small < 16 * 2**20, small


def test_markdown_table_and_charts(bench_run):
    out, _, proc = bench_run
    md = (out / 'bench.md').read_text()
    for name in NAMES:
        assert any(line.startswith(f'| {name} * | 16x16 |') for line in md.splitlines()), name
    assert '| Network | LR size | Latency ms (median) |' in md
    assert '## Training throughput' in md and '## PSNR vs latency' in md
    assert 'Reproduce: basicsr bench' in proc.stdout and '| Network |' in proc.stdout
    for png in ('bench.png', 'tradeoff.png'):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100, png
        assert img.min() < 100  # something was drawn on the white canvas


def test_missing_weights_file_is_a_clear_error(tmp_path: Path, capsys):
    missing = tmp_path / 'AdaFormer_missing.pth'
    opt = write_yaml(tmp_path / 'bench.yml', bench_options(weights=str(missing)))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['-opt', str(opt), '--out', str(tmp_path / 'out')])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith('basicsr bench: error:')
    assert f'weights file {missing} not found' in message and '--random-weights' in message
    assert "network 'AdaFormer tiny'" in message
    assert not (tmp_path / 'out').exists()


def test_weights_are_loaded_from_params_ema(tmp_path: Path):
    source = build(NetworkSpec('e', dict(TINY_EDSR)), 2, False, 'test')
    torch.save({'params': {}, 'params_ema': source.state_dict()}, tmp_path / 'w.pth')
    loaded = build(NetworkSpec('e', dict(TINY_EDSR), weights=str(tmp_path / 'w.pth')), 2, False, 'test')
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(BenchError, match='no attribute'):
        build(NetworkSpec('e', dict(TINY_EDSR), attributes={'halt_eps': 0.1}), 2, False, 'test')
    with pytest.raises(BenchError, match=r"w.pth has no 'param_ema' entry \(it has: params, params_ema\)"):
        build(NetworkSpec('e', dict(TINY_EDSR), weights=str(tmp_path / 'w.pth'), param_key='param_ema'), 2, False,
              'test')  # a misspelt key: BasicSR's load_network would take params without a word


def test_adaformer_padded_channels_last_in_bfloat16():
    """An AdaFormer entry with pad_to, channels_last and dtype: bfloat16 runs behind an InputAdapter (profile too),
    in bfloat16 weights, with a float32 output close to the float32 network's and the same MACs."""
    lq = torch.rand(1, 3, 13, 18)
    plain = build(NetworkSpec('a', dict(TINY_NET)), 2, True, 'test')
    torch.manual_seed(0)
    adapted = build(NetworkSpec('b', dict(TINY_NET), pad_to=8, channels_last=True, dtype='bfloat16'), 2, True, 'test')
    adapted.net.load_state_dict({k: v.to(torch.bfloat16) for k, v in plain.state_dict().items()})
    assert {p.dtype for p in adapted.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        expected, got = plain(lq), adapted(lq)
    assert got.dtype == torch.float32 and got.shape == expected.shape == (1, 3, 26, 36)
    assert 0 < (got - expected).abs().mean() < 0.01
    plain_profile, adapted_profile = profile(plain, pad_to_multiple(lq, 8)), profile(adapted, lq)
    assert adapted_profile.macs == plain_profile.macs and adapted_profile.output_shape == [1, 3, 26, 36]


def test_swinir_entry_in_bfloat16_runs_under_autocast():
    swinir = dict(type='SwinIR', upscale=2, in_chans=3, img_size=8, window_size=4, img_range=1., depths=[1],
                  embed_dim=8, num_heads=[2], mlp_ratio=2, upsampler='pixelshuffledirect', resi_connection='1conv')
    plain = build(NetworkSpec('a', dict(swinir), pad_to=4), 2, True, 'test')
    low = build(NetworkSpec('b', dict(swinir), pad_to=4, dtype='bfloat16'), 2, True, 'test')
    bare(low).load_state_dict(bare(plain).state_dict())
    lq = torch.rand(1, 3, 10, 7)
    with torch.no_grad():
        expected, got = plain(lq), low(lq)
    assert got.dtype == torch.float32 and 0 < (got - expected).abs().mean() < 0.01
    assert profile(low, lq).macs == profile(plain, lq).macs > 0


def test_dtype_of_an_entry_is_checked(tmp_path: Path):
    opt = bench_options()
    opt['networks'][1]['dtype'] = 'bf16'
    with pytest.raises(BenchError, match=r"networks\[1\] \(EDSR tiny\): dtype must be one of float32, bfloat16, "):
        load_options(str(write_yaml(tmp_path / 'bad.yml', opt)))
    opt['networks'][1]['dtype'] = 'bfloat16'  # listed in train_throughput, which measures float32 training
    with pytest.raises(BenchError, match='train_throughput.networks: EDSR tiny is not float32'):
        load_options(str(write_yaml(tmp_path / 'train.yml', opt)))
    opt['networks'][1]['dtype'] = 'float32'
    opt['train_throughput']['autocast'] = ['float16']
    with pytest.raises(BenchError, match='train_throughput.autocast: float16 training needs loss scaling'):
        load_options(str(write_yaml(tmp_path / 'autocast.yml', opt)))
    del opt['train_throughput']
    opt['networks'].append({'name': 'Bicubic', 'network_g': {'type': 'Bicubic'}, 'dtype': 'bfloat16'})
    with pytest.raises(BenchError, match=r'\(Bicubic\): Bicubic has no weights and always runs in float32'):
        load_options(str(write_yaml(tmp_path / 'bicubic.yml', opt)))
    del opt['networks'][-1]
    opt['networks'][1]['dtype'] = 'float16'
    args = bench.parse_args(['-opt', str(write_yaml(tmp_path / 'half.yml', opt)), '--device', 'cpu'])
    with pytest.raises(BenchError, match="network 'EDSR tiny': dtype float16: float16 is for GPUs"):
        bench.resolve(args)


def test_hook_macs_of_a_conv_and_a_linear():
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Flatten(2), nn.Linear(7 * 6, 4))
    macs = _profile_with_hooks(net, torch.rand(1, 3, 7, 6)).macs
    assert macs == 7 * 6 * 5 * 3 * 9 + 5 * 4 * 42


class _FunctionalConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(3, 3, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight, padding=1)


def test_a_network_whose_weights_no_hook_sees_is_not_counted():
    """0 MACs would read as 'free'; the method says the count is missing (ECBSR's inference path calls F.conv2d)."""
    result = _profile_with_hooks(_FunctionalConv(), torch.rand(1, 3, 4, 4))
    assert result.macs == 0 and result.macs_method.startswith('not counted: no Conv2d or Linear module ran')
    assert _profile_with_hooks(nn.Upsample(scale_factor=2), torch.rand(1, 3, 4, 4)).macs_method == METHOD_HOOKS


@pytest.mark.parametrize('halting', ['little', 'all after block 1'])
def test_adaformer_macs_are_those_of_the_plain_forward(halting):
    """aux['macs'] of return_aux=True counts one more estimator call than the plain forward runs (with early exit):
    the hook counts of the two forwards must differ by exactly what the profile subtracts. When every token has
    halted, that last call computes no window (a full-map estimator's MACs subtracted would undercount)."""
    torch.manual_seed(0)
    net = AdaFormer(**{k: v for k, v in TINY_NET.items() if k != 'type'}).eval()
    lq = torch.rand(1, 3, 12, 8) if halting == 'little' else torch.rand(1, 3, 64, 64)
    if halting != 'little':
        set_confidence_bias(net, 10.0)

    class WithAux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x, return_aux=True)[0]

    with torch.no_grad():
        _, aux = net(lq, return_aux=True)
        extra = _profile_with_hooks(WithAux(), lq).macs - _profile_with_hooks(net, lq).macs
    if halting == 'little':
        assert extra > 0
    else:
        assert aux['global_halted'][-1].all() and extra == 0
    assert aux['macs'] - profile(net, lq).macs == extra


def test_sizes_and_round_order():
    assert parse_size('480x270') == (480, 270)
    with pytest.raises(BenchError, match='WIDTHxHEIGHT'):
        parse_size('480')
    assert [round_order(['a', 'b', 'c'], r) for r in range(4)] == [
        ['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b'], ['a', 'b', 'c']]


@pytest.mark.parametrize('key,value', [('runs', 0), ('runs', True), ('warmup', -1), ('scale', 2.0)])
def test_counts_that_are_not_whole_numbers_are_refused(tmp_path: Path, key: str, value):
    opt = {'networks': [{'name': 'Bicubic', 'network_g': {'type': 'Bicubic'}}], key: value}
    (tmp_path / 'bench.yml').write_text(yaml.safe_dump(opt))
    minimum = 0 if key == 'warmup' else 1
    with pytest.raises(BenchError, match=rf'bench.yml: {key} must be an integer >= {minimum}, got {value!r}$'):
        load_options(str(tmp_path / 'bench.yml'))


@pytest.mark.parametrize('path', sorted((Path(__file__).parents[1] / 'options').glob('bench_*.yml')),
                         ids=lambda p: p.name)
def test_shipped_bench_option_files_load(path: Path):
    opts = load_options(str(path))
    assert opts.networks and opts.sizes


def test_dataset_pairs_of_the_wrong_scale_are_refused_before_anything_runs(tmp_path: Path):
    """A sweep dataset whose HR images are not scale x LR used to fail after every latency had been measured."""
    for folder, (height, width) in (('HR', (32, 33)), ('LR', (8, 8)), ('LR_same', (32, 33))):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / 'a.png'), np.zeros((height, width, 3), np.uint8))
    assert len(dataset_pairs(str(tmp_path / 'HR'), str(tmp_path / 'LR'), 4)) == 1  # a border under 4 px is fine
    with pytest.raises(BenchError, match=r'is 32x33 \(HxW\) but its LR .* is 32x33: HR must be 4x the LR'):
        dataset_pairs(str(tmp_path / 'HR'), str(tmp_path / 'LR_same'), 4)


def test_random_weights_of_an_entry_do_not_depend_on_what_was_built_before():
    """The memory subprocess builds one entry alone, the benchmark process every entry in order: both must get the
    same random weights for it."""
    spec = NetworkSpec('a', dict(TINY_NET))
    alone = build(spec, 2, True, 'test').state_dict()
    torch.manual_seed(123)
    build(NetworkSpec('e', dict(TINY_EDSR)), 2, True, 'test')
    after_another = build(spec, 2, True, 'test').state_dict()
    assert all(torch.equal(alone[k], after_another[k]) for k in alone)


def test_outputs_of_a_rerun_without_tradeoff_and_an_infinite_psnr(bench_run, tmp_path: Path):
    """All outputs are rendered before any is written; a rerun into the same folder without a sweep removes the
    earlier tradeoff.png; an infinite PSNR (SR equal to HR) is null in a strict JSON and left out of the chart."""
    from adaformer_arch.benchmark.report import write_outputs

    out = tmp_path / 'out'
    out.mkdir()
    (out / 'tradeoff.png').write_bytes(b'from an earlier run')
    result = dict(bench_run[1], tradeoff=None)
    paths = write_outputs(result, str(out))
    assert sorted(Path(p).name for p in paths) == ['bench.json', 'bench.md', 'bench.png']
    assert not (out / 'tradeoff.png').exists()
    result['tradeoff'] = {'num_images': 1, 'lr': 'x', 'crop_border': 2, 'network_random_weights': True,
                          'skipped_references': [], 'variants': [
                              {'name': 'halt_eps 0', 'halt_eps': 0.0, 'psnr_y': 30.0, 'latency_ms_mean': 2.0,
                               'gmacs_mean': 0.1, 'sparsity_mean': 0.0},
                              {'name': 'Bicubic', 'halt_eps': None, 'psnr_y': float('inf'), 'latency_ms_mean': 1.0,
                               'gmacs_mean': 0.0, 'sparsity_mean': None}]}
    write_outputs(result, str(out))
    saved = json.loads((out / 'bench.json').read_text(), parse_constant=lambda c: pytest.fail(f'non-JSON {c}'))
    assert [v['psnr_y'] for v in saved['tradeoff']['variants']] == [30.0, None]
    assert cv2.imread(str(out / 'tradeoff.png')) is not None
    md = (out / 'bench.md').read_text()
    assert '| halt_eps 0 * | 30.000 |' in md and '| Bicubic | inf |' in md


def test_out_that_is_a_file_is_refused_before_anything_runs(tmp_path: Path, capsys):
    (tmp_path / 'afile').write_text('x')
    opt = write_yaml(tmp_path / 'bench.yml', bench_options())
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['-opt', str(opt), '--out', str(tmp_path / 'afile' / 'out'), '--threads', '1'])
    assert exit_info.value.code == 2
    assert f'--out {tmp_path}/afile/out cannot be used as the output folder ({tmp_path}/afile is a file)' in \
        capsys.readouterr().err


def test_a_network_without_parameters_in_train_throughput_is_refused(tmp_path: Path, capsys):
    opt = bench_options()
    opt['networks'].append({'name': 'Bic', 'network_g': {'type': 'Bicubic', 'upscale': 2}})
    opt['train_throughput']['networks'] = NAMES + ['Bic']
    path = write_yaml(tmp_path / 'bench.yml', opt)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['-opt', str(path), '--out', str(tmp_path / 'out'), '--threads', '1', '--train-throughput',
                    '--gemm-size', '8'])
    assert exit_info.value.code == 2
    assert 'train_throughput.networks: Bic has no parameters to train' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_pad_to_does_not_hide_a_network_of_another_scale():
    """An x2 network in an x4 bench, padded 16 -> 32: its 64x64 output cropped to 4 x 16 would pass the shape check."""
    net = build(NetworkSpec('e', dict(TINY_EDSR), pad_to=32), 4, True, 'test')
    with pytest.raises(BenchError, match='upsamples its padded 32x32 input to 64x64, not by the scale 4'):
        net(torch.rand(1, 3, 16, 16))


def test_a_padded_network_of_another_scale_is_named_in_the_error(tmp_path: Path, capsys):
    opt = bench_options()
    del opt['train_throughput'], opt['tradeoff']
    opt['networks'].append({'name': 'EDSR x3', 'network_g': dict(TINY_EDSR, upscale=3), 'pad_to': 8})
    path = write_yaml(tmp_path / 'bench.yml', opt)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['-opt', str(path), '--out', str(tmp_path / 'out'), '--threads', '1', '--gemm-size', '8'])
    assert exit_info.value.code == 2
    assert f"{path}: network 'EDSR x3': EDSR upsamples its padded 16x16 input to 48x48, not by the scale 2" in \
        capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('edit, message', [
    (lambda o: o.update(sizes='16x16'), "sizes must be a list, e.g. [16x16], got '16x16'"),
    (lambda o: o['tradeoff'].update(halt_eps=0.1), 'tradeoff.halt_eps must be a list, e.g. [0.1], got 0.1'),
    (lambda o: o['tradeoff'].update(halt_eps=['low']), "tradeoff.halt_eps must be a non-empty list of values in "
     "[0, 1), bad: ['low']"),
    (lambda o: o['tradeoff'].update(references='EDSR tiny'), "tradeoff.references must be a list"),
    (lambda o: o['tradeoff'].pop('network'), "tradeoff: missing key(s) ['network']"),
    (lambda o: o['train_throughput'].pop('networks'), "train_throughput: missing key(s) ['networks']"),
    (lambda o: o['train_throughput'].update(networks='EDSR tiny'), 'train_throughput.networks must be a list'),
    (lambda o: o.update(tradeoff=[1]), 'tradeoff must be a mapping of network, halt_eps, references, got [1]'),
    (lambda o: o['networks'][0].update(attributes=['halt_eps', 0.1]), 'attributes must be a mapping'),
    (lambda o: o['networks'][0].update(attributes={'halt_eps': 'high'}),
     "attributes.halt_eps: AdaFormer holds a float there (0.05), got 'high'"),
])
def test_values_of_the_wrong_kind_are_clear_errors(tmp_path: Path, capsys, edit, message):
    """Each gave a Python traceback (or a list read letter by letter: `sizes: 16x16` was 'bad size 1')."""
    opt = bench_options()
    edit(opt)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['-opt', str(write_yaml(tmp_path / 'b.yml', opt)), '--out', str(tmp_path / 'out'), '--threads',
                    '1', '--gemm-size', '8'])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith('basicsr bench: error:') and message in err, err


def test_ctrl_c_is_reported_once_and_the_measuring_child_ignores_it(tmp_path: Path, capsys, monkeypatch):
    """Ctrl-C reaches the whole process group: the memory child ignores it (no second traceback from the pool),
    and the bench reports it in one line with the shell's status 130, nothing written."""
    import signal

    from adaformer_arch.benchmark.memory import measuring_pool

    with measuring_pool() as pool:
        assert pool.apply(signal.getsignal, (signal.SIGINT,)) == signal.SIG_IGN

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, 'run', interrupted)
    path = write_yaml(tmp_path / 'bench.yml', bench_options())
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['-opt', str(path), '--out', str(tmp_path / 'out')])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == 'basicsr bench: interrupted (Ctrl-C) before any result was written'
    assert not (tmp_path / 'out').exists()


def test_a_network_failing_on_the_input_size_is_named_with_the_pad_to_hint(tmp_path: Path, capsys):
    """BasicSR's SwinIR does not pad to its window: without pad_to a 37x29 input fails inside it. One line naming the
    file, the entry and the size, with the way out, instead of SwinIR's traceback."""
    swinir = {'type': 'SwinIR', 'upscale': 2, 'in_chans': 3, 'img_size': 16, 'window_size': 8, 'img_range': 1.,
              'depths': [1], 'embed_dim': 12, 'num_heads': [2], 'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect',
              'resi_connection': '1conv'}
    opt = {'scale': 2, 'sizes': ['37x29'], 'runs': 1, 'warmup': 0,
           'networks': [{'name': 'SwinIR tiny', 'network_g': swinir}]}
    path = write_yaml(tmp_path / 'bench.yml', opt)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['-opt', str(path), '--out', str(tmp_path / 'out'), '--threads', '1', '--gemm-size', '8'])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and 'Traceback' not in err
    assert f"{path}: network 'SwinIR tiny' failed on a 37x29 input (RuntimeError: shape" in err
    assert 'needs pad_to: <window> in its entry' in err
    opt['networks'][0]['pad_to'] = 8
    bench.main(['-opt', str(write_yaml(path, opt)), '--out', str(tmp_path / 'out'), '--threads', '1',
                '--gemm-size', '8'])
    assert json.loads((tmp_path / 'out' / 'bench.json').read_text())['results'][0]['latency_ms']['median'] > 0
