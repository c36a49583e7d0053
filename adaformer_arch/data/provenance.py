"""What made the files in a ``basicsr prepare`` output folder: ``OUT/.prepare.json``.

A command keeps the outputs it finds (so re-running completes an interrupted run), which is only right when the same
input and settings made them. Each command therefore records, before it writes anything, its input folder, the
settings that decide the outputs' pixels (sub-image grid, official or computed LR) and the names of its outputs,
and refuses to write into a folder whose files came from other settings, or whose file names another input already
took: otherwise the folder would silently mix both. (An existing output whose size does not fit the crop of this
run, e.g. a mod-4 HR image met by a run at x3, is caught per image by :func:`jobs.size_mismatch`.)

Record layout: ``{"runs": [{"command", "source", "settings", "names"}, ...]}``, one run per command and input
folder; a later run from the same input may add settings (another scale's LR) and names; written atomically.
"""
import json
import os
from typing import Any, Dict, Iterable, List

from ..utils.atomic_io import atomic_write
from .jobs import InputError

RECORD_NAME = '.prepare.json'
SHOWN = 5  # names listed in a message


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
    return ', '.join(f'{key} {value}' for key, value in sorted(settings.items())) or 'no settings'


def claim_outputs(out: str, command: str, source: str, settings: Dict[str, Any], names: Iterable[str]) -> None:
    """Check ``OUT/.prepare.json`` and add this run to it, before anything is written.

    Args:
        out: the command's ``--out`` folder.
        command: the subcommand (with the split for div2k, whose splits write to different folders).
        source: the input folder.
        settings: the options that decide the outputs' content (JSON values); a setting the earlier run did not
            have is added, one it had must be equal.
        names: the outputs' names (unique within ``out`` for this command).

    Raises:
        InputError: an earlier run from the same input had other ``settings``, or an earlier run from another input
            made outputs of the same names.
    """
    path = os.path.join(out, RECORD_NAME)
    runs = _load(path)
    source = os.path.realpath(source)
    names = sorted(set(names))
    mine = None
    for run in runs:
        if run['command'] != command:
            continue
        if run['source'] == source:
            changed = {key: value for key, value in settings.items() if run['settings'].get(key, value) != value}
            if changed:
                earlier = {key: run['settings'][key] for key in changed}
                raise InputError(
                    f"'{out}' holds outputs of '{source}' made with {_describe(earlier)}; this run asks for "
                    f'{_describe(changed)}. Files already there are kept, so the folder would mix both: choose '
                    'another --out, or delete the folder to prepare it again')
            mine = run
            continue
        taken = sorted(set(run['names']).intersection(names))
        if taken:
            raise InputError(
                f"'{out}' already holds {len(taken)} outputs of the same names made from '{run['source']}' "
                f"({', '.join(taken[:SHOWN])}{' ...' if len(taken) > SHOWN else ''}); they would be kept instead "
                "of this input's: give this set its own --prefix (or --out)")
    if mine is None:
        runs.append({'command': command, 'source': source, 'settings': settings, 'names': names})
    elif set(names) <= set(mine['names']) and settings.items() <= mine['settings'].items():
        return
    else:
        mine['names'] = sorted(set(mine['names']).union(names))
        mine['settings'] = {**mine['settings'], **settings}
    atomic_write(path, lambda f: json.dump({'runs': runs}, f, indent=1), mode='w')
