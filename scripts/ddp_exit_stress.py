"""Run the two-rank CPU DDP job of ``tests/test_train_test_e2e.py::test_ddp_on_cpu_with_two_processes`` many times
and count the runs that fail, and how (docs/reliability.md, "DDP shutdown").

    python scripts/ddp_exit_stress.py [--runs 100] [--out /tmp/ddp_exit_stress]

Each run: ``python -m torch.distributed.run --nproc_per_node=2 -m adaformer_arch.train -opt ... --launcher pytorch``
(gloo, the tests' tiny network and data, 2 iterations, one thread per rank). The output of every failed run is kept
in OUT/failed_<i>.txt; a summary is written to OUT/summary.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
from helpers import make_pairs, torchrun_command, train_options, write_yaml  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=100)
    parser.add_argument('--out', default='/tmp/ddp_exit_stress')
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    data = make_pairs(out / 'data')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    failed, aborted = [], []
    start = time.time()
    for i in range(args.runs):
        work = out / f'run{i}'
        work.mkdir()
        opt_file = write_yaml(work / 'ddp.yml', train_options(data, name='ddp', total_iter=2,
                                                                dist_params={'backend': 'gloo'}))
        proc = subprocess.run(torchrun_command('adaformer_arch.train', opt_file), cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode:
            failed.append(i)
            if 'SIGABRT' in proc.stderr:
                aborted.append(i)
            (out / f'failed_{i}.txt').write_text(proc.stderr + '\n---- stdout ----\n' + proc.stdout)
        shutil.rmtree(work)
        print(f'run {i + 1}/{args.runs}: exit status {proc.returncode}; {len(failed)} failed so far', flush=True)
    summary = {'runs': args.runs, 'failed': failed, 'aborted_sigabrt': aborted, 'seconds': round(time.time() - start)}
    (out / 'summary.json').write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == '__main__':
    main()
