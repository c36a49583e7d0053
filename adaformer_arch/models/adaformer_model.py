"""AdaFormerModel: BasicSR's SRModel plus the uncertainty loss, halting statistics and crash-safe checkpoints."""
import contextlib
import json
import statistics
import time
from collections import OrderedDict
from os import path as osp
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import cv2
import torch
from torch import Tensor

from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from ..archs.adaformer_arch import AdaFormer, pad_to_multiple
from ..archs.token_halting import ConfidenceEstimator
from ..utils.atomic_io import atomic_write, torch_save_is_atomic
from ..utils.device_clock import sync
from ..utils.halting_maps import confidence_to_png, depth_to_png, halting_depth, halting_maps, window_to_pixels
from ..utils.image_io import write_array
from ..utils.precision import (forward_in_own_dtype, in_precision, mixed_precision, parse_autocast, parse_dtype,
                               to_float32)
from ..utils.tiling import run_tiled
from ..utils.weights import checkpoint_entry, read_checkpoint
from .data_parallel import AuxDataParallel


def _estimator_parameters(net: torch.nn.Module) -> Set[int]:
    """``id()`` of every parameter of the confidence estimator(s) in ``net``; empty for other networks."""
    return {id(p) for m in net.modules() if isinstance(m, ConfidenceEstimator) for p in m.parameters()}


CUDA_WARMUP_PIXELS = 64  # side of the LR corner of the untimed first test forward on a GPU


@contextlib.contextmanager
def _no_cudnn_autotuning() -> Iterator[None]:
    """cuDNN's autotuning off for a test forward. BasicSR's pipelines turn it on; it searches for the fastest
    algorithms at every new input size, test images come in many sizes, and the search would be timed as the
    network's latency."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@MODEL_REGISTRY.register()
class AdaFormerModel(SRModel):
    """SR model for AdaFormer.

    Training: ``L = L1 (pixel_opt) + alpha * L_USL (uncertainty_opt)``; logs ``l_pix``, ``l_usl`` and, per block l,
    the fraction of halted tokens ``sparsity_l{l}`` and the mean confidence ``conf_l{l}``.

    Validation/test: BasicSR's metrics, plus per image the latency, executed MACs and per-block sparsity, logged as
    a table and written to ``<log dir>/stats_<dataset>_<iter>.json``. ``val.save_halting_maps: true`` writes halting
    depth and confidence PNGs next to the SR images. ``tile: {tile_size: N, tile_pad: P}`` (top level, as in HAT)
    tests in tiles with bounded memory (:meth:`_tiled_forward`). Works with any ``network_g``; the halting columns
    are filled for AdaFormer only; other networks with a ``window_size`` (SwinIR) get their input padded to a
    multiple of it. ``val.dtype: bfloat16`` (or ``float16`` on a GPU) tests the network in that precision (a cast
    copy, or other networks under autocast: :mod:`adaformer_arch.utils.precision`); images, metrics and statistics
    are computed in float32.

    ``train.estimator_lr_mult`` (default 1) multiplies the learning rate of the confidence estimator's parameters
    (a second optimiser parameter group; the scheduler scales both groups alike). The estimator is trained by L_USL
    alone (see UncertaintyLoss), so a larger rate only speeds up how fast it learns which tokens may halt.
    ``train.autocast: bfloat16`` runs the training forward under ``torch.autocast`` (mixed precision; losses,
    gradients and weights stay float32).
    ``train.estimator_only: true`` freezes everything else and trains only the estimator (with L_USL): it fits a new
    estimator, e.g. of another ``estimator_dim``, to a trained network without changing what the network computes
    when nothing halts.

    Checkpoints and training states are written atomically (temporary file + rename).
    """

    def __init__(self, opt: Dict) -> None:
        self._records: List[Dict] = []  # per-image test records of the current validation (or direct test calls)
        self._test_dtype = parse_dtype((opt.get('val') or {}).get('dtype', 'float32'))
        self._cast_net: Optional[torch.nn.Module] = None  # the tested network in val.dtype, during one validation
        self._cuda_started = False  # a first, untimed test forward has run on the GPU
        super().__init__(opt)

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        """BaseModel's, with two changes for training on several devices:

        * ``train.estimator_only: true`` freezes everything but the confidence estimator *before* the network is
          wrapped: DDP registers the parameters that need gradients when it is built, and would wait for the frozen
          ones forever (an error at the second iteration);
        * several GPUs without a launcher: :class:`AuxDataParallel` instead of ``DataParallel`` (AdaFormer's training
          forward returns an aux dict that plain DataParallel cannot gather).
        """
        if self.is_train and self.opt['train'].get('estimator_only') is True:
            estimator = _estimator_parameters(net)
            for p in net.parameters() if estimator else ():
                p.requires_grad_(id(p) in estimator)
        if not self.opt['dist'] and self.opt['num_gpu'] > 1:
            return AuxDataParallel(net.to(self.device))
        return super().model_to_device(net)

    def init_training_settings(self) -> None:
        train_opt = self.opt['train']
        self.cri_usl = build_loss(train_opt['uncertainty_opt']).to(self.device) if train_opt.get(
            'uncertainty_opt') else None
        if self.cri_usl is not None and not isinstance(self.get_bare_model(self.net_g), AdaFormer):
            raise ValueError('train.uncertainty_opt needs network_g type AdaFormer (it trains its confidence '
                             'estimator); remove uncertainty_opt for other networks')
        self._train_autocast = parse_autocast(train_opt.get('autocast', 'float32'))
        super().init_training_settings()  # builds the optimiser (setup_optimizers), which looks at cri_usl
        if self.ema_decay > 0:
            self._align_ema_start()

    def _align_ema_start(self) -> None:
        """Start the EMA network where ``net_g`` starts wherever SRModel lets them differ, so that the EMA is an
        average of the trained network alone:

        * ``train.estimator_only``: all of it. SRModel loads ``net_g`` with ``param_key_g`` but the EMA network
          with ``params_ema``; where a checkpoint's two differ, the EMA would drift from its ``params_ema`` towards
          the frozen ``params``, changing the network the estimator is fitted to;
        * ``strict_load_g: false``: every tensor the checkpoint did not set (e.g. the upsampling layer of another
          scale), which SRModel leaves at the EMA network's own random initial values.
        """
        net = self.get_bare_model(self.net_g).state_dict()
        ema = self.get_bare_model(self.net_g_ema).state_dict()
        path_opt = self.opt['path']
        if self.opt['train'].get('estimator_only') is True:
            keys = list(ema)
            what = 'a copy of net_g (train.estimator_only: the frozen weights stay those of param_key_g)'
        elif path_opt.get('pretrain_network_g') and not path_opt.get('strict_load_g', True):
            path = path_opt['pretrain_network_g']
            state = checkpoint_entry(path, read_checkpoint(path), 'params_ema')
            keys = [k for k, v in ema.items() if k not in state or state[k].shape != v.shape]
            what = f'net_g in the {len(keys)} tensors {path} does not set (strict_load_g: false)'
        else:
            return
        with torch.no_grad():
            for key in keys:
                ema[key].copy_(net[key])
        if keys:
            get_root_logger().info(f'EMA network: starts as {what}.')

    def setup_optimizers(self) -> None:
        train_opt = self.opt['train']
        mult = train_opt.get('estimator_lr_mult', 1)
        if not isinstance(mult, (int, float)) or mult <= 0:
            raise ValueError(f'train.estimator_lr_mult must be a number > 0, got {mult!r}')
        estimator_only = train_opt.get('estimator_only', False)
        if not isinstance(estimator_only, bool):
            raise ValueError(f'train.estimator_only must be true or false, got {estimator_only!r}')
        if mult == 1 and not estimator_only:
            super().setup_optimizers()
            return
        estimator = _estimator_parameters(self.get_bare_model(self.net_g))
        option = 'estimator_only' if estimator_only else 'estimator_lr_mult'
        if not estimator:
            raise ValueError(f'train.{option} needs network_g type AdaFormer (it has no confidence estimator)')
        if estimator_only and self.cri_usl is None:
            raise ValueError('train.estimator_only trains the confidence estimator with L_USL: add uncertainty_opt')
        optim_opt = dict(train_opt['optim_g'])
        optim_type = optim_opt.pop('type')
        params = [p for p in self.net_g.parameters() if p.requires_grad]  # estimator_only: frozen in model_to_device
        groups = [{'params': [p for p in params if id(p) in estimator], 'lr': optim_opt['lr'] * mult}]
        if not estimator_only:
            groups.insert(0, {'params': [p for p in params if id(p) not in estimator]})
        self.optimizer_g = self.get_optimizer(optim_type, groups, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def feed_data(self, data: Dict) -> None:
        super().feed_data(data)
        self.lq_path = data['lq_path'][0] if 'lq_path' in data else None

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad()
        loss_dict = OrderedDict()
        # train.autocast: the forward in mixed precision, the losses (and the weights) in float32
        with mixed_precision(self.device.type, self._train_autocast):
            if self.cri_usl is not None:
                self.output, aux = to_float32(self.net_g(self.lq, return_aux=True))
            else:
                self.output, aux = to_float32(self.net_g(self.lq)), None
        l_total = 0
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total = l_total + l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            for name, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    l_total = l_total + value
                    loss_dict[name] = value
        if self.cri_usl is not None:
            l_usl = self.cri_usl(aux['confidences'], self.output, self.gt, lq_size=self.lq.shape[-2:])
            l_total = l_total + l_usl
            loss_dict['l_usl'] = l_usl
        l_total.backward()
        self.optimizer_g.step()

        if aux is not None:
            with torch.no_grad():
                for i, (halted, conf) in enumerate(zip(aux['global_halted'], aux['confidences'])):
                    loss_dict[f'sparsity_l{i + 1}'] = halted.float().mean()
                    loss_dict[f'conf_l{i + 1}'] = conf.mean()
        self.log_dict = self.reduce_loss_dict(loss_dict)

        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        self._trained_iter = current_iter
        if self.after_iteration is not None:
            self.after_iteration(current_iter)

    def resume_training(self, resume_state: Dict) -> None:
        super().resume_training(resume_state)
        self._trained_iter = resume_state['iter']

    def _tested_network(self) -> torch.nn.Module:
        """The bare network that validation and test run: the EMA one where training keeps one."""
        return self.get_bare_model(self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g)

    def test(self) -> None:
        """SR of ``self.lq`` (in ``val.dtype``: the network in that precision, made once per validation by
        :func:`~adaformer_arch.utils.precision.in_precision`; output and statistics in float32)."""
        bare = self._tested_network()
        was_training = bare.training
        net = self._cast_net if self._cast_net is not None else in_precision(bare, self._test_dtype)
        bare.eval()
        net.eval()
        tile = self.opt.get('tile')

        with torch.no_grad(), _no_cudnn_autotuning():
            if self.device.type == 'cuda' and not self._cuda_started:
                # untimed, on a small corner: CUDA starts its libraries (cuDNN, cuBLAS) at the first forward
                self._whole_forward(net, self.lq[..., :CUDA_WARMUP_PIXELS, :CUDA_WARMUP_PIXELS])
                self._cuda_started = True
            sync(self.device)
            start = time.perf_counter()
            if tile:
                self.output, aux = self._tiled_forward(net, tile['tile_size'], tile.get('tile_pad', 0))
            else:
                self.output, aux = self._whole_forward(net, self.lq)
            sync(self.device)
            latency = time.perf_counter() - start
        bare.train(was_training)
        self._record_test(aux, latency)

    def _whole_forward(self, net: torch.nn.Module, lq: Tensor) -> Tuple[Tensor, Optional[Dict]]:
        """(B, C, h, w) -> (B, C', h*s, w*s) SR in float32 and AdaFormer's aux (None for other networks)."""
        if isinstance(net, AdaFormer):
            return forward_in_own_dtype(net, lq, return_aux=True)
        return self._padded_forward(net, lq), None

    def _tiled_forward(self, net: torch.nn.Module, tile_size: int, tile_pad: int) -> Tuple[Tensor, Optional[Dict]]:
        """The option ``tile: {tile_size, tile_pad}`` (as in HAT): ``lq`` super-resolved in tiles whose kept cores
        are ``tile_size`` LR pixels and which see ``tile_pad`` more pixels of context on every side that is not an
        image border (:func:`run_tiled` with tiles of ``tile_size + 2 * tile_pad`` overlapping by
        ``2 * tile_pad``), so memory is bounded by the tile whatever the image size.

        For AdaFormer the per-tile halting maps are stitched like the image, and the returned aux holds them at
        pixel level: ``global_halted``/``local_halted`` as (B, 1, H, W) masks per block (a token's window halted),
        the block-mean confidence, and the MACs summed over the tiles. So the tiled statistics are fractions of
        the image's pixels, where the whole-image ones count the window-padded map's tokens and windows.
        Returns (B, C, H*s, W*s) SR and that aux (None for other networks), both on the CPU.
        """
        is_adaformer = isinstance(net, AdaFormer)
        macs = 0

        def forward(lq: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
            nonlocal macs
            if not is_adaformer:
                return self._padded_forward(net, lq), {}
            sr, aux = forward_in_own_dtype(net, lq, return_aux=True)
            macs += aux['macs']
            h, w = lq.shape[-2:]
            window_depth = window_to_pixels(halting_depth(aux['local_halted']), net.window_size)
            return sr, dict(halting_maps(aux, h, w), window_depth=window_depth[..., :h, :w])

        sr, maps = run_tiled(forward, self.lq, self.opt.get('scale', 1), tile_size + 2 * tile_pad, 2 * tile_pad,
                             self.device)
        if not is_adaformer:
            return sr, None
        depth = len(net.adam.blocks)  # block l skipped a token iff fewer than l + 1 blocks computed it
        return sr, {'global_halted': [maps['depth'] <= l for l in range(depth)],
                    'local_halted': [maps['window_depth'] <= l for l in range(depth)],
                    'confidences': [maps['confidence']], 'macs': macs}

    def _padded_forward(self, net: torch.nn.Module, lq: Tensor) -> Tensor:
        """``net(lq)``; for a windowed network (``network_g.window_size``, e.g. SwinIR) the input is padded at the
        bottom/right to a multiple of the window with AdaFormer's own padding and the output cropped back, as
        BasicSR's SwinIRModel does."""
        window = self.opt['network_g'].get('window_size')
        if not window:
            return forward_in_own_dtype(net, lq)
        h, w = lq.shape[-2:]
        scale = self.opt.get('scale', 1)
        return forward_in_own_dtype(net, pad_to_multiple(lq, window))[..., :h * scale, :w * scale]

    def _record_test(self, aux: Optional[Dict], latency: float) -> None:
        name = osp.splitext(osp.basename(self.lq_path))[0] if self.lq_path else f'image{len(self._records)}'
        record = {'image': name, 'lr_size': list(self.lq.shape[-2:]), 'latency_ms': latency * 1000.0}
        if aux is not None:
            record['macs'] = aux['macs']
            record['sparsity'] = [m.float().mean().item() for m in aux['global_halted']]
            record['window_sparsity'] = [m.float().mean().item() for m in aux['local_halted']]
            if self.opt['val'].get('save_halting_maps'):
                self._save_halting_maps(name, aux)
        self._records.append(record)

    def _save_halting_maps(self, name: str, aux: Dict) -> None:
        h, w = self.lq.shape[-2:]
        scale = self.opt.get('scale', 1)
        maps = halting_maps(aux, h, w)
        depth, conf = (maps[k][0, 0].cpu().numpy() for k in ('depth', 'confidence'))
        if self.opt['is_train']:
            base = osp.join(self.opt['path']['visualization'], name, f'{name}_{self._current_iter}')
        else:
            base = osp.join(self.opt['path']['visualization'], self._dataset_name, name)
        for suffix, image in (('depth', depth_to_png(depth, len(aux['global_halted']))),
                              ('confidence', confidence_to_png(conf))):
            image = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
            write_array(f'{base}_{suffix}.png', image)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:
        if self.is_train and isinstance(current_iter, int) and self._trained_iter is not None:
            # BasicSR's loop leaves its counter past total_iter (one step per epoch left): the last validation would
            # be logged and its stats file named at an iteration that never ran
            current_iter = self._trained_iter
        self._records = []
        self._dataset_name = dataloader.dataset.opt['name']
        self._current_iter = current_iter
        self._cast_net = in_precision(self._tested_network(), self._test_dtype)
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self._cast_net = None
        summary = self._summarise()
        self._log_summary(summary, current_iter, tb_logger)
        out = osp.join(self.opt['path']['log'], f'stats_{self._dataset_name}_{current_iter}.json')
        atomic_write(out, lambda f: f.write(json.dumps({'summary': summary, 'images': self._records},
                                                       indent=1).encode()))

    def _summarise(self) -> Dict:
        records = self._records
        latencies = [r['latency_ms'] for r in records]
        summary = {
            'dataset': self._dataset_name,
            'iter': self._current_iter,
            'network': self.opt['network_g'].get('type'),
            'num_images': len(records),
            'latency_ms_mean': statistics.fmean(latencies) if latencies else None,
            'latency_ms_median': statistics.median(latencies) if latencies else None,
        }
        if hasattr(self, 'metric_results'):
            summary.update({k: float(v) for k, v in self.metric_results.items()})
        if records and 'macs' in records[0]:
            pixels = sum(r['lr_size'][0] * r['lr_size'][1] for r in records)
            summary['gmacs_mean'] = statistics.fmean(r['macs'] for r in records) / 1e9
            summary['macs_per_lr_pixel'] = sum(r['macs'] for r in records) / pixels
            depth = len(records[0]['sparsity'])
            summary['sparsity'] = [statistics.fmean(r['sparsity'][i] for r in records) for i in range(depth)]
            summary['window_sparsity'] = [
                statistics.fmean(r['window_sparsity'][i] for r in records) for i in range(depth)
            ]
        return summary

    def _log_summary(self, summary: Dict, current_iter, tb_logger) -> None:
        cols = [k for k in self.opt['val'].get('metrics', {}) or {}]
        header = ['dataset'] + cols + ['latency ms (median)', 'GMACs/img']
        row = [summary['dataset']] + [f'{summary[c]:.4f}' for c in cols]
        row += [f"{summary['latency_ms_median']:.1f}"]
        row += [f"{summary['gmacs_mean']:.2f}" if 'gmacs_mean' in summary else '-']
        if 'sparsity' in summary:
            header += [f'sp{i + 1} %' for i in range(len(summary['sparsity']))]
            row += [f'{100 * s:.1f}' for s in summary['sparsity']]
        table = '| ' + ' | '.join(header) + ' |\n|' + '---|' * len(header) + '\n| ' + ' | '.join(row) + ' |'
        get_root_logger().info(f'AdaFormer statistics ({summary["num_images"]} images):\n{table}')
        if tb_logger:
            name = summary['dataset']
            tb_logger.add_scalar(f'stats/{name}/latency_ms', summary['latency_ms_median'], current_iter)
            for i, s in enumerate(summary.get('sparsity', [])):
                tb_logger.add_scalar(f'stats/{name}/sparsity_l{i + 1}', s, current_iter)

    def save_network(self, net, net_label, current_iter, param_key='params') -> None:
        with torch_save_is_atomic():
            super().save_network(net, net_label, current_iter, param_key)

    def save_training_state(self, epoch, current_iter) -> None:
        with torch_save_is_atomic(), self._state_extras():
            super().save_training_state(epoch, current_iter)

    #: the last iteration the weights have (trained in this process, or resumed); None before either
    _trained_iter: Optional[int] = None

    # Hooks of `basicsr train` (adaformer_arch/train.py) for Ctrl-C checkpoints and exact resume; None: not used.
    #: called with current_iter when that iteration is complete (optimiser step and EMA update done)
    after_iteration: Optional[Callable[[int], None]] = None
    #: returns entries to add to each training state
    training_state_extras: Optional[Callable[[], Dict]] = None

    @contextlib.contextmanager
    def _state_extras(self) -> Iterator[None]:
        """Within the block, the state that BaseModel saves with ``torch.save`` gets ``training_state_extras()``."""
        save = torch.save
        if self.training_state_extras is not None:
            torch.save = lambda state, f: save({**state, **self.training_state_extras()}, f)
        try:
            yield
        finally:
            torch.save = save
