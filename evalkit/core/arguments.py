"""Policy (and world-model) arguments, converted once to the types their constructor declares.

They arrive as strings from `--policy-arg KEY=VALUE` and as YAML values; `coerce_policy_args`
reads the factory's signature and annotations (or its defaults' types), so `respect_mask=false`
arrives as False, and a value that does not fit is refused with the argument's name and the
expected type. Imports nothing else of the project (the registry and the settings use it).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import os
import types
import typing
from pathlib import Path
from typing import Any, Optional

TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
# Arguments that count steps or tokens: 0 or less makes every episode `invalid_action` (an empty chunk).
POSITIVE_ARGUMENTS = ("chunk_size", "time_horizon", "flow_steps", "max_new_tokens")


class SettingError(ValueError):
    """A run setting or policy argument that does not fit; the message names it and what fits."""


# -- policy arguments --------------------------------------------------------------------------

def coerce_policy_args(factory, args: Optional[dict], owner: str = "policy") -> dict:
    """`args` converted to the types `factory`'s signature asks for (annotations, else the default's
    type); unknown names are refused with the accepted ones, unless the factory takes **kwargs."""
    args = dict(args or {})
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no introspectable signature: pass the arguments as given
        return args
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    forwarded = getattr(factory, "forwards_kwargs_to", None)  # a wrapper passing **kwargs on (NORA-LONG)
    if forwarded is not None:
        rest = {k: v for k, v in args.items() if k not in named}
        return {**_coerce_named(factory, named, args, owner), **coerce_policy_args(forwarded, rest, owner)}
    unknown = [k for k in args if k not in named]
    if unknown and not takes_any:
        raise SettingError(_unknown_argument(owner, unknown[0], named))
    # the factory checks its own **kwargs (e.g. the oracle's tuning)
    return {**{k: args[k] for k in unknown}, **_coerce_named(factory, named, args, owner)}


def _coerce_named(factory, named: dict, args: dict, owner: str) -> dict:
    hints = _type_hints(factory)
    out = {}
    for key, value in args.items():
        if key not in named:
            continue
        expected = hints.get(key, _type_of_default(named[key].default))
        out[key] = coerce_value(value, expected, f"{owner} argument {key!r}")
        if key in POSITIVE_ARGUMENTS and is_int(out[key]) and out[key] < 1:
            raise SettingError(f"{owner} argument {key!r} must be >= 1 (it counts steps or tokens); got {out[key]}")
    return out


def coerce_value(value, expected, what: str) -> Any:
    """One value to the `expected` type; a string from the command line is parsed, a YAML value of the
    right type kept. None passes through (a YAML null means "the default behaviour")."""
    if value is None or expected in (None, Any, inspect.Parameter.empty):
        return value
    origin = typing.get_origin(expected)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):
        return _coerce_union(value, typing.get_args(expected), what)
    if origin is typing.Literal:
        return _coerce_literal(value, typing.get_args(expected), what)
    if origin in (list, tuple) or expected in (list, tuple):
        return _coerce_sequence(value, expected, what)
    converter = _CONVERTERS.get(expected)
    if converter is None:
        return value  # a type we do not parse (a callable, a mapping): the constructor checks it
    try:
        return converter(value)
    except (TypeError, ValueError):
        raise SettingError(f"{what} must be {_DESCRIPTIONS[expected]}; got {value!r}") from None


def _to_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if is_int(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError(value)


def _to_int(value) -> int:
    if is_int(value):
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError(value)


def _to_float(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number):  # a NaN scale or gain would reach the simulator as NaN actions
        raise ValueError(value)
    return number


def _to_str(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real, os.PathLike)):
        raise TypeError(value)
    return str(value)  # YAML reads `unnorm_key: 2024` as a number


def _to_path(value) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(value)
    return Path(value)


_CONVERTERS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str, Path: _to_path}
_DESCRIPTIONS = {bool: "true or false (also yes/no, 1/0)", int: "an integer", float: "a finite number",
                 str: "a string", Path: "a path"}


def _coerce_union(value, members: tuple, what: str):
    kinds = [m for m in members if m is not type(None)]
    optional = type(None) in members
    if optional and isinstance(value, str) and value.strip().lower() in ("none", "null") \
            and not any(k in (str, Path) for k in kinds):
        return None  # `--policy-arg max_new_tokens=none`; a string argument keeps the word
    for kind in kinds:
        try:
            return coerce_value(value, kind, what)
        except SettingError:
            continue
    described = [_DESCRIPTIONS.get(k, getattr(k, "__name__", str(k))) for k in kinds] + (["none"] if optional else [])
    raise SettingError(f"{what} must be {' or '.join(described)}; got {value!r}")


def _coerce_literal(value, choices: tuple, what: str):
    for choice in choices:
        if value == choice or (isinstance(value, str) and not isinstance(choice, str) and value == str(choice)):
            return choice
    raise SettingError(f"{what} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _coerce_sequence(value, expected, what: str):
    """A comma list from the command line (`cameras=a,b`) or a YAML list, element by element."""
    container = typing.get_origin(expected) or expected
    inner = typing.get_args(expected)
    item = inner[0] if inner else None
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise SettingError(f"{what} must be a list (comma-separated on the command line); got {value!r}")
    return container(coerce_value(v, item, f"{what}[{i}]") for i, v in enumerate(items))


def _type_hints(factory) -> dict:
    """Resolved annotations of the constructor (class) or function; {} when they do not resolve."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an annotation naming a name only importable for type checkers
        return {}


def _type_of_default(default):
    """Unannotated argument: the type of its default, where that is one we parse."""
    if default is inspect.Parameter.empty or default is None:
        return None
    return type(default) if type(default) in _CONVERTERS else None


def _unknown_argument(owner: str, key: str, named: dict) -> str:
    close = difflib.get_close_matches(key, named, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    accepted = ", ".join(named) or "none"
    return f"{owner} has no argument {key!r}{hint}; it accepts: {accepted}"


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
