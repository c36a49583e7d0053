"""AdaFormer architecture: shapes, gradients, sparse == dense, MACs, halting rules."""
import copy
import re
import warnings

import pytest
import torch
from torch.nn import functional as F

import adaformer_arch  # noqa: F401
from adaformer_arch.archs import chunking, cpu_route, token_halting, tsab, window_attention
from adaformer_arch.archs import token_linear as token_linear_module
from adaformer_arch.archs.adaformer_arch import AdaFormer, pad_to_multiple, residual_blocks
from adaformer_arch.archs.conv_floor_arch import AdaFormerConvFloor
from adaformer_arch.archs.prototype_attention import PrototypeAttention
from adaformer_arch.archs.token_linear import token_linear
from adaformer_arch.archs.window_attention import attention_per_head, from_windows, to_windows, window_rows
from basicsr.archs import build_network
from basicsr.archs.arch_util import ResidualBlockNoBN, make_layer

from helpers import set_confidence_bias

SMALL = dict(num_feat=16, embed_dim=16, num_block_enc=1, num_block_dec=1, depth=4, num_heads=2, window_size=4,
             num_prototypes=4)


def small_net(upscale: int = 2, **kwargs) -> AdaFormer:
    torch.manual_seed(0)
    return AdaFormer(upscale=upscale, **{**SMALL, **kwargs})


def test_registry_and_paper_defaults():
    net = build_network({'type': 'AdaFormer', 'upscale': 4})
    assert isinstance(net, AdaFormer)
    params = sum(p.numel() for p in net.parameters())
    assert 1.55e6 < params < 1.70e6, params  # the paper's release: about 1.60 M
    assert len(net.adam.blocks) == 6 and net.window_size == 8
    block = net.adam.blocks[0]
    assert block.local_attn.num_heads == 4 and block.global_attn.num_heads == 4  # docs/decisions.md, "Heads"
    assert net.adam.estimator.conv1.out_channels == 8  # "Estimator width"
    assert net.adam.blocks[0].global_attn.prototypes.shape == (16, 64)
    protos = net.adam.blocks[0].global_attn.prototypes
    assert torch.allclose(protos, torch.ones_like(protos), atol=0.2)  # initialised at 1 ...
    assert torch.unique(protos, dim=0).shape[0] == 16  # ... but not identical rows


@pytest.mark.parametrize('upscale', [2, 3, 4])
@pytest.mark.parametrize('size', [(16, 16), (37, 45), (5, 7)])
def test_output_shape_any_size(upscale, size):
    net = small_net(upscale).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * upscale, size[1] * upscale)
    assert torch.isfinite(out).all()


def test_window_partition_roundtrip():
    x = torch.randn(2, 5, 8, 12)
    tokens = to_windows(x, 4)
    assert tokens.shape == (2, 6, 16, 5)
    assert torch.equal(tokens[0, 1, :, 0], x[0, 0, 0:4, 4:8].reshape(-1))  # window 1 = rows 0-3, cols 4-7
    assert torch.equal(from_windows(tokens, 4, 8, 12), x)


def test_every_parameter_gets_a_gradient():
    net = small_net().train()
    sr, aux = net(torch.rand(2, 3, 12, 12), return_aux=True)
    (sr.mean() + sum(c.mean() for c in aux['confidences'])).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


def test_estimator_learns_only_from_confidences():
    net = small_net().train()
    sr, _ = net(torch.rand(1, 3, 8, 8), return_aux=True)
    sr.mean().backward()
    assert all(p.grad is None for p in net.adam.estimator.parameters())  # features are detached


def run(net, x, sparse):
    net.sparse_compute = sparse
    with torch.no_grad():
        return net(x, return_aux=True)


# one piece; pieces of one window (16 tokens), of two windows, of 12 windows (more than a window row, 5)
@pytest.mark.parametrize('chunk_tokens', [None, 20, 40, 200])
@pytest.mark.parametrize('bias', [-6.0, 0.0, 0.6, 8.0])  # nothing, partial (two levels), everything halts
def test_sparse_equals_masked_dense(bias, chunk_tokens, monkeypatch):
    """The inference path (in place, gathered, in chunks of windows, prototypes accumulated over chunks) gives the
    masked-dense result, with the same halting decisions."""
    if chunk_tokens:
        monkeypatch.setattr(tsab, 'INFERENCE_CHUNK_TOKENS', chunk_tokens)
        monkeypatch.setattr(token_halting, 'CHUNK_TOKENS', chunk_tokens)
    net = small_net().eval()
    set_confidence_bias(net, bias)
    x = torch.rand(2, 3, 16, 20)
    x[1] = x[1] * 0.1  # a second image with other statistics: other masks
    out_sparse, aux_sparse = run(net, x, True)
    out_dense, aux_dense = run(net, x, False)
    assert (out_sparse - out_dense).abs().max() <= 1e-5
    for key in ('global_halted', 'local_halted'):
        for a, b in zip(aux_sparse[key], aux_dense[key]):
            assert torch.equal(a, b)
    halted = torch.stack(aux_sparse['global_halted'][1:]).float().mean().item()
    if bias < -5:
        assert halted == 0.0
        assert aux_sparse['macs'] == aux_dense['macs']
    elif bias > 5:
        assert halted == 1.0
    else:
        assert 0.0 < halted < 1.0
    if bias > -5:
        assert aux_sparse['macs'] < aux_dense['macs']


@pytest.mark.parametrize('bias', [0.0, 0.6])  # partial halting at two levels
def test_gpu_route_equals_cpu_route_and_masked_dense(bias, monkeypatch):
    """The sparse path a GPU takes (``F.linear``, fused attention, chunks of ``CHUNK_TOKENS``) cannot run here for
    lack of a GPU. Sent down that route on CPU tensors, it calls none of the CPU route's kernels and gives the CPU
    route's result (other kernels for the attention and the linears), the masked-dense result of the same route
    and the same halting decisions."""
    calls = []

    def spy(name, fn):
        return lambda *args: calls.append(name) or fn(*args)

    monkeypatch.setattr(window_attention, 'attention_per_head', spy('attention', window_attention.attention_per_head))
    monkeypatch.setattr(token_linear_module, 'as_convolution', spy('linear', token_linear_module.as_convolution))
    monkeypatch.setattr(tsab, 'CHUNK_TOKENS', 40)  # several chunks on either route, as at real image sizes
    monkeypatch.setattr(tsab, 'INFERENCE_CHUNK_TOKENS', 40)
    monkeypatch.setattr(token_halting, 'CHUNK_TOKENS', 40)
    net = small_net().eval()
    set_confidence_bias(net, bias)
    x = torch.rand(2, 3, 16, 20)
    x[1] = x[1] * 0.1
    out_cpu, aux_cpu = run(net, x, True)
    assert set(calls) == {'attention', 'linear'}
    calls.clear()
    monkeypatch.setattr(cpu_route, 'on_cpu_route', lambda tensor: False)
    out_gpu, aux_gpu = run(net, x, True)
    out_dense, aux_dense = run(net, x, False)
    assert not calls
    assert (out_gpu - out_cpu).abs().max() <= 1e-5
    assert (out_gpu - out_dense).abs().max() <= 1e-5
    for key in ('global_halted', 'local_halted'):
        for a, b, c in zip(aux_gpu[key], aux_cpu[key], aux_dense[key]):
            assert torch.equal(a, b) and torch.equal(a, c)
    assert 0.0 < torch.stack(aux_gpu['global_halted'][1:]).float().mean().item() < 1.0
    assert aux_gpu['macs'] == aux_cpu['macs']


@pytest.mark.parametrize('h, w', [(16, 24), (8, 8), (24, 8), (4, 12)])
def test_window_rows_gather_window_major_tokens(h, w):
    """Gathering the rows that ``window_rows`` numbers from the row-major map gives the window-major tokens."""
    s, d = 4, 3
    x = torch.randn(1, d, h, w)
    segments = x[0].permute(1, 2, 0).contiguous().view(h * w // s, s * d)
    rows = window_rows(torch.arange((h // s) * (w // s)), w // s, s)
    assert torch.equal(segments[rows.reshape(-1)].view(-1, s * s, d), to_windows(x, s)[0])


@pytest.mark.parametrize('n, multiple', [(1, 4), (4, 4), (5, 4), (300, 256)])
def test_bucketed_index_repeats_its_last_row(n, multiple):
    index = torch.randperm(1000)[:n]
    for idx in (index, index.view(-1, 1).expand(-1, 3)):  # (n,) and (n, 3): rows are padded
        got = chunking.bucketed(idx, multiple)
        assert got.shape[0] % multiple == 0 and got.shape[0] - n < multiple and got.shape[1:] == idx.shape[1:]
        assert torch.equal(got[:n], idx) and torch.all(got[n:] == idx[-1])


@pytest.mark.parametrize('size', [(13, 3), (4, 4)])  # one window wide
def test_sparse_equals_masked_dense_on_one_window_wide_maps(size):
    net = small_net().eval()
    set_confidence_bias(net, 0.6)
    x = torch.rand(1, 3, *size)
    out_sparse, aux_sparse = run(net, x, True)
    out_dense, aux_dense = run(net, x, False)
    assert (out_sparse - out_dense).abs().max() <= 1e-5
    for key in ('global_halted', 'local_halted'):
        assert all(torch.equal(a, b) for a, b in zip(aux_sparse[key], aux_dense[key]))


@pytest.mark.parametrize('res_scale', [1.0, 0.5])
def test_residual_blocks_in_place_equal_basicsr(res_scale):
    blocks = make_layer(ResidualBlockNoBN, 3, num_feat=8, res_scale=res_scale)
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        expected = blocks(x)
        got = residual_blocks(blocks, x.clone())
    assert torch.allclose(got, expected, atol=1e-6)
    assert residual_blocks(blocks, x).requires_grad  # with autograd: BasicSR's own forward


def test_prototypes_gathered_over_chunks_equal_one_attention():
    """Eqs. 10-11 accumulated chunk by chunk (running max and sum of the softmax) equal one attention over all kept
    tokens, also when the logits differ widely between chunks; no kept token leaves the prototypes unchanged."""
    torch.manual_seed(0)
    attn = PrototypeAttention(dim=16, num_prototypes=4, num_heads=2).eval()
    tokens = torch.randn(50, 16) * torch.linspace(0.1, 8.0, 50)[:, None]  # chunks with very different logit scales
    keep = torch.rand(50) > 0.3
    with torch.no_grad():
        expected = attn.update_prototypes(attn.token_qkv(tokens)[None], keep[None])[0]
        got = attn.gather_prototypes(part for part in tokens[keep].split(7))
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(attn.gather_prototypes(iter(())), attn.prototypes)


def test_prototypes_gathered_in_float16_over_more_tokens_than_float16_can_count():
    """The softmax sums run over every kept token of an image; in float16 they would pass its largest value (65,504)
    and become inf: they are accumulated in float32, and the prototypes match the float32 ones."""
    torch.manual_seed(0)
    attn = PrototypeAttention(dim=16, num_prototypes=4, num_heads=2).eval()
    tokens = torch.full((70_000, 16), 0.5) + 0.01 * torch.randn(70_000, 16)  # nearly equal logits: weights ~ 1
    half = copy.deepcopy(attn).to(torch.float16)
    with torch.no_grad():
        expected = attn.gather_prototypes(tokens.split(4096))
        got = half.gather_prototypes(tokens.to(torch.float16).split(4096))
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    assert torch.allclose(got.float(), expected, atol=2e-2)


@pytest.mark.parametrize('chunk_tokens', [None, 20])
def test_inference_path_without_early_exit_equals_dense(chunk_tokens, monkeypatch):
    if chunk_tokens:
        monkeypatch.setattr(tsab, 'INFERENCE_CHUNK_TOKENS', chunk_tokens)
    net = small_net().eval()
    net.early_exit = False
    x = torch.rand(2, 3, 16, 20)
    out_inference, aux_inference = run(net, x, True)
    out_dense, aux_dense = run(net, x, False)
    assert (out_inference - out_dense).abs().max() <= 1e-5
    assert aux_inference['macs'] == aux_dense['macs']


def test_partial_halting_differs_between_images():
    net = small_net().eval()
    set_confidence_bias(net, 0.3)
    x = torch.rand(2, 3, 16, 16)
    x[1] = 0.5  # flat image
    _, aux = run(net, x, True)
    masks = torch.stack(aux['global_halted'])  # (L, B, 1, h, w)
    assert not torch.equal(masks[:, 0], masks[:, 1])


def test_early_exit_off_is_dense_and_most_expensive():
    net = small_net().eval()
    set_confidence_bias(net, 0.5)
    x = torch.rand(1, 3, 16, 16)
    macs = {}
    for eps in (0.05, 0.3, 0.6):
        net.halt_eps = eps
        macs[eps] = run(net, x, True)[1]['macs']
    net.early_exit = False
    out, aux = run(net, x, True)
    assert not any(m.any() for m in aux['global_halted'] + aux['local_halted'])
    assert aux['macs'] > macs[0.05] > macs[0.3] > macs[0.6]


def test_halting_is_monotone_and_matches_accumulated_confidence():
    net = small_net(depth=6).eval()
    set_confidence_bias(net, -0.5)
    x = torch.rand(2, 3, 16, 16)
    _, aux = run(net, x, True)
    threshold = 1 - net.halt_eps
    assert not aux['global_halted'][0].any() and not aux['local_halted'][0].any()  # block 1 sees every token
    accumulated = torch.cumsum(torch.stack(aux['confidences']), dim=0)  # R^l
    for layer in range(1, 6):
        prev_g, g = aux['global_halted'][layer - 1], aux['global_halted'][layer]
        prev_w, w = aux['local_halted'][layer - 1], aux['local_halted'][layer]
        assert torch.all(g | ~prev_g) and torch.all(w | ~prev_w)  # once halted, always halted
        r = accumulated[layer - 1]
        assert torch.equal(g, r >= threshold)
        assert torch.equal(w, F.avg_pool2d(r, net.window_size) >= threshold)
    assert 0 < torch.stack(aux['global_halted']).float().mean() < 1


def test_aux_shapes_on_padded_size():
    net = small_net().eval()
    _, aux = run(net, torch.rand(1, 3, 10, 13), True)
    assert len(aux['confidences']) == 4
    assert aux['confidences'][0].shape == (1, 1, 12, 16)
    assert aux['global_halted'][0].shape == (1, 1, 12, 16) and aux['global_halted'][0].dtype == torch.bool
    assert aux['local_halted'][0].shape == (1, 1, 3, 4)
    assert all(0 <= c.min() and c.max() <= 1 for c in aux['confidences'])


def test_halted_tokens_are_frozen():
    """A token halted in both branches leaves a block unchanged, so its output equals the block input."""
    net = small_net().eval()
    block = net.adam.blocks[1]
    x = torch.randn(1, 8, 8, 16)  # row-major map, 2 x 2 windows of 4 x 4
    local_keep = torch.tensor([[[True, False], [True, False]]])
    global_keep = torch.rand(1, 8, 8) > 0.5
    out, _ = block.forward_inference(x.clone(), local_keep, global_keep)
    window_keep = local_keep.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    frozen = (~window_keep & ~global_keep)[..., None].expand_as(x)
    assert frozen.any()
    assert torch.equal(out[frozen], x[frozen])
    assert not torch.equal(out[~frozen], x[~frozen])


def test_block_follows_eqs_8_to_14_with_masks():
    """One TSAB with explicit masks against the block written out from its parts: the local branch only for kept
    windows, prototypes updated from the globally kept tokens alone (Eqs. 10-11: here by giving the global branch
    only those tokens) and read back only by them, and the MLP for every token kept by either branch
    (m_mlp = m_loc | m_glob: a token of a kept window that halted globally is still refined). Both paths."""
    net = small_net().eval()
    block = net.adam.blocks[1]
    torch.manual_seed(1)
    x = torch.randn(1, 4, 16, 16)  # window-major: 2 x 2 windows of 4 x 4 tokens, D = 16
    local_keep = torch.tensor([[True, False, True, False]])
    global_keep = torch.rand(1, 64) > 0.5
    window_keep = local_keep[:, :, None].expand(1, 4, 16).reshape(1, 64)
    assert (window_keep & ~global_keep).any() and (~window_keep & global_keep).any()
    with torch.no_grad():
        normed = block.norm1(x)
        loc = block.local_attn(normed.view(4, 16, 16), block.local_attn.position_bias()).view(1, 64, 16)
        kept = global_keep[0].nonzero().squeeze(1)
        glob = torch.zeros(1, 64, 16)
        glob[:, kept] = block.global_attn(normed.view(1, 64, 16)[:, kept])
        mid = x.view(1, 64, 16) + loc * window_keep[..., None] + glob
        expected = mid + block.mlp(block.norm2(mid)) * (window_keep | global_keep)[..., None]
        dense, _ = block.forward_dense(x, local_keep, global_keep)
        row_major = from_windows(x, 4, 8, 8).permute(0, 2, 3, 1).contiguous()  # (1, 8, 8, D)
        global_map = from_windows(global_keep.view(1, 4, 16, 1).float(), 4, 8, 8)[:, 0] > 0.5  # (1, 8, 8)
        sparse, _ = block.forward_inference(row_major, local_keep.view(1, 2, 2), global_map)
    assert torch.allclose(dense.view(1, 64, 16), expected, atol=1e-5)
    assert torch.allclose(to_windows(sparse.permute(0, 3, 1, 2), 4).view(1, 64, 16), expected, atol=1e-5)


def test_training_forward_applies_the_halting_masks():
    """Training runs the masked-dense path with the same halting as inference: with tokens halting, the training
    forward gives the inference output, not the output without early exit."""
    net = small_net()
    set_confidence_bias(net, -2.0)  # about a third of the tokens halt in block 3, two thirds in block 4
    x = torch.rand(1, 3, 16, 16)
    train_out, aux = net.train()(x, return_aux=True)
    assert 0 < aux['global_halted'][-1].float().mean() < 1
    net.eval()
    with torch.no_grad():
        inference = net(x)
        net.early_exit = False
        dense = net(x)
    assert torch.allclose(train_out, inference, atol=1e-5)
    assert not torch.allclose(train_out, dense, atol=1e-3)


def test_macs_per_pixel_close_to_paper():
    net = AdaFormer(upscale=4).eval()
    net.early_exit = False
    with torch.no_grad():
        _, aux = net(torch.rand(1, 3, 64, 64), return_aux=True)
    per_pixel = aux['macs'] / (64 * 64)
    # paper Table 3: ~1.53 M MACs per LR pixel; this count includes the estimator that return_aux runs (0.028 M)
    assert 1.4e6 < per_pixel < 1.8e6, per_pixel


@pytest.mark.parametrize('kwargs', [
    dict(upscale=2, num_feat=8, embed_dim=8, num_block_enc=1, num_block_dec=1, depth=2, num_heads=2, window_size=4,
         num_prototypes=4),
    dict(upscale=3, num_feat=8, embed_dim=16, num_block_enc=2, num_block_dec=1, depth=3, num_heads=4, window_size=4,
         num_prototypes=3, mlp_ratio=1.5, estimator_dim=5),
], ids=['tiny', 'other widths'])
def test_macs_equal_an_independent_count_of_the_dense_forward(kwargs):
    """aux['macs'] without early exit equals PyTorch's FlopCounterMode (FLOPs / 2) over the masked-dense path, which
    computes every layer once, as the paper's network does. Both count the multiplies of every convolution and
    linear layer (no biases) over the window-padded input (7x10 -> 8x12), the attention matmuls (q k^T and
    attn v of the local windows; prototypes over the tokens and tokens over the prototypes in the global branch),
    the prototypes' own projections, and the confidence estimator at each of its L calls (return_aux computes it
    after every block, the last one too). Neither counts LayerNorm, softmax, GELU, bias and residual additions,
    the position bias or the pixel shuffle. The fused CPU attention kernel is not counted by FlopCounterMode, so
    attention runs through the math backend (bmm), and one image: the dense path computes the prototypes' queries
    once per batch, the count (like the inference path) once per image."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    net = AdaFormer(early_exit=False, **kwargs).eval()  # eval with autograd on: the masked-dense path
    with FlopCounterMode(display=False) as counter, sdpa_kernel([SDPBackend.MATH]):
        _, aux = net(torch.rand(1, 3, 7, 10), return_aux=True)
    counted = {str(op): flops for op, flops in counter.get_flop_counts()['Global'].items()}
    assert set(counted) == {'aten.convolution', 'aten.addmm', 'aten.bmm'}, counted
    assert aux['macs'] * 2 == counter.get_total_flops()


def test_windowed_confidence_matches_full_map():
    """The estimator computed only in selected windows (with a 2-pixel halo) equals the full-map estimator there,
    border windows included, and keeps the fill value elsewhere."""
    net = small_net().eval()
    est = net.adam.estimator
    x = torch.randn(2, 16, 12, 16)  # 3 x 4 windows of 4 x 4
    windows = torch.rand(2, 12) > 0.5
    windows[0, 0] = windows[1, 11] = True  # corner windows
    fill = torch.full((2, 1, 12, 16), -1.0)
    got, macs = est.forward_windows(x, windows, 4, fill)
    with torch.no_grad():
        full = est(x)
    selected = F.interpolate(windows.view(2, 1, 3, 4).float(), scale_factor=4).bool()
    assert torch.allclose(got[selected], full[selected], atol=1e-6)
    assert torch.all(got[~selected] == -1.0)
    hidden = est.conv1.out_channels
    assert macs == windows.sum().item() * (6 * 6 * 9 * 16 * hidden + 16 * 9 * hidden)


def test_conv_floor_inference_path_equals_autograd_path():
    torch.manual_seed(0)
    floor = AdaFormerConvFloor(num_feat=8, num_block=2, upscale=2)
    x = torch.rand(1, 3, 7, 9)
    expected = floor(x)  # autograd on: BasicSR's residual blocks, out-of-place
    with torch.no_grad():
        got = floor(x)
    assert got.shape == (1, 3, 14, 18)
    assert torch.allclose(got, expected, atol=1e-6)


def test_eval_with_autograd_keeps_gradients_and_result():
    """In eval mode with autograd on, the masked-dense path runs: the same output and halting as the inference
    path, and gradients reach the input."""
    net = small_net().eval()
    set_confidence_bias(net, 0.6)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    out, aux = net(x, return_aux=True)
    out.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    expected, aux_inference = run(net, x.detach(), True)
    assert (out.detach() - expected).abs().max() <= 1e-5
    assert 0 < torch.stack(aux['global_halted'][1:]).float().mean() < 1
    for a, b in zip(aux['global_halted'], aux_inference['global_halted']):
        assert torch.equal(a, b)


def test_a_trace_or_export_made_without_autograd_is_right_for_other_images():
    """The sparse path's kept-token sets depend on the image: a trace of it would replay the example's sets on
    every input. Traced or exported without autograd, the network records the masked-dense path instead."""
    net = small_net().eval()
    set_confidence_bias(net, 0.3)
    example, other = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    other[..., :12, :] = 0.5  # flat top half: halts where the example does not (a trace of the sparse path: 2e-3 off)
    with torch.no_grad():
        _, aux = net(other, return_aux=True)
        _, aux_example = net(example, return_aux=True)
        assert not torch.equal(torch.stack(aux['global_halted']), torch.stack(aux_example['global_halted']))
        expected = net(other)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            traced = torch.jit.trace(net, example)
        assert (traced(other) - expected).abs().max() <= 1e-5
        exported = torch.export.export(net, (example,)).module()
        assert (exported(other) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize('lq, message', [
    (torch.rand(3, 16, 16), 'takes a (B, 3, h, w) tensor, got shape (3, 16, 16) (a single image needs a batch '
     'dimension: lq.unsqueeze(0))'),
    (torch.rand(1, 1, 16, 16), 'takes a (B, 3, h, w) tensor, got shape (1, 1, 16, 16)'),  # no batch hint here
    (torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8), 'floating-point input in [0, 1], got torch.uint8 '
     '(for 8-bit images: lq.float() / 255)'),
])
def test_input_the_network_would_misread_is_refused(lq, message):
    """A 3-D or one-channel tensor would broadcast against the RGB mean into a wrong-shaped result, and 8-bit
    values would come out as garbage: each is a ValueError saying what the network takes."""
    with pytest.raises(ValueError, match=re.escape(message) + '$'):
        small_net().eval()(lq)


@pytest.mark.parametrize('value', [1.0, -0.1, float('nan'), '0.1', True])
def test_halt_eps_set_after_loading_is_checked(value):
    """The knob set as an attribute gets the constructor's check: 1 would halt every token after block 1, a
    negative value or NaN would halt none."""
    net = small_net()
    with pytest.raises(ValueError, match=re.escape(f'halt_eps must be in [0, 1), got {value!r}')):
        net.halt_eps = value
    net.halt_eps = 0.2
    assert net.halt_eps == 0.2 and copy.deepcopy(net).halt_eps == 0.2


def test_a_new_network_halts_nothing_so_that_every_block_trains():
    """docs/decisions.md, "Estimator start": the estimator's last bias starts at -3 (C ~ 0.05 per block), so at the
    start of training R stays far below 1 - eps and no token or window halts in any block."""
    net = small_net(depth=6).train()
    assert torch.all(net.adam.estimator.conv2.bias == -3.0)
    _, aux = net(torch.rand(2, 3, 16, 16), return_aux=True)
    assert not any(m.any() for m in aux['global_halted'] + aux['local_halted'])
    assert all(c.max() < 0.2 for c in aux['confidences'])


def test_residual_around_adam_and_from_the_head_to_the_decoder():
    """docs/decisions.md, "Residuals": AdaM adds its result to its input (zero conv_out: AdaM is the identity), and
    the head conv's output is added to the decoder's (the network written out from its parts)."""
    net = small_net().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        head, feat = net.encode(x)
        identity_adam = copy.deepcopy(net.adam)
        identity_adam.conv_out.weight.zero_()
        identity_adam.conv_out.bias.zero_()
        same, _ = identity_adam(feat.clone(), net.early_exit, net.halt_eps, True, need_confidences=False)
        assert torch.equal(same, feat)
        adam_out, _ = net.adam(feat, net.early_exit, net.halt_eps, True, need_confidences=False)
        decoded = residual_blocks(net.decoder, adam_out) + head
        expected = net.pixel_shuffle(net.conv_up(decoded)) / net.img_range + net.mean
        assert (net(x) - expected).abs().max() <= 1e-6


@pytest.mark.parametrize('size, mode', [((5, 7), 'reflect'), ((2, 3), 'replicate'), ((8, 4), None)])
def test_inputs_are_padded_at_the_bottom_right_by_reflection(size, mode):
    """docs/decisions.md, "Any input size": bottom/right padding to a multiple of the window, reflected, or
    replicated where the image is smaller than the pad; nothing for multiples."""
    x = torch.rand(1, 3, *size)
    padded = pad_to_multiple(x, 4)
    if mode is None:
        assert padded is x
    else:
        h, w = size
        assert torch.equal(padded, F.pad(x, (0, -w % 4, 0, -h % 4), mode=mode))


def test_windows_needing_the_estimator_are_those_with_an_open_decision():
    """docs/decisions.md, "Estimator cost in inference": a window is recomputed while its local decision is open
    or one of its tokens is still kept by the global branch; a window halted in both branches is not."""
    state = token_halting.HaltingState(window_size=2, threshold=0.95)
    r = torch.tensor([[1.0, 1.0, 0.5, 0.5],   # windows (2x2): 0 fully halted, 1 open
                      [1.0, 1.0, 0.5, 0.5],
                      [1.0, 1.0, 1.0, 1.0],   # 2: window mean 0.975 halts it, one token (0.9) still open;
                      [1.0, 0.9, 1.0, 1.0]])  # 3: fully halted
    state.update(r.view(1, 1, 4, 4))
    assert state.needed_windows().tolist() == [[False, True, True, False]]


def test_fast_tanh():
    x = torch.linspace(-30, 30, 10001)
    with torch.no_grad():
        assert torch.allclose(token_halting.fast_tanh(x.clone()), torch.tanh(x), atol=1e-6)
    y = torch.randn(50, requires_grad=True)
    token_halting.fast_tanh(y * 1.0).sum().backward()  # with autograd: torch.tanh
    assert torch.allclose(y.grad, 1 - torch.tanh(y.detach())**2, atol=1e-6)


def test_attention_per_head_equals_fused_attention():
    torch.manual_seed(0)
    k, n, heads, dh = 3, 16, 2, 8
    qkv = torch.randn(k, n, 3 * heads * dh)
    bias = torch.randn(1, heads, n, n)
    q, key, v = qkv.view(k, n, 3, heads, dh).permute(2, 0, 3, 1, 4).unbind(0)
    expected = F.scaled_dot_product_attention(q, key, v, attn_mask=bias).transpose(1, 2).reshape(k, n, heads * dh)
    assert torch.allclose(attention_per_head(qkv, bias, heads), expected, atol=1e-5)


def test_token_linear_equals_linear():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(300, 64), torch.randn(128, 64), torch.randn(128)
    expected = F.linear(x, weight, bias)
    with torch.no_grad():
        assert torch.allclose(token_linear(x, weight, bias), expected, atol=1e-4)  # the 1x1-convolution route
        assert torch.allclose(token_linear(x.t().contiguous().t(), weight, bias), expected, atol=1e-4)
    x.requires_grad_(True)
    out = token_linear(x, weight, bias)  # with autograd: F.linear
    out.sum().backward()
    assert torch.allclose(x.grad, weight.sum(0).expand_as(x), atol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='PyTorch built without oneDNN')
@pytest.mark.parametrize('threads', [1, 2])
def test_token_linear_runs_on_onednn_on_any_thread_count(threads):
    """PyTorch sends a 1x1 convolution of fewer than 16 images on one thread to its slow generic path; the tokens go
    as 16 images, so oneDNN computes them (the route's speed-up) on one thread too."""
    x, weight, bias = torch.randn(4096, 64), torch.randn(192, 64), torch.randn(192)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = token_linear(x, weight, bias)
    finally:
        torch.set_num_threads(before)
    ops = {e.key for e in prof.key_averages()}
    assert 'aten::mkldnn_convolution' in ops and 'aten::_slow_conv2d_forward' not in ops
    assert torch.allclose(out, F.linear(x, weight, bias), atol=1e-4)


@pytest.mark.parametrize('make', [lambda: small_net().eval(),
                                  lambda: AdaFormerConvFloor(num_feat=16, num_block=2, upscale=2).eval()])
def test_one_image_from_hwc_memory_runs_channels_last(make):
    """A (1, C, H, W) view of an HWC array (``img2tensor(img).unsqueeze(0)``) has batch stride C, which convolutions
    do not take for channels-last: the networks copy it to the standard layout, so their convolutions run
    channels-last (the fast oneDNN layout) whatever the caller passes."""
    net = make()
    hwc = torch.rand(16, 24, 3)
    lq = hwc.permute(2, 0, 1).unsqueeze(0)
    assert lq.stride() == (3, 1, 72, 3)
    first_block = (net.encoder if isinstance(net, AdaFormer) else net.body)[0].conv1
    seen = []
    first_block.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        out = net(lq)
        expected = net(lq.contiguous())
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, expected, atol=1e-6)


def test_confidence_accumulates_in_float32_whatever_the_precision():
    """R is summed in float32: two bfloat16 confidences whose exact sum reaches 1 - eps halt the token, although
    their bfloat16 sum is rounded below it."""
    threshold = 0.95
    c1, c2 = torch.tensor(0.75, dtype=torch.bfloat16), torch.tensor(0.2001953125, dtype=torch.bfloat16)
    assert (c1 + c2).item() < threshold <= c1.item() + c2.item()  # the case this test is about
    state = token_halting.HaltingState(window_size=1, threshold=threshold)
    for c in (c1, c2):
        state.update(c.view(1, 1, 1, 1))
    assert state.accumulated.dtype == torch.float32
    assert state.token_halted.item()


@pytest.mark.parametrize('sparse', [True, False])
def test_bfloat16_network_follows_the_float32_one(sparse):
    """The whole network cast to bfloat16 (as ``val.dtype`` / ``--dtype`` do) runs both paths and stays close to
    float32: output within bfloat16 rounding, nearly the same tokens halted."""
    net = small_net().eval()
    set_confidence_bias(net, 0.6)  # partial halting
    net.sparse_compute = sparse
    low = copy.deepcopy(net).to(torch.bfloat16)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        ref, ref_aux = net(x, return_aux=True)
        out, aux = low(x.to(torch.bfloat16), return_aux=True)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert (out.float() - ref).abs().mean() < 0.01 and (out.float() - ref).abs().max() < 0.1
    halted = torch.stack(ref_aux['global_halted']).float()
    assert 0 < halted.mean() < 1
    agree = (torch.stack(aux['global_halted']).float() == halted).float().mean()
    assert agree > 0.9
