"""Fair wall-clock timing on asynchronous devices, shared by the test loop's latency and the bench."""
import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a clock read after it is fair."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
