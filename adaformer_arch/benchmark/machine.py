"""A description of the machine and software a benchmark ran on, for the JSON."""
import os
import platform
import subprocess
from typing import Dict, List, Optional

import torch


def _cpu_model() -> Optional[str]:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(['git', *args], capture_output=True, text=True, timeout=10,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_average() -> Optional[List[float]]:
    """The 1, 5 and 15 minute load averages: other work on the machine skews the timings."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, 'getloadavg') else None


def machine_info(device: torch.device) -> Dict:
    """CPU, cores, load, OS, Python/torch/basicsr versions, torch threading and backends, git commit."""
    import basicsr

    info = {
        'cpu': _cpu_model(),
        'logical_cpus': os.cpu_count(),
        'usable_cpus': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
        'load_average_1_5_15': load_average(),
        'platform': platform.platform(),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'basicsr': basicsr.__version__,
        'torch_threads': torch.get_num_threads(),
        'torch_interop_threads': torch.get_num_interop_threads(),
        'mkldnn': torch.backends.mkldnn.is_available(),
        'mkl': torch.backends.mkl.is_available(),
        'env_threads': {k: os.environ[k] for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS') if k in os.environ},
        'git_commit': _git('rev-parse', 'HEAD'),
        'git_dirty': bool(_git('status', '--porcelain', '--untracked-files=no')),
        'device': str(device),
    }
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    return info
