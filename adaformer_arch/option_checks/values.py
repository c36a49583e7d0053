"""Tests of single option values and names that the checks share: numbers and integers as YAML gives them, names
registered with BasicSR, the closest known name to a misspelt one, and the hint to remove a value's quotes."""
import difflib
import math
from typing import Any, Container, Dict, Iterable, Sequence

import yaml

SUGGEST = 0.7  # difflib ratio above which a known name is suggested (EDSR's res_scale -> 'upscale' is 0.625)
NEAR_MISS = 0.8  # difflib ratio above which an unknown key is taken for a misspelling of a known one


def registered(registry: Any, name: Any) -> bool:
    """``name`` is in ``registry`` as BasicSR's ``Registry.get`` finds it: also as ``<name>_basicsr`` (the suffix
    BasicSR gives some of its own entries, e.g. ``RealESRGANDataset``)."""
    return isinstance(name, str) and (name in registry or f'{name}_basicsr' in registry)


def is_number(value: Any, minimum: float) -> bool:
    """``value`` is an int or float of at least ``minimum`` (not a bool, nor a quoted number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum


def is_integer(value: Any, minimum: int) -> bool:
    """``value`` is an int of at least ``minimum`` (not a bool, which Python counts as an int: YAML's ``true``)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def misspellings(keys: Iterable[str], known: Sequence[str], present: Container[str]) -> Dict[str, str]:
    """Unknown ``keys`` -> the ``known`` key each misspells: within ``NEAR_MISS`` of it, and that key is not
    ``present`` as well (then the unknown one is an extra key, not a misspelling)."""
    meant = {}
    for key in keys:
        match = difflib.get_close_matches(key, known, n=1, cutoff=NEAR_MISS)
        if key not in known and match and match[0] not in present:
            meant[key] = match[0]
    return meant


def closest(name: str, candidates: Iterable[str]) -> str:
    """'; did you mean X?' for the closest candidate, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=SUGGEST)
    return f'; did you mean {match[0]!r}?' if match else ''


def _has_type(value: Any, kind: type) -> bool:
    """``value`` is a ``kind`` (bool, int, float or str) as YAML gives it: a float also takes an int; a bool is
    neither."""
    if kind is float:
        return is_number(value, -math.inf)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _unquote_hint(value: Any, kind: Any) -> str:
    """' (remove the quotes)' where a quoted YAML value would have the right type without them ('false', '64')."""
    if not isinstance(value, str):
        return ''
    try:
        unquoted = yaml.safe_load(value)
    except yaml.YAMLError:
        return ''
    if isinstance(unquoted, str) and kind is float and _parses_as_float(value):
        return (f' (YAML reads a number in exponent form without a decimal point as text: write {float(value)!r} or '
                f'!!float {value})')
    if not _has_type(unquoted, kind) or isinstance(unquoted, str):
        return ''
    if value.startswith('-') and is_number(unquoted, -math.inf):
        return (" (remove the quotes; basicsr 1.4.2's --force_yml reads a negative number as text, so set it in the "
                'option file)')
    return ' (remove the quotes)'


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower().lstrip('+-') not in ('inf', 'infinity', 'nan')
