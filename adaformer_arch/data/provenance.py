"""What made the files in a ``basicsr prepare`` output folder: ``OUT/.prepare.json``.

A command keeps the outputs it finds (so re-running completes an interrupted run), which is only right when the same
input and settings made them. Each command therefore records, before it writes anything, its input folder, the
settings that decide its outputs (official or computed LR, sub-image grid, name prefix, minimum size) and its output
files, and refuses a run whose outputs would land next to files that other settings or another input made:
otherwise the folder would silently mix both. Only files still on disk count: a record whose files were deleted (or
not written yet, as after a Ctrl-C at the start, or by a run started at the same time) does not stand in the way,
and is kept. (An existing output whose size does not fit
this run's crop, e.g. a mod-4 HR image met by a run at x3, is caught per image by :func:`jobs.size_mismatch`.)

Record layout: ``{"runs": [{"command", "source", "settings", "names"}, ...]}``, one run per command and input
folder, ``names`` relative to OUT; a later run from the same input may add settings (another scale's LR) and names.
Load, check and write happen under an exclusive lock (``OUT/.prepare.lock``), so runs started together into one
folder (the per-set loop with ``&``) do not lose each other's entries; the record is written atomically.
"""
import contextlib
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Sequence

from ..utils.atomic_io import atomic_write
from .jobs import InputError

try:
    import fcntl
except ImportError:  # not POSIX: no lock (runs into one folder must then not overlap)
    fcntl = None

RECORD_NAME = '.prepare.json'
LOCK_NAME = '.prepare.lock'
SHOWN = 5  # names listed in a message


@contextlib.contextmanager
def _locked(out: str) -> Iterator[None]:
    try:
        os.makedirs(out, exist_ok=True)
        lock = open(os.path.join(out, LOCK_NAME), 'a')
    except OSError as err:
        raise InputError(f"cannot write the record of '{out}' ({err}); choose another --out") from None
    with lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    try:
        with open(path) as f:
            runs = json.load(f)['runs']
        for run in runs:
            run['command'], run['source'], run['settings'], run['names']  # noqa: B018  (the keys every run has)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"'{path}' (the record of what made this folder's files) does not read ({err}); if the "
                         'folder holds nothing you want to keep, delete it, else choose another --out') from None
    return runs


def _describe(settings: Dict[str, Any]) -> str:
    return ', '.join(f'{key} {value!r}' for key, value in sorted(settings.items())) or 'no settings'


def _listed(names: Sequence[str]) -> str:
    return f"{', '.join(names[:SHOWN])}{' ...' if len(names) > SHOWN else ''}"


def _outputs(count: int) -> str:
    return f'{count} output{"" if count == 1 else "s"}'


def claim_outputs(out: str, command: str, source: str, settings: Dict[str, Any], names: Iterable[str],
                  shared: Sequence[str] = (), in_place: bool = False) -> None:
    """Check ``OUT/.prepare.json`` and add this run to it, before anything is written.

    Args:
        out: the command's ``--out`` folder.
        command: the subcommand (with the split for div2k, whose splits write to different folders).
        source: the input folder.
        settings: the options that decide the outputs (JSON values); a setting the earlier run from this input did
            not have is added, one it had must be equal.
        names: one output file per input image (relative to ``out``) that stands for all of its outputs.
        shared: keys of ``settings`` that every input of ``command`` must share (they write into common folders).
        in_place: ``source`` is a folder of ``out`` (div2k converting in place): the run that wrote the files of
            this run's names is then this run's input, not another input.

    Raises:
        InputError: files made with other settings, or from another input under this run's names, exist.
    """
    path = os.path.join(out, RECORD_NAME)
    source = os.path.realpath(source)
    names = sorted(set(names))
    with _locked(out):
        runs = _load(path)
        mine, continued = None, set()
        for run in runs:
            if run['command'] != command:
                continue
            # only files on disk count (a run started at the same time may not have written any yet: its entry stays)
            on_disk = [name for name in run['names'] if os.path.exists(os.path.join(out, name))]
            own = run['source'] == source
            made_my_input = in_place and not own and bool(set(on_disk) & set(names))
            if own and not on_disk:
                run['settings'] = {}  # nothing of it is left: this run starts it again
            compared = settings.keys() if own or made_my_input else shared
            changed = {key: settings[key] for key in compared
                       if key in run['settings'] and run['settings'][key] != settings[key]}
            if changed and on_disk:
                raise InputError(
                    f"'{out}' holds {_outputs(len(on_disk))} of '{run['source']}' made with "
                    f"{_describe({key: run['settings'][key] for key in changed})} ({_listed(on_disk)}); this run "
                    f'asks for {_describe(changed)}. Files already there are kept, so the folder would mix both: '
                    f'choose another --out, or delete those files (and {path}) to prepare them again')
            if own:
                mine = run
            elif made_my_input:  # its files are this run's input: they stay its own
                continued.update(set(on_disk) & set(names))
            else:
                taken = sorted(set(on_disk).intersection(names))
                if taken:
                    advice = 'give this set its own --prefix or --out' if command == 'benchmark' else \
                        'choose another --out'
                    raise InputError(
                        f"'{out}' already holds {_outputs(len(taken))} of the same names made from "
                        f"'{run['source']}' ({_listed(taken)}); they would be kept instead of this input's: {advice} "
                        f"(if '{run['source']}' is this folder moved, delete {path} to start a new record)")
        names = [name for name in names if name not in continued]
        if mine is None:
            runs.append({'command': command, 'source': source, 'settings': settings, 'names': names})
        else:
            mine['names'] = sorted(set(mine['names']).union(names))
            mine['settings'] = {**mine['settings'], **settings}
        atomic_write(path, lambda f: json.dump({'runs': runs}, f, indent=1), mode='w')
