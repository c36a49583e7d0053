"""Loading BasicSR weight files safely into a network, with errors that say exactly what does not fit.

Files are read with ``torch.load(weights_only=True)`` only: a file holding pickled objects other than tensors and
plain containers (which could run code when unpickled) is refused, never retried with ``weights_only=False``.
"""
import math
import pickle
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

MAX_LISTED = 12  # tensors named in a mismatch report before "... and N more"


class WeightsError(Exception):
    """A weights file that cannot be used (missing, unsafe, unreadable, or made for another network)."""


class WeightsMismatchError(WeightsError):
    """A readable weights file made for another network (other scale, width, depth...)."""


def load_state_dict(path: str, param_key: Optional[str] = None) -> Tuple[Optional[str], Dict[str, Tensor]]:
    """The state dict in a BasicSR weights file: ``param_key`` if given (``params`` for ``params_ema`` where the
    file has only ``params``, as the shipped weights; any other key the file lacks is an error, where BasicSR's
    ``load_network`` would silently take ``params``), else ``params_ema``, else ``params``, else the file itself;
    a ``module.`` prefix (DataParallel) is removed. -> (the entry read, None for the whole file; the state dict)."""
    state = read_checkpoint(path)
    if param_key is None:
        param_key = next((k for k in ('params_ema', 'params') if k in state), None)
    elif param_key not in state and param_key != 'params_ema':
        raise WeightsError(f'{path} has no {param_key!r} entry (it has: {listing(sorted(map(str, state)))})')
    param_key = entry_key(state, param_key)
    return param_key, checkpoint_entry(path, state, param_key)


def read_checkpoint(path: str) -> Dict:
    """The dict a weights file holds, read with ``weights_only=True``; :class:`WeightsError` says why it cannot be
    used (missing, unsafe, unreadable, not a dict)."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f'weights file {path} not found') from None
    except pickle.UnpicklingError as err:
        blocked = [line.strip() for line in str(err).splitlines() if 'GLOBAL' in line]
        if not blocked:  # not a pickle of objects at all: an image, a text file, a truncated file...
            lines = str(err).splitlines() or [type(err).__name__]
            reason = next((line.strip() for line in lines if line.strip().startswith('Unsupported')), lines[0])
            raise WeightsError(f'cannot read {path} as a PyTorch weights file ({reason}); give a .pth written by '
                               'torch.save') from None
        detail = f' ({blocked[0]})'
        raise WeightsError(
            f'refusing to load {path}: it holds pickled objects other than tensors, which could run code when '
            f'loaded{detail}. Only plain weight files are loaded; re-save the weights as tensors only, e.g. '
            f"torch.save({{'params': net.state_dict()}}, path), from a source you trust.") from None
    except Exception as err:  # torch raises many types for a file that is not a checkpoint (KeyError, RuntimeError..)
        raise WeightsError(f'cannot read {path} as a PyTorch weights file (corrupt, truncated or another format: '
                           f'{type(err).__name__}: {err})') from None
    if not isinstance(state, dict):
        raise WeightsError(f'{path} holds a {type(state).__name__}, not a dict of weights')
    return state


def entry_key(state: Dict, param_key: Optional[str]) -> Optional[str]:
    """The entry of ``state`` (the dict a weights file holds) that BasicSR's ``load_network`` reads for
    ``param_key``: that one, or ``params`` where there is no ``param_key`` but ``params``; None: the whole dict."""
    if param_key is not None and param_key not in state and 'params' in state:
        return 'params'
    return param_key


def checkpoint_entry(path: str, state: Dict, param_key: Optional[str]) -> Dict[str, Tensor]:
    """What BasicSR's ``load_network(net, path, param_key=param_key)`` loads from ``state`` (the dict ``path``
    holds): the :func:`entry_key` entry, all of ``state`` for None; a ``module.`` prefix (DataParallel) removed."""
    param_key = entry_key(state, param_key)
    if param_key is not None:
        if param_key not in state:
            raise WeightsError(f'{path} has no {param_key!r} entry (it has: {listing(sorted(map(str, state)))})')
        state = state[param_key]
    bad = [str(k) for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise WeightsError(f'{path}: entries that are not tensors: {listing(bad)} (expected a BasicSR weights file '
                           f"with 'params' / 'params_ema', or a plain state dict)")
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def listing(items: List[str]) -> str:
    """``items`` joined by commas, cut after ``MAX_LISTED`` with how many more there are."""
    shown = ', '.join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f'{shown} ... and {len(items) - MAX_LISTED} more'


def mismatches(net: nn.Module, state: Dict[str, Tensor]) -> List[str]:
    """One line per tensor that does not fit ``net``: missing, unexpected, or shaped differently; first, when the
    confidence estimator's width differs, the option that makes it fit (a report cut after ``MAX_LISTED`` lines
    keeps it)."""
    own = net.state_dict()
    lines = []
    estimator = [k for k in own if k.endswith('estimator.conv1.weight') and k in state
                 and state[k].shape[0] != own[k].shape[0]]  # its hidden channels (not the input width)
    if estimator:  # trained with another estimator_dim (the project's first releases had 32 channels)
        width = state[estimator[0]].shape[0]
        lines.append(f'the checkpoint\'s confidence estimator has {width} hidden channels: set network_g '
                     f'estimator_dim: {width}')
    lines += _scale_hint(net, own, state)
    lines += [f'{k}: checkpoint {tuple(state[k].shape)}, network {tuple(v.shape)}'
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        lines.append(f'missing from the checkpoint: {listing(missing)}')
    if unexpected:
        lines.append(f'not in the network: {listing(unexpected)}')
    return lines


def _scale_hint(net: nn.Module, own: Dict[str, Tensor], state: Dict[str, Tensor]) -> List[str]:
    """['the checkpoint is for xS ...'] when the upsampling conv (``conv_up``: out_ch * upscale^2 outputs) of an
    AdaFormer-like network says the checkpoint was trained for another scale, else []."""
    upscale = getattr(net, 'upscale', None)
    key = next((k for k in own if k.endswith('conv_up.weight') and k in state), None)
    if not isinstance(upscale, int) or key is None or state[key].shape[0] == own[key].shape[0]:
        return []
    out_ch, theirs = own[key].shape[0] // upscale**2, state[key].shape[0]
    scale = math.isqrt(theirs // out_ch)
    if out_ch * scale**2 != theirs:
        return []
    return [f'the checkpoint is for x{scale} (its conv_up has {theirs} = {out_ch}*{scale}^2 outputs), the network '
            f'for x{upscale}: use x{upscale} weights, or set scale and network_g upscale to {scale}']


def load_weights(net: nn.Module, path: str, param_key: Optional[str] = None, network_desc: str = 'the network') \
        -> Optional[str]:
    """Load ``path`` into ``net`` strictly; :class:`WeightsMismatchError` lists every tensor that disagrees (name and
    shapes) so a checkpoint for another scale or width is recognised at once. -> the entry loaded (None: the whole
    file, a plain state dict)."""
    entry, state = load_state_dict(path, param_key)
    lines = mismatches(net, state)
    if lines:
        more = [f'... and {len(lines) - MAX_LISTED} more'] if len(lines) > MAX_LISTED else []
        raise WeightsMismatchError(f'{path} does not fit {network_desc}:\n  ' + '\n  '.join(lines[:MAX_LISTED] + more))
    net.load_state_dict(state, strict=True)
    return entry
