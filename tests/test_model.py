"""AdaFormerModel: the total loss is L1 + alpha * L_USL, and what it logs."""
import importlib
import threading

import pytest
import torch
from torch import nn

import adaformer_arch  # noqa: F401
from adaformer_arch.losses.uncertainty_loss import UncertaintyLoss
from adaformer_arch.models.data_parallel import AuxDataParallel
from basicsr.archs import build_network
from basicsr.models import build_model

from helpers import TINY_NET, set_confidence_bias, train_options


@pytest.fixture
def model(tmp_path):
    opt = train_options(tmp_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path))
    opt['train']['uncertainty_opt']['loss_weight'] = 0.5
    opt['path'].update(experiments_root=str(tmp_path), models=str(tmp_path), training_states=str(tmp_path),
                       log=str(tmp_path), visualization=str(tmp_path))
    torch.manual_seed(0)
    return build_model(opt)


def _one_batch(side: int = 8):
    torch.manual_seed(1)
    return {'lq': torch.rand(2, 3, side, side), 'gt': torch.rand(2, 3, 2 * side, 2 * side),
            'lq_path': ['a.png', 'b.png']}


@pytest.mark.parametrize('side', [8, 6], ids=['8x8', '6x6 padded to 8x8'])
def test_total_loss_is_l1_plus_alpha_usl(model, monkeypatch, side):
    """The logged losses and their sum, recomputed from the same weights. The estimator is set so that some tokens
    halt in block 2 (none can in block 1) and the logged sparsity is the fraction of halted tokens. A 6x6 LR input
    is padded to 8x8 (window 4): the confidence maps are 8x8 and L_USL must crop them to the 6x6 LR size before
    upsampling them to the 12x12 HR size."""
    set_confidence_bias(model.net_g, 2.0)
    batch = _one_batch(side)
    lq, gt = batch['lq'], batch['gt']
    model.feed_data(batch)
    totals = []
    original_backward = torch.Tensor.backward

    def record_backward(tensor, *args, **kwargs):
        totals.append(tensor.item())
        return original_backward(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'backward', record_backward)
    monkeypatch.setattr(model.optimizer_g, 'step', lambda: None)  # keep the weights to recompute the losses
    model.optimize_parameters(1)
    log = model.get_current_log()

    net = model.net_g
    sr, aux = net(lq, return_aux=True)
    assert aux['confidences'][0].shape[-2:] == (8, 8)
    l_pix = (sr - gt).abs().mean().item()
    l_usl = UncertaintyLoss(loss_weight=0.5)(aux['confidences'], sr, gt, lq_size=(side, side)).item()
    assert log['l_pix'] == pytest.approx(l_pix, rel=1e-5)
    assert log['l_usl'] == pytest.approx(l_usl, rel=1e-5)
    assert totals == [pytest.approx(l_pix + l_usl, rel=1e-5)]
    for i, (halted, conf) in enumerate(zip(aux['global_halted'], aux['confidences']), start=1):
        assert log[f'sparsity_l{i}'] == pytest.approx(halted.float().mean().item())
        assert log[f'conf_l{i}'] == pytest.approx(conf.mean().item())
    assert log['sparsity_l1'] == 0 and 0 < log['sparsity_l2'] < 1


def test_a_training_step_trains_the_sr_network_by_l1(tmp_path):
    """L1 trains the SR network (L_USL cannot: its error term and the estimator's features are detached): gradients
    reach the first convolution, the step moves the last one, and steps on one batch lower the L1 loss."""
    model = _built(tmp_path, optim_g={'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.999]})
    net = model.net_g
    conv_up_before = net.conv_up.weight.detach().clone()
    model.feed_data(_one_batch())
    model.optimize_parameters(1)
    assert net.conv_first.weight.grad is not None and net.conv_first.weight.grad.abs().sum() > 0
    assert not torch.equal(net.conv_up.weight, conv_up_before)
    losses = [model.get_current_log()['l_pix']]  # each logged before its step
    for step in range(2, 6):
        model.optimize_parameters(step)
        losses.append(model.get_current_log()['l_pix'])
    assert losses[-1] < losses[0], losses


def test_a_training_step_updates_the_ema_network(tmp_path):
    """After a step, every EMA parameter is ema_decay * its value before + (1 - ema_decay) * the trained one."""
    model = _built(tmp_path)
    assert model.ema_decay == 0.9
    ema_before = {k: v.detach().clone() for k, v in model.net_g_ema.named_parameters()}
    model.feed_data(_one_batch())
    model.optimize_parameters(1)
    params = dict(model.net_g.named_parameters())
    ema = dict(model.net_g_ema.named_parameters())
    assert set(ema) == set(params)
    for k, value in ema.items():
        assert torch.allclose(value, 0.9 * ema_before[k] + 0.1 * params[k], rtol=0, atol=1e-6), k
    trained = [k for k in params if not torch.equal(params[k], ema_before[k])]
    assert trained and all(not torch.allclose(ema[k], params[k], rtol=0, atol=1e-7) for k in trained)


def test_validation_tests_the_ema_network(tmp_path):
    """With an EMA network, model.test() (what validation runs per image) super-resolves with it, not with net_g."""
    model = _built(tmp_path)
    with torch.no_grad():
        for p in model.net_g.parameters():  # net_g and net_g_ema now differ clearly
            p.add_(torch.randn_like(p) * 0.05)
    lq = torch.rand(1, 3, 8, 8)
    model.feed_data({'lq': lq, 'gt': torch.rand(1, 3, 16, 16), 'lq_path': ['a.png']})
    model.test()
    model.net_g.eval()
    with torch.no_grad():
        ema_sr, net_g_sr = model.net_g_ema(lq), model.net_g(lq)
    model.net_g.train()
    assert torch.allclose(model.output, ema_sr, rtol=0, atol=1e-6)
    assert not torch.allclose(model.output, net_g_sr, rtol=0, atol=1e-3)


def test_data_parallel_gathers_the_training_forward(monkeypatch):
    """Several GPUs without a launcher: BasicSR wraps the network in DataParallel, whose gather cannot merge the
    replicas' executed MACs (Python ints); AuxDataParallel sums them. There is no GPU here, so the replicas' outputs
    are made on the CPU and DataParallel's own gather runs with concatenation standing in for its GPU copy."""
    cpu_gather = type('CpuGather', (), {'apply': staticmethod(lambda device, dim, *parts: torch.cat(parts, dim))})
    monkeypatch.setattr(torch.nn.parallel.scatter_gather, 'Gather', cpu_gather)
    torch.manual_seed(0)
    net = build_network(dict(TINY_NET)).train()
    lq = torch.rand(2, 3, 8, 8)
    replicas = [net(lq[:1], return_aux=True), net(lq[1:], return_aux=True)]  # what two GPUs return
    plain, ours = torch.nn.DataParallel(net), AuxDataParallel(net)
    plain.dim = ours.dim = 0  # DataParallel built without a GPU does not set it
    with pytest.raises(TypeError, match="'int' object is not iterable"):
        plain.gather(replicas, 'cpu')
    sr, aux = ours.gather(replicas, 'cpu')
    assert torch.equal(sr, torch.cat([replicas[0][0], replicas[1][0]]))
    assert aux['macs'] == replicas[0][1]['macs'] + replicas[1][1]['macs']
    assert aux['macs_for_aux'] == replicas[0][1]['macs_for_aux'] + replicas[1][1]['macs_for_aux'] > 0
    assert [c.shape[0] for c in aux['confidences']] == [2] * len(replicas[0][1]['confidences'])
    assert torch.equal(aux['global_halted'][-1], torch.cat([r[1]['global_halted'][-1] for r in replicas]))


class AutocastProbe(nn.Module):
    """A replica that returns the autocast dtype it runs under on the CPU (None: autocast off) and its keyword."""

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        return (torch.get_autocast_dtype('cpu') if torch.is_autocast_enabled('cpu') else None), return_aux


def threaded_apply(modules, inputs, kwargs, devices):
    """What ``torch.nn.parallel.parallel_apply`` does with autocast, on the CPU: every replica in a thread of its
    own, autocast turned on there if the caller had it on, without a dtype."""
    enabled, results = torch.is_autocast_enabled('cpu'), [None] * len(modules)

    def worker(i):
        with torch.amp.autocast('cpu', enabled=enabled):
            results[i] = modules[i](*inputs[i], **kwargs[i])

    threads = [threading.Thread(target=worker, args=(i, )) for i in range(len(modules))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_data_parallel_replicas_run_in_the_callers_autocast_dtype(monkeypatch):
    """DataParallel's replica threads turn autocast on without a dtype, so they ran in the device's default dtype
    (float16 on CUDA) instead of the caller's (bfloat16 for ``train.autocast``). No GPU here: the stand-in does the
    same on the CPU, whose default is bfloat16, and the caller asks for float16."""
    data_parallel_module = importlib.import_module('torch.nn.parallel.data_parallel')  # the attribute is a function
    monkeypatch.setattr(data_parallel_module, 'parallel_apply', threaded_apply)
    plain, ours = torch.nn.DataParallel(AutocastProbe()), AuxDataParallel(AutocastProbe())
    plain.src_device_obj = ours.src_device_obj = torch.device('cpu')  # DataParallel built without a GPU has none
    x = torch.rand(1, 3, 4, 4)
    args = ([AutocastProbe(), AutocastProbe()], [(x, ), (x, )], [{'return_aux': True}] * 2)
    with torch.autocast('cpu', dtype=torch.float16):
        assert plain.parallel_apply(*args) == [(torch.bfloat16, True)] * 2  # what the replicas saw before
        assert ours.parallel_apply(*args) == [(torch.float16, True)] * 2
    assert ours.parallel_apply(*args) == [(None, True)] * 2


def test_several_gpus_without_a_launcher_get_aux_data_parallel(model, monkeypatch):
    monkeypatch.setitem(model.opt, 'num_gpu', 2)  # BaseModel would wrap in DataParallel
    net = build_network(dict(TINY_NET))
    assert type(model.model_to_device(net)) is AuxDataParallel
    monkeypatch.setitem(model.opt, 'num_gpu', 0)
    assert model.model_to_device(net) is net


def test_uncertainty_loss_needs_adaformer(tmp_path):
    opt = train_options(tmp_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['network_g'] = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                        'upscale': 2}
    with pytest.raises(ValueError, match='uncertainty_opt needs network_g type AdaFormer'):
        build_model(opt)


def _built(tmp_path, **train):
    opt = train_options(tmp_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path))
    opt['train'].update(train)
    return build_model(opt)


def test_estimator_lr_mult_gives_the_estimator_its_own_rate(tmp_path):
    model = _built(tmp_path, estimator_lr_mult=10)
    base, estimator = model.optimizer_g.param_groups
    lr = model.opt['train']['optim_g']['lr']
    assert base['lr'] == pytest.approx(lr) and estimator['lr'] == pytest.approx(10 * lr)
    expected = {id(p) for p in model.net_g.adam.estimator.parameters()}
    assert {id(p) for p in estimator['params']} == expected
    assert len(base['params']) + len(estimator['params']) == len(list(model.net_g.parameters()))
    assert len(_built(tmp_path / 'one', estimator_lr_mult=1).optimizer_g.param_groups) == 1


def test_estimator_lr_mult_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match='estimator_lr_mult must be a number > 0'):
        _built(tmp_path, estimator_lr_mult=0)


def test_estimator_only_trains_the_estimator_and_nothing_else(tmp_path):
    model = _built(tmp_path, estimator_only=True, estimator_lr_mult=10)
    (group,) = model.optimizer_g.param_groups
    assert group['lr'] == pytest.approx(10 * model.opt['train']['optim_g']['lr'])
    estimator = {id(p) for p in model.net_g.adam.estimator.parameters()}
    assert {id(p) for p in group['params']} == estimator
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16), 'lq_path': ['a.png', 'b.png']})
    model.optimize_parameters(1)
    after = model.net_g.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith('adam.estimator.') for k in changed)


def test_estimator_only_needs_the_uncertainty_loss(tmp_path):
    opt = train_options(tmp_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path))
    opt['train']['estimator_only'] = True
    del opt['train']['uncertainty_opt']
    with pytest.raises(ValueError, match='estimator_only trains the confidence estimator with L_USL'):
        build_model(opt)


def _test_model(tmp_path, network_g, tile=None, **val):
    opt = train_options(tmp_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path), network_g=network_g)
    opt['val'].update(val)
    del opt['train']['uncertainty_opt']
    opt['train']['ema_decay'] = 0
    if tile:
        opt['tile'] = tile
    torch.manual_seed(0)
    return build_model(opt)


TINY_SWINIR = {'type': 'SwinIR', 'upscale': 2, 'in_chans': 3, 'img_size': 8, 'window_size': 4, 'img_range': 1.,
               'depths': [1], 'embed_dim': 8, 'num_heads': [2], 'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect',
               'resi_connection': '1conv'}


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_windowed_network_gets_its_input_padded_and_output_cropped(tmp_path, dtype):
    """SwinIR (a network of BasicSR's): padded to its window; in bfloat16 it runs under autocast, as it builds its
    attention mask in float32 for every new input size."""
    model = _test_model(tmp_path, dict(TINY_SWINIR), dtype=dtype)
    lq = torch.rand(1, 3, 6, 9)  # neither side a multiple of the window: the plain forward would fail
    model.feed_data({'lq': lq, 'gt': torch.rand(1, 3, 12, 18), 'lq_path': ['a.png']})
    model.test()
    assert model.output.shape == (1, 3, 12, 18) and model.output.dtype == torch.float32
    with torch.no_grad():
        expected = model.net_g(torch.nn.functional.pad(lq, (0, 3, 0, 2), 'reflect'))[..., :12, :18]
    if dtype == 'float32':
        assert torch.allclose(model.output, expected, atol=1e-6)
    else:
        assert 0 < (model.output - expected).abs().mean() < 0.01


def _tested(model, lq):
    model._records = []
    model.feed_data({'lq': lq, 'gt': torch.rand(1, 3, lq.shape[2] * 2, lq.shape[3] * 2), 'lq_path': ['a.png']})
    model.test()
    return model.output, model._records[-1]


def test_test_forward_runs_without_cudnn_autotuning(tmp_path, monkeypatch):
    """BasicSR's pipelines turn cuDNN's autotuning on; a test forward turns it off (test images come in many sizes,
    and the search for each would be timed as latency) and back on afterwards."""
    model = _test_model(tmp_path, dict(TINY_NET))
    seen = []
    forward = model.net_g.forward
    monkeypatch.setattr(model.net_g, 'forward', lambda *a, **k: seen.append(torch.backends.cudnn.benchmark) or
                        forward(*a, **k))
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', True)
    _tested(model, torch.rand(1, 3, 8, 8))
    assert seen == [False] and torch.backends.cudnn.benchmark is True


def test_tiled_test_of_a_conv_network_equals_the_whole_image(tmp_path):
    edsr = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2,
            'img_range': 1.}
    whole = _test_model(tmp_path, dict(edsr))
    tiled = _test_model(tmp_path, dict(edsr), tile={'tile_size': 8, 'tile_pad': 6})  # pad > receptive radius
    tiled.net_g.load_state_dict(whole.net_g.state_dict())
    lq = torch.rand(1, 3, 21, 30)  # 3 x 4 tiles, the last ones shorter
    expected, _ = _tested(whole, lq)
    got, record = _tested(tiled, lq)
    assert got.shape == (1, 3, 42, 60)
    assert torch.allclose(got, expected, atol=1e-5)
    assert 'sparsity' not in record


def test_tiled_test_of_adaformer_rebuilds_the_halting_statistics(tmp_path):
    net = dict(TINY_NET, halt_eps=0.49)
    whole = _test_model(tmp_path, dict(net))
    with torch.no_grad():
        whole.net_g.adam.estimator.conv2.bias.zero_()  # C ~ 0.5, threshold 0.51: some tokens halt, some not
    one_tile = _test_model(tmp_path, dict(net), tile={'tile_size': 64, 'tile_pad': 0})
    tiles = _test_model(tmp_path, dict(net), tile={'tile_size': 8, 'tile_pad': 4})
    for model in (one_tile, tiles):
        model.net_g.load_state_dict(whole.net_g.state_dict())
    lq = torch.rand(1, 3, 16, 24)  # multiples of the window: pixel and token fractions agree
    expected, record = _tested(whole, lq)
    assert 0 < record['sparsity'][1] < 1 and 0 < record['window_sparsity'][1] < 1
    got, one_record = _tested(one_tile, lq)  # one tile = the whole image: the same numbers rebuilt from the maps
    assert torch.equal(got, expected)
    for key in ('sparsity', 'window_sparsity', 'macs'):
        assert one_record[key] == pytest.approx(record[key])
    got, tiles_record = _tested(tiles, lq)
    assert got.shape == expected.shape
    assert len(tiles_record['sparsity']) == 2 and tiles_record['sparsity'][0] == 0
    assert tiles_record['macs'] > record['macs']  # 2 x 3 tiles of up to 16 x 16 pixels: the overlaps twice


@pytest.mark.parametrize('tile', [None, {'tile_size': 8, 'tile_pad': 4}])
def test_val_dtype_bfloat16_tests_a_bfloat16_copy(tmp_path, tile):
    """``val.dtype: bfloat16``: the network is tested in bfloat16 (a copy: the float32 weights that training updates
    stay float32), the output and the statistics come back as float32 and close to the float32 test."""
    net = dict(TINY_NET, halt_eps=0.49)
    reference = _test_model(tmp_path, dict(net), tile=tile)
    with torch.no_grad():
        reference.net_g.adam.estimator.conv2.bias.zero_()  # C ~ 0.5: some tokens halt
    low = _test_model(tmp_path, dict(net), tile=tile, dtype='bfloat16')
    low.net_g.load_state_dict(reference.net_g.state_dict())
    lq = torch.rand(1, 3, 16, 24)
    expected, record = _tested(reference, lq)
    got, low_record = _tested(low, lq)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert 0 < (got - expected).abs().mean() < 0.01  # bfloat16 rounding, nothing more
    assert all(p.dtype == torch.float32 for p in low.net_g.parameters())
    assert len(low_record['sparsity']) == 2 and low_record['macs'] == pytest.approx(record['macs'], rel=0.2)


def test_train_autocast_bfloat16_trains_in_mixed_precision(tmp_path):
    """``train.autocast: bfloat16``: the forward runs under autocast (its output differs from float32 by rounding),
    losses and weights stay float32, and a step moves the weights in the directions of the float32 step."""
    steps = {}
    for precision in ('float32', 'bfloat16'):
        opt = train_options(tmp_path)
        opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path))
        opt['train']['autocast'] = precision
        torch.manual_seed(0)
        model = build_model(opt)
        before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
        torch.manual_seed(1)
        model.feed_data({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)})
        model.optimize_parameters(1)
        assert model.output.dtype == torch.float32
        assert all(v.dtype == torch.float32 for v in model.net_g.state_dict().values() if v.is_floating_point())
        steps[precision] = (model.output.detach(), {k: v - before[k] for k, v in model.net_g.state_dict().items()},
                            {k: float(v) for k, v in model.log_dict.items()})
    (out32, step32, log32), (out16, step16, log16) = steps['float32'], steps['bfloat16']
    assert 0 < (out16 - out32).abs().max() < 0.05
    assert log16['l_pix'] == pytest.approx(log32['l_pix'], rel=0.05)
    # Adam's first step moves every weight by about lr in the direction of its gradient: the directions agree
    same = [(torch.sign(step16[k]) == torch.sign(step32[k])).float().mean().item() for k in step32
            if step32[k].is_floating_point() and step32[k].abs().max() > 0]
    assert sum(same) / len(same) > 0.9


def _checkpoint(path, params_seed: int, ema_seed: int, **network) -> str:
    """A BasicSR checkpoint whose params and params_ema are two differently seeded networks."""
    states = []
    for seed in (params_seed, ema_seed):
        torch.manual_seed(seed)
        states.append(build_network(dict(TINY_NET, **network)).state_dict())
    torch.save({'params': states[0], 'params_ema': states[1]}, path)
    return str(path)


def test_estimator_only_keeps_the_frozen_network_in_the_ema_too(tmp_path):
    """SRModel loads net_g from param_key_g (params) and the EMA network from params_ema: where they differ the EMA
    would drift towards the frozen params. With estimator_only the EMA starts as net_g, so after a step only the
    estimator's EMA weights differ from the frozen network."""
    weights = _checkpoint(tmp_path / 'two.pth', 1, 2)
    model = _built_from(tmp_path, weights, estimator_only=True)
    net, ema = model.net_g.state_dict(), model.net_g_ema.state_dict()
    assert all(torch.equal(net[k], ema[k]) for k in net)
    start = {k: v.clone() for k, v in net.items()}
    model.feed_data(_one_batch())
    model.optimize_parameters(1)
    ema = model.net_g_ema.state_dict()
    moved = {k for k in start if not torch.allclose(ema[k], start[k], rtol=1e-6, atol=1e-8)}  # EMA's rounding: 1 ulp
    assert moved and all(k.startswith('adam.estimator.') for k in moved)


def test_tensors_the_checkpoint_does_not_set_start_equal_in_the_ema(tmp_path):
    """strict_load_g: false from x4 weights to a x2 network: SRModel leaves conv_up of the EMA network at its own
    random values; it starts as net_g's, the tensors loaded from params_ema stay as loaded."""
    weights = _checkpoint(tmp_path / 'x4.pth', 1, 2, upscale=4)
    model = _built_from(tmp_path, weights, strict=False)
    net, ema = model.net_g.state_dict(), model.net_g_ema.state_dict()
    assert torch.equal(ema['conv_up.weight'], net['conv_up.weight'])
    loaded = torch.load(weights)['params_ema']
    assert torch.equal(ema['conv_first.weight'], loaded['conv_first.weight'])
    assert not torch.equal(net['conv_first.weight'], loaded['conv_first.weight'])


def _built_from(tmp_path, weights: str, strict: bool = True, **train):
    opt = train_options(tmp_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path))
    opt['path'].update(pretrain_network_g=weights, strict_load_g=strict)
    opt['train'].update(train)
    torch.manual_seed(0)
    return build_model(opt)
