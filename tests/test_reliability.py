"""`basicsr train` survives SIGKILL, corrupt or unsafe training states and Ctrl-C, and a resumed run continues
exactly as the uninterrupted one (docs/reliability.md).

The reference is one uninterrupted tiny run: 4 images x dataset_enlarge_ratio 3 = 12 samples per epoch, batch 2,
so 6 iterations per epoch (epoch 0: iterations 1-6, epoch 1: 7-12, epoch 2: 13-18), a checkpoint every 3
iterations, CPU, num_worker_per_gpu 0, manual_seed 0. Its logged losses per iteration and final weights are what
every interrupted and resumed run must reproduce.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import torch

import adaformer_arch  # noqa: F401
from basicsr.archs import build_network
from adaformer_arch.train import Training
from adaformer_arch.utils.exact_resume import RESUME_POINT, ResumableSampler
from basicsr.data import build_dataloader, build_dataset

from helpers import TINY_NET, CreatesMarker, make_pairs, run_cli, save_as_if_on_gpu, train_options, write_yaml

TOTAL_ITER = 18
ITERS_PER_EPOCH = 6
BATCH = 2

# Installed in the training subprocess (as sitecustomize): when it is about to rename the temporary file of a file
# named like the pattern $PAUSE_BEFORE_RENAME into place (and, if $PAUSE_ARMED_BY is set, once that file exists), it
# writes the file's name to $PAUSED and sleeps, so that the test can kill or interrupt it mid-write.
PAUSE_HOOK = '''
import fnmatch, os, time
_target, _armed_by, _replace = os.environ.get('PAUSE_BEFORE_RENAME'), os.environ.get('PAUSE_ARMED_BY'), os.replace
def _paused_replace(src, dst, *args, **kwargs):
    if (_target and fnmatch.fnmatch(os.path.basename(os.fspath(dst)), _target)
            and (not _armed_by or os.path.exists(_armed_by))):
        with open(os.environ['PAUSED'], 'w') as f:
            f.write(os.path.basename(os.fspath(dst)))
        time.sleep(600)
    return _replace(src, dst, *args, **kwargs)
os.replace = _paused_replace
'''


def pause_hook(tmp_path: Path, pattern: str, **env: str) -> Dict[str, str]:
    """Install PAUSE_HOOK under tmp_path/hook; the environment that makes a run pause before renaming a file named
    like ``pattern`` into place (plus ``env``, e.g. PAUSE_ARMED_BY); it writes that file's name to tmp_path/paused."""
    (tmp_path / 'hook').mkdir()
    (tmp_path / 'hook' / 'sitecustomize.py').write_text(PAUSE_HOOK)
    return dict(env, PAUSE_BEFORE_RENAME=pattern, PAUSED=str(tmp_path / 'paused'),
                PYTHONPATH=os.pathsep.join([str(tmp_path / 'hook')] + sys.path))

def options(data: Path) -> Dict:
    opt = train_options(data, total_iter=TOTAL_ITER)
    opt['datasets']['train']['dataset_enlarge_ratio'] = 3
    opt['val']['val_freq'] = 1000  # validate only after the last iteration
    opt['logger']['save_checkpoint_freq'] = 3
    return opt


def losses(log: str) -> Dict[int, str]:
    """iteration -> the logged losses of that iteration (text from 'l_pix' to the end of the line)."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'iter:\s+(\d+),.*?(l_pix: .*)', log)}


def resumed_from(log: str) -> int:
    return int(re.search(r'Resuming training from epoch: \d+, iter: (\d+)\.', log).group(1))


def state_iters(exp: Path) -> List[int]:
    return sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state'))


def start(args: List[str], cwd: Path, log: Path, **env: str) -> subprocess.Popen:
    """Start ``basicsr <args>`` in ``cwd``, stdout and stderr to ``log``."""
    with open(log, 'w') as out:
        return subprocess.Popen([sys.executable, '-m', 'adaformer_arch.cli', *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', **env))


def ctrl_c(proc: subprocess.Popen) -> None:
    """SIGINT to the run's process group, as a terminal does on Ctrl-C (DataLoader workers get it too)."""
    os.killpg(proc.pid, signal.SIGINT)


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None and not condition():
            raise AssertionError(f'the run ended (status {proc.returncode}) before {what}')
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def copy_experiment(src: Path, dst: Path) -> Path:
    shutil.copytree(src / 'experiments', dst / 'experiments')
    return dst / 'experiments' / 'tiny'


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The uninterrupted run: (working dir, option file, losses per iteration, final weights)."""
    work = tmp_path_factory.mktemp('reference')
    opt_file = write_yaml(work / 'train.yml', options(make_pairs(work / 'data')))
    proc = run_cli(['train', '-opt', str(opt_file)], cwd=work)
    log = proc.stdout + proc.stderr
    assert sorted(losses(log)) == list(range(1, TOTAL_ITER + 1))
    weights = torch.load(work / 'experiments' / 'tiny' / 'models' / 'net_g_latest.pth', weights_only=True)
    return work, opt_file, losses(log), weights


def assert_same_weights(a: Dict, b: Dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key]), key


def assert_continues_reference(log: str, reference_losses: Dict[int, str], first: int) -> None:
    got = losses(log)
    assert sorted(got) == list(range(first, TOTAL_ITER + 1))
    assert {i: reference_losses[i] for i in got} == got


def plant_unsafe_state(path: Path, marker: Path) -> None:
    state = {'epoch': 0, 'iter': int(path.stem), 'optimizers': [], 'schedulers': [], 'x': CreatesMarker(marker)}
    torch.save(state, path)


def test_unsafe_state_payload_really_runs_code_when_unpickled(tmp_path):
    """The planted state of the tests below is a real exploit: loading it without weights_only runs its code."""
    plant_unsafe_state(tmp_path / '1.state', tmp_path / 'ran')
    torch.load(tmp_path / '1.state', weights_only=False)
    assert (tmp_path / 'ran').exists()


@pytest.fixture(scope='module')
def resumed_runs(reference, tmp_path_factory):
    """Two resumes of copies of the reference experiment, run side by side:

    * 'boundary': --auto_resume after truncating the newest state (18) and replacing the next (15) by one whose
      unpickling would create a marker file; it must fall back to 12, the end of epoch 1;
    * 'mid_epoch': path.resume_state 9.state (half-way through epoch 1), without --auto_resume;
    * 'gpu_written': --auto_resume from 9.state and net_g_9.pth re-written as a GPU run writes them (every tensor
      tagged cuda:0, the CUDA generator states in the resume point), the newer states removed.
    """
    work, opt_file, _, _ = reference
    runs = {}
    boundary = tmp_path_factory.mktemp('boundary')
    exp = copy_experiment(work, boundary)
    states = exp / 'training_states'
    (states / '18.state').write_bytes((states / '18.state').read_bytes()[:1000])
    plant_unsafe_state(states / '15.state', boundary / 'marker')
    runs['boundary'] = (boundary, start(['train', '-opt', str(opt_file), '--auto_resume'], boundary,
                                        boundary / 'out.log'))
    mid = tmp_path_factory.mktemp('mid_epoch')
    copy_experiment(work, mid)
    resume = f'path:resume_state={mid}/experiments/tiny/training_states/9.state'
    runs['mid_epoch'] = (mid, start(['train', '-opt', str(opt_file), '--force_yml', resume], mid, mid / 'out.log'))
    gpu = tmp_path_factory.mktemp('gpu_written')
    exp = copy_experiment(work, gpu)
    for later in (12, 15, 18):
        (exp / 'training_states' / f'{later}.state').unlink()
    state = torch.load(exp / 'training_states' / '9.state', weights_only=True)
    state[RESUME_POINT]['rng']['cuda'] = [torch.zeros(16, dtype=torch.uint8)]  # torch.cuda.get_rng_state_all()
    save_as_if_on_gpu(state, exp / 'training_states' / '9.state')
    save_as_if_on_gpu(torch.load(exp / 'models' / 'net_g_9.pth', weights_only=True), exp / 'models' / 'net_g_9.pth')
    runs['gpu_written'] = (gpu, start(['train', '-opt', str(opt_file), '--auto_resume'], gpu, gpu / 'out.log'))
    for name, (folder, proc) in runs.items():
        assert proc.wait(timeout=300) == 0, (folder / 'out.log').read_text()
    return {name: (folder, (folder / 'out.log').read_text()) for name, (folder, _) in runs.items()}


def test_corrupt_and_unsafe_states_are_skipped_with_warnings(resumed_runs):
    folder, log = resumed_runs['boundary']
    states = folder / 'experiments' / 'tiny' / 'training_states'
    assert 'WARNING: Skipping training state experiments/tiny/training_states/18.state: it does not load' in log
    assert ('WARNING: Skipping training state experiments/tiny/training_states/15.state: it does not load '
            '(UnpicklingError' in log)
    assert not (folder / 'marker').exists()
    assert len(list(states.glob('*.state'))) == 6  # nothing deleted
    assert resumed_from(log) == 12


def test_resume_at_epoch_boundary_continues_exactly(reference, resumed_runs):
    _, _, reference_losses, reference_weights = reference
    folder, log = resumed_runs['boundary']
    assert 'Exact resume: epoch 1 continues after its first 12 samples' in log
    assert_continues_reference(log, reference_losses, first=13)
    latest = torch.load(folder / 'experiments' / 'tiny' / 'models' / 'net_g_latest.pth', weights_only=True)
    assert_same_weights(latest, reference_weights)


@pytest.mark.parametrize('run', ['mid_epoch', 'gpu_written'])
def test_resume_mid_epoch_continues_exactly(reference, resumed_runs, run):
    """From 9.state, as written here or as a GPU run writes it: its training state and network checkpoint load onto
    the CPU (the optimiser state too), CUDA generator states are left alone, and the run continues exactly."""
    _, _, reference_losses, reference_weights = reference
    folder, log = resumed_runs[run]
    assert 'Skipping training state' not in log
    assert resumed_from(log) == 9
    assert 'Exact resume: epoch 1 continues after its first 6 samples' in log
    assert_continues_reference(log, reference_losses, first=10)
    latest = torch.load(folder / 'experiments' / 'tiny' / 'models' / 'net_g_latest.pth', weights_only=True)
    assert_same_weights(latest, reference_weights)


def test_sigkill_anywhere_then_auto_resume(reference, tmp_path):
    """SIGKILL while a training state is being written, then twice at random moments of resumed runs; each
    --auto_resume continues from the newest complete state, and the last one ends exactly as the reference."""
    _, opt_file, reference_losses, reference_weights = reference
    exp = tmp_path / 'experiments' / 'tiny'
    paused = tmp_path / 'paused'
    proc = start(['train', '-opt', str(opt_file)], tmp_path, tmp_path / 'run0.log', **pause_hook(tmp_path, '9.state'))
    wait_until(paused.exists, proc, 'the write of 9.state')
    kill(proc)
    leftovers = list((exp / 'training_states').glob('.9.state.*.tmp'))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # written, never renamed into place
    assert state_iters(exp) == [3, 6]

    rng = random.Random()
    logs = [(tmp_path / 'run0.log').read_text()]
    for run in range(1, 4):
        newest_complete = state_iters(exp)[-1]
        log_file = tmp_path / f'run{run}.log'
        proc = start(['train', '-opt', str(opt_file), '--auto_resume'], tmp_path, log_file)
        if run < 3:  # killed at a random moment after it has started training again
            wait_until(lambda: 'Start training from epoch' in log_file.read_text(), proc, 'training to start')
            time.sleep(rng.uniform(0.0, 0.4))
            kill(proc)
        else:
            assert proc.wait(timeout=300) == 0, log_file.read_text()
        log = log_file.read_text()
        logs.append(log)
        assert resumed_from(log) == newest_complete
    assert f'Removed experiments/tiny/training_states/{leftovers[0].name}, a write cut short by a crash.' in logs[1]
    assert not list(exp.rglob('*.tmp'))
    final = logs[-1]
    assert 'End of training' in final
    # as many iterations as the reference (a killed run may have got to the end already: the last one then
    # resumes from the final state and logs no iteration)
    assert max(max(losses(log), default=0) for log in logs) == TOTAL_ITER
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    for log in logs:  # every iteration any of the runs logged has the reference's losses
        got = losses(log)
        assert {i: reference_losses[i] for i in got} == got
    latest = torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True)
    assert_same_weights(latest, reference_weights)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(reference, tmp_path):
    """Ctrl-C after iteration 2 of a run like the reference, and (side by side) of one with a DataLoader worker,
    which must not die of the signal before the main process has saved."""
    _, opt_file, reference_losses, reference_weights = reference
    exp = tmp_path / 'experiments' / 'tiny'
    (tmp_path / 'workers').mkdir()
    # total_iter 1000 for these runs only: Ctrl-C surely comes before the end; the data and losses are the same
    longer = ['train', '-opt', str(opt_file), '--force_yml', 'train:total_iter=1000']
    runs = [(start(longer, tmp_path, tmp_path / 'interrupted.log'), tmp_path / 'interrupted.log'),
            (start(longer + ['datasets:train:num_worker_per_gpu=1'], tmp_path / 'workers', tmp_path / 'workers.log'),
             tmp_path / 'workers.log')]
    for proc, log_file in runs:
        wait_until(lambda: re.search(r'iter:\s+2,', log_file.read_text()) is not None, proc, 'iteration 2')
        ctrl_c(proc)
    for proc, log_file in runs:
        assert proc.wait(timeout=120) == 130, log_file.read_text()
    workers_log = (tmp_path / 'workers.log').read_text()
    assert 'Stopped by Ctrl-C after iteration' in workers_log and 'Traceback' not in workers_log
    log = (tmp_path / 'interrupted.log').read_text()
    stopped = int(re.search(r'Stopped by Ctrl-C after iteration (\d+): saved (\S+) and (\S+);', log).group(1))
    assert 2 <= stopped < TOTAL_ITER
    assert f'saved {exp}/models/net_g_{stopped}.pth and {exp}/training_states/{stopped}.state' in log
    assert 'Traceback' not in log
    state = torch.load(exp / 'training_states' / f'{stopped}.state', weights_only=True)
    assert state['iter'] == stopped and state['epoch'] == (stopped - 1) // ITERS_PER_EPOCH
    regular = torch.load(reference[0] / 'experiments' / 'tiny' / 'training_states' / '3.state', weights_only=True)
    # the scheduler has stepped as for a regular checkpoint (BasicSR steps it from iteration 2 on)
    assert state['schedulers'][0]['last_epoch'] - stopped == regular['schedulers'][0]['last_epoch'] - 3 == -1
    assert all(s['step'] == stopped for s in state['optimizers'][0]['state'].values())
    assert state[RESUME_POINT]['samples_done'] == ((stopped - 1) % ITERS_PER_EPOCH + 1) * BATCH

    proc = start(['train', '-opt', str(opt_file), '--auto_resume'], tmp_path, tmp_path / 'resumed.log')
    assert proc.wait(timeout=300) == 0
    resumed = (tmp_path / 'resumed.log').read_text()
    assert resumed_from(resumed) == stopped
    assert_continues_reference(resumed, reference_losses, first=stopped + 1)
    latest = torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True)
    assert_same_weights(latest, reference_weights)


def test_second_ctrl_c_during_the_checkpoint_write_leaves_no_partial_file(reference, tmp_path):
    """A second Ctrl-C while the first one's checkpoint is being written stops at once: the training state being
    written never appears and its temporary is removed, every file in place loads, and --auto_resume continues
    exactly from the newest complete state."""
    _, opt_file, reference_losses, reference_weights = reference
    exp = tmp_path / 'experiments' / 'tiny'
    armed, paused, log_file = tmp_path / 'armed', tmp_path / 'paused', tmp_path / 'interrupted.log'
    proc = start(['train', '-opt', str(opt_file), '--force_yml', 'train:total_iter=1000'], tmp_path, log_file,
                 **pause_hook(tmp_path, '*.state', PAUSE_ARMED_BY=str(armed)))
    wait_until((exp / 'training_states' / '3.state').exists, proc, 'the regular checkpoint of iteration 3')
    armed.touch()
    ctrl_c(proc)
    wait_until(paused.exists, proc, 'the write of a training state after the first Ctrl-C')
    ctrl_c(proc)
    assert proc.wait(timeout=60) != 0
    log = log_file.read_text()
    assert 'KeyboardInterrupt' in log
    cut_short = int(paused.read_text()[:-len('.state')])
    assert cut_short not in state_iters(exp) and not list(exp.rglob('*.tmp'))
    for path in list((exp / 'training_states').glob('*.state')) + list((exp / 'models').glob('*.pth')):
        torch.load(path, weights_only=True)
    newest_complete = state_iters(exp)[-1]

    proc = start(['train', '-opt', str(opt_file), '--auto_resume'], tmp_path, tmp_path / 'resumed.log')
    assert proc.wait(timeout=300) == 0
    resumed = (tmp_path / 'resumed.log').read_text()
    assert resumed_from(resumed) == newest_complete
    assert_continues_reference(resumed, reference_losses, first=newest_complete + 1)
    assert_same_weights(torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True), reference_weights)


# In-process checks of the pieces


def _experiment_folders(tmp_path: Path, monkeypatch) -> Tuple[Path, Path]:
    """Empty training_states and models folders of experiment 'tiny' under tmp_path, which becomes the cwd."""
    monkeypatch.chdir(tmp_path)
    states, models = tmp_path / 'experiments' / 'tiny' / 'training_states', tmp_path / 'experiments' / 'tiny' / 'models'
    states.mkdir(parents=True)
    models.mkdir()
    return states, models


def _resume_opt(tmp_path: Path) -> Dict:
    return {'auto_resume': True, 'name': 'tiny', 'path': {'models': str(tmp_path / 'experiments/tiny/models')}}


def test_only_an_unsafe_state_means_a_clean_start_with_a_warning(tmp_path, monkeypatch):
    states, models = _experiment_folders(tmp_path, monkeypatch)
    plant_unsafe_state(states / '4.state', tmp_path / 'marker')
    torch.save({'params': {}}, models / 'net_g_4.pth')
    training = Training()
    assert training.load_resume_state(_resume_opt(tmp_path)) is None
    assert not (tmp_path / 'marker').exists()
    assert any('Skipping training state' in n and '4.state' in n for n in training._notes)
    assert any('training starts from iteration 0' in n for n in training._notes)


def test_explicit_resume_state_that_does_not_load_stops_with_the_reason(tmp_path, monkeypatch, capsys):
    """path.resume_state without --auto_resume: an unsafe or cut-short state ends the run (status 2) with its name
    and the way out, and the planted code does not run."""
    states, models = _experiment_folders(tmp_path, monkeypatch)
    plant_unsafe_state(states / '4.state', tmp_path / 'marker')
    torch.save({'params': {}}, models / 'net_g_4.pth')
    (states / '6.state').write_bytes(b'cut short')
    for state, reason in (('4.state', 'it does not load (UnpicklingError'), ('6.state', 'it does not load (')):
        opt = {'auto_resume': False, 'name': 'tiny',
               'path': {'models': str(models), 'resume_state': str(states / state)}}
        with pytest.raises(SystemExit) as exited:
            Training().load_resume_state(opt)
        err = capsys.readouterr().err
        assert exited.value.code == 2
        assert err.startswith(f'basicsr: error: path.resume_state {states / state}: cannot resume from it: {reason}')
        assert 'use --auto_resume to pick the newest good one' in err
    assert not (tmp_path / 'marker').exists()


def test_state_whose_network_checkpoint_is_missing_is_skipped(tmp_path, monkeypatch):
    states, models = _experiment_folders(tmp_path, monkeypatch)
    torch.save({'epoch': 0, 'iter': 4, 'optimizers': [], 'schedulers': []}, states / '4.state')
    training = Training()
    assert training.load_resume_state(_resume_opt(tmp_path)) is None
    assert any('net_g_4.pth is missing' in n for n in training._notes)


def test_state_without_resume_point_resumes_as_basicsr_does(tmp_path, monkeypatch):
    """States written by BasicSR (or before resume points existed) still resume, at the start of their epoch."""
    states, models = _experiment_folders(tmp_path, monkeypatch)
    torch.save({'epoch': 1, 'iter': 4, 'optimizers': [], 'schedulers': []}, states / '4.state')
    torch.save({'params': {}}, models / 'net_g_4.pth')
    opt = dict(_resume_opt(tmp_path), network_g={}, model_type='AdaFormerModel')
    training = Training()
    assert training.load_resume_state(opt)['iter'] == 4
    assert training.resume_point is None
    assert opt['path']['pretrain_network_g'].endswith('models/net_g_4.pth')
    assert any('has no resume point (written by BasicSR or an older basicsr train): epoch 1 restarts from its first '
               'sample' in n for n in training._notes)
    training = Training()
    training.load_resume_state(dict(opt, model_type='SRModel'))  # SRModel's states never have one
    assert any('(written by model_type SRModel: only AdaFormerModel saves one)' in n for n in training._notes)


def test_auto_resume_removes_temporaries_of_writes_cut_short_anywhere_in_the_experiment(tmp_path, monkeypatch):
    """A crash can cut short any atomic write: a checkpoint, a training state, validation stats in the experiment
    folder, a validation image; --auto_resume removes their temporaries and nothing else."""
    states, models = _experiment_folders(tmp_path, monkeypatch)
    exp = tmp_path / 'experiments' / 'tiny'
    (exp / 'visualization' / 'Set5').mkdir(parents=True)
    leftovers = [models / '.net_g_4.pth.ab12.tmp', states / '.4.state.cd34.tmp', exp / '.stats_val_4.json.ef56.tmp',
                 exp / 'visualization' / 'Set5' / '.baby_4.png.gh78.tmp']
    kept = [exp / 'stats_val_2.json', exp / 'visualization' / 'Set5' / 'baby_2.png', exp / 'notes.tmp']
    for path in leftovers + kept:
        path.write_bytes(b'x')
    training = Training()
    assert training.load_resume_state(_resume_opt(tmp_path)) is None
    assert not any(path.exists() for path in leftovers)
    assert all(path.exists() for path in kept)
    removed = [n for n in training._notes if 'a write cut short by a crash' in n]
    assert len(removed) == len(leftovers) and any('.stats_val_4.json.ef56.tmp' in n for n in removed)


def test_auto_resume_leaves_temporaries_to_rank_0(tmp_path, monkeypatch):
    """Every rank of a distributed run resumes; only rank 0 removes the temporaries (ranks removing the same files
    would race, and all but one would die of FileNotFoundError)."""
    states, _ = _experiment_folders(tmp_path, monkeypatch)
    leftover = states / '.4.state.cd34.tmp'
    leftover.write_bytes(b'x')
    opt = _resume_opt(tmp_path)
    training = Training()
    assert training.load_resume_state({**opt, 'rank': 1}) is None
    assert leftover.exists() and not training._notes
    assert training.load_resume_state({**opt, 'rank': 0}) is None
    assert not leftover.exists()


def _epoch_batches(loader, sampler: ResumableSampler, epoch: int, stop_after: int = -1):
    """The GT batches of an epoch, and the resume point after ``stop_after`` of them (None if not reached)."""
    sampler.set_epoch(epoch)
    batches, point = [], None
    for batch in loader:
        batches.append(batch['gt'])
        sampler.consumed(len(batch['gt']))
        if len(batches) == stop_after:
            point = sampler.resume_point()
    return batches, point


@pytest.mark.parametrize('workers', [0, 1])
def test_sampler_resume_reproduces_the_data(tmp_path, workers):
    """Data level: after a resume point at the end of an epoch (any number of workers) or in its middle (no
    workers), the resumed loader yields the same crops and flips as the uninterrupted one."""
    data = make_pairs(tmp_path / 'data')
    dataset_opt = dict(options(data)['datasets']['train'], phase='train', scale=2, num_worker_per_gpu=workers)
    dataset = build_dataset(dataset_opt)

    def loader_and_sampler():
        sampler = ResumableSampler(dataset, 1, 0, ratio=3)
        return build_dataloader(dataset, dataset_opt, num_gpu=0, sampler=sampler, seed=0), sampler

    random.seed(0)
    torch.manual_seed(0)
    loader, sampler = loader_and_sampler()
    stop_after = ITERS_PER_EPOCH if workers else 2  # batches of epoch 0 trained before the resume point
    first, point = _epoch_batches(loader, sampler, 0, stop_after)
    second, _ = _epoch_batches(loader, sampler, 1)

    random.seed(1)  # a new process: other generator states
    torch.manual_seed(1)
    loader, sampler = loader_and_sampler()
    sampler.resume_from(point)
    resumed = _epoch_batches(loader, sampler, 0)[0] + _epoch_batches(loader, sampler, 1)[0]
    expected = first[stop_after:] + second
    assert len(resumed) == len(expected) and all(torch.equal(a, b) for a, b in zip(resumed, expected))


def test_resuming_an_experiment_of_another_network_stops_before_writing(tmp_path, monkeypatch, capsys):
    """An x3 experiment resumed with x2 options under the same name (a copied option file whose name was not
    changed): status 2 naming the state, the checkpoint and the scale, before BasicSR writes its option file and log
    into the folder (it would otherwise stop with a traceback in load_network, after writing them)."""
    states, models = _experiment_folders(tmp_path, monkeypatch)
    torch.save({'epoch': 0, 'iter': 4, 'optimizers': [], 'schedulers': []}, states / '4.state')
    x3 = dict(TINY_NET, upscale=3)
    torch.save({'params': build_network(dict(x3)).state_dict()}, models / 'net_g_4.pth')
    before = sorted(p.name for p in (tmp_path / 'experiments' / 'tiny').iterdir())
    for auto_resume in (True, False):
        opt = dict(_resume_opt(tmp_path), auto_resume=auto_resume, network_g=dict(TINY_NET, upscale=2),
                   model_type='AdaFormerModel')
        if not auto_resume:
            opt['path']['resume_state'] = str(states / '4.state')
        with pytest.raises(SystemExit) as exited:
            Training().load_resume_state(opt)
        err = capsys.readouterr().err
        assert exited.value.code == 2
        assert err.startswith('basicsr: error: path.resume_state ')  # relative with --auto_resume
        assert (f'training_states/4.state: its network checkpoint {models / "net_g_4.pth"} does not fit network_g: '
                'experiment tiny was trained with another network') in err
        assert 'the checkpoint is for x3' in err and 'give this run another name' in err
    assert sorted(p.name for p in (tmp_path / 'experiments' / 'tiny').iterdir()) == before
    opt = dict(_resume_opt(tmp_path), network_g=dict(x3), model_type='AdaFormerModel')
    assert Training().load_resume_state(opt)['iter'] == 4


def test_resume_with_another_epoch_length_restarts_the_epoch_with_a_warning(tmp_path, monkeypatch):
    """docs/reliability.md, "Not guaranteed": when the training set (or dataset_enlarge_ratio) changed, the resume
    point's sample count means nothing; the epoch restarts from its first sample and the log says why. With the
    same length the sampler resumes mid-epoch."""
    data = make_pairs(tmp_path / 'data')
    dataset = build_dataset(dict(options(data)['datasets']['train'], phase='train', scale=2))
    messages = []
    logger = type('Logger', (), {'warning': lambda self, m: messages.append(m), 'info': lambda self, m: None})()
    monkeypatch.setattr('adaformer_arch.train.get_root_logger', lambda: logger)
    length = ResumableSampler(dataset, 1, 0, ratio=3).num_samples
    point = {'epoch': 2, 'samples_done': 4, 'epoch_samples': length + 1, 'rng': None}
    training = Training()
    training.resume_point = point
    sampler = training.make_sampler(dataset, 1, 0, 3)
    assert messages == [f"The training set has {length} samples per epoch, the checkpoint's had {length + 1}: "
                        'epoch 2 restarts from its first sample.']
    sampler.set_epoch(2)
    assert sampler.samples_done == 0
    training.resume_point = dict(point, epoch_samples=length)
    sampler = training.make_sampler(dataset, 1, 0, 3)
    sampler.set_epoch(2)
    assert sampler.samples_done == 4 and len(messages) == 1
