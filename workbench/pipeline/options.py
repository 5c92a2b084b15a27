"""Options of an analysis Step: one frozen dataclass per analysis, the only place its defaults are typed.

The CLI parses its arguments into it (an argument left out keeps the dataclass default), a pipeline file's
step config is checked against its field types (``from_config``), and the Step's ``validate`` checks ranges
once for all of them. ``model``, ``device`` and ``dtype`` are shared by every Step (``StepOptions``); in a
pipeline they come from the file's top-level keys.

Validation errors are ``OptionError`` (a ``SpecError``: one error line and exit 2 from the CLI); their
messages name options as the CLI spells them (``--max-new-tokens``); a pipeline prefixes the step id.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workbench.devices import DEFAULT_DEVICE, DEFAULT_DTYPE
from workbench.seam.spec import SpecError

RUNTIME_FIELDS = ("model", "device", "dtype")  # the pipeline's top-level keys, not a step's


class OptionError(SpecError):
    """An option value a Step cannot run with; nothing was loaded or written."""


def flag(name: str) -> str:
    """How the CLI spells the option ``name`` (the pipeline's key is ``name`` itself)."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """Where a Step's model runs: ``model`` (name, HF id or path), ``device`` and ``dtype`` (workbench.devices)."""

    model: str | None = None
    device: str = DEFAULT_DEVICE
    dtype: str = DEFAULT_DTYPE

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The analysis options (not where it runs), JSON-able."""
        return {
            f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in RUNTIME_FIELDS
        }


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def option_fields(cls) -> list[dataclasses.Field]:
    """The analysis fields of an options class (not model/device/dtype)."""
    return [f for f in dataclasses.fields(cls) if f.name not in RUNTIME_FIELDS]


def option_help(cls) -> dict[str, str]:
    """``{field: help}`` for a pipeline's "unknown option" message and ``workbench pipeline steps``."""
    out = {}
    for f in option_fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = list(default) if isinstance(default, tuple) else default
        out[f.name] = f.metadata.get("help", "") + ("" if default is None else f" (default {shown})")
    return out


def input_paths(cls, values) -> dict[str, list[str]]:
    """``{field: [path, ...]}``: the files and folders that a Step with options ``cls`` reads, from
    ``values`` (an options instance, or a mapping of field -> value such as a job's params): the values of
    its ``path`` fields, a tuple of paths included, less the built-in names and the ``output`` fields.

    ``model`` is no file input even when it names a local checkpoint: a model is named and loaded by
    ``workbench.models`` (and a checkpoint is gigabytes); it is not a ``path`` field."""
    get = values.get if isinstance(values, Mapping) else (lambda name: getattr(values, name, None))
    found = {}
    for f in option_fields(cls):
        if not f.metadata.get("path") or f.metadata.get("output"):
            continue
        value = get(f.name)
        items = value if isinstance(value, (tuple, list)) else (value,)
        names = f.metadata.get("names", ())
        paths = [str(v) for v in items if isinstance(v, (str, Path)) and str(v) not in names]
        if paths:
            found[f.name] = paths
    return found


def defaults(cls) -> dict:
    """``{field: default}`` of the fields that have one."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def from_config(cls, config: dict, *, where: str, base: Path | None = None, **runtime):
    """An options instance from a pipeline step's config (its keys minus id/step/data), each value checked
    against the field's type; relative paths resolve against ``base`` (the pipeline file's folder)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in option_fields(cls):
        if f.name not in config:
            continue
        try:
            value = _coerce(config[f.name], hints[f.name])
        except TypeError as error:
            raise OptionError(f"{where}: option {f.name!r} must be {error}, got {config[f.name]!r}") from None
        if f.metadata.get("path") and base is not None and isinstance(value, (str, Path)):
            if str(value) not in f.metadata.get("names", ()) and not Path(value).is_absolute():
                value = type(value)(Path(base) / value)  # relative to the pipeline file's folder
        values[f.name] = value
    values.update({k: v for k, v in runtime.items() if v is not None})
    try:
        return cls(**values)
    except TypeError as error:  # a required field missing
        missing = [f.name for f in option_fields(cls) if f.name not in values and _required(f)]
        raise OptionError(f"{where} needs option(s) {missing}") from error


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(value, hint):
    """``value`` as the type ``hint`` says (a YAML list for a tuple, a str for a Path), else TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except TypeError as error:
                errors.append(str(error))
        raise TypeError(" or ".join(errors))
    if origin is typing.Literal:
        if value in args:
            return value
        raise TypeError(f"one of {list(args)}")
    if origin in (tuple, list):
        item = args[0] if args else typing.Any
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"a list of {_name(item)}")
        try:
            items = [_coerce(v, item) for v in value]
        except TypeError:
            raise TypeError(f"a list of {_name(item)}") from None
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError("a mapping")
        return value
    if hint is typing.Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError("a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    if hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise TypeError("a path")
    return value


def _name(hint) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, str(hint))


def help_field(
    default=dataclasses.MISSING,
    help: str = "",  # noqa: A002
    path: bool = False,
    names=(),
    output: bool = False,
    **kwargs,
):
    """A dataclass field with its help text; ``path``: a file or folder path, resolved against a pipeline's
    folder (except the built-in ``names``, such as ``synthetic``), that the Step reads: its content is part
    of a pipeline step's key (``input_paths``); ``output``: a path the Step writes instead (not hashed)."""
    metadata = {"help": help, "path": path, "names": tuple(names), "output": output}
    if default is dataclasses.MISSING:
        return field(metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)
