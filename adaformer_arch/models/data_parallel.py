"""``DataParallel`` for AdaFormer's training forward, whose output is ``(sr, aux)``.

BasicSR wraps the network in ``torch.nn.DataParallel`` when a run has several GPUs and no launcher (``num_gpu: auto``
on a multi-GPU machine, plain ``basicsr train``). DataParallel merges the replicas' outputs with its ``gather``, which
concatenates tensors and recurses into tuples, lists and dicts, but cannot merge a Python number: AdaFormer's
``aux['macs']`` (an int per replica) made the first training step fail with ``TypeError: 'int' object is not
iterable``.
"""
from typing import Any, List

from torch.nn import DataParallel


class AuxDataParallel(DataParallel):
    """DataParallel that sums the replicas' integer ``aux`` entries (``macs``, ``macs_for_aux``: MACs of the
    whole batch) and gathers everything else as DataParallel does (the output and the aux tensors concatenated
    along the batch)."""

    def gather(self, outputs: List[Any], output_device: Any) -> Any:
        first = outputs[0]
        if not (isinstance(first, tuple) and len(first) == 2 and isinstance(first[1], dict)):
            return super().gather(outputs, output_device)
        counts = {k: sum(aux[k] for _, aux in outputs) for k, v in first[1].items() if isinstance(v, int)}
        stripped = [(out, {k: v for k, v in aux.items() if k not in counts}) for out, aux in outputs]
        out, aux = super().gather(stripped, output_device)
        aux.update(counts)
        return out, aux
