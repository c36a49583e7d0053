"""``DataParallel`` for AdaFormer's training forward, whose output is ``(sr, aux)``.

BasicSR wraps the network in ``torch.nn.DataParallel`` when a run has several GPUs and no launcher (``num_gpu: auto``
on a multi-GPU machine, plain ``basicsr train``). DataParallel merges the replicas' outputs with its ``gather``, which
concatenates tensors and recurses into tuples, lists and dicts, but cannot merge a Python number: AdaFormer's
``aux['macs']`` (an int per replica) made the first training step fail with ``TypeError: 'int' object is not
iterable``.

DataParallel also runs each replica in a thread of its own and turns autocast on there without a dtype
(``torch.nn.parallel.parallel_apply``), so the replicas ran in the device's default autocast dtype (float16 on CUDA,
without a loss scaler) whatever the caller chose: ``train.autocast: bfloat16`` silently trained in float16.
"""
from typing import Any, List, Sequence

import torch
from torch import nn
from torch.nn import DataParallel

from ..utils.precision import Autocast


class AuxDataParallel(DataParallel):
    """DataParallel that runs its replicas in the caller's autocast dtype, sums their integer ``aux`` entries
    (``macs``, ``macs_for_aux``: MACs of the whole batch) and gathers everything else as DataParallel does (the
    output and the aux tensors concatenated along the batch)."""

    def parallel_apply(self, replicas: Sequence[nn.Module], inputs: Sequence[Any], kwargs: Any) -> List[Any]:
        """Each replica under the caller's autocast dtype (see the module docstring)."""
        device_type = self.src_device_obj.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            replicas = [Autocast(replica, dtype) for replica in replicas]
        return super().parallel_apply(replicas, inputs, kwargs)

    def gather(self, outputs: List[Any], output_device: Any) -> Any:
        first = outputs[0]
        if not (isinstance(first, tuple) and len(first) == 2 and isinstance(first[1], dict)):
            return super().gather(outputs, output_device)
        counts = {k: sum(aux[k] for _, aux in outputs) for k, v in first[1].items() if isinstance(v, int)}
        stripped = [(out, {k: v for k, v in aux.items() if k not in counts}) for out, aux in outputs]
        out, aux = super().gather(stripped, output_device)
        aux.update(counts)
        return out, aux
