"""How a config field declares its command-line flag and its JSON form.

`EmulatorConfig`'s fields are the one list of knobs: each carries, in its attrs
metadata, a `Flag` (or None: explicitly not on the command line) and a
`JsonCodec`. The emulator's CLI, the JSON round trip (the admin API and the
child process use it) and ``Emulator(**knobs)`` are all derived from them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

__all__ = [
    "PLAIN",
    "UNSET",
    "CliSpec",
    "Flag",
    "JsonCodec",
    "add_knob_arguments",
    "dump_json",
    "knob",
    "knobs_from_options",
    "load_json",
]

_CLI = "freepik_bg.cli"
_JSON = "freepik_bg.json"

#: What `CliSpec.read` returns for a knob that the command line did not set.
UNSET: Any = object()


class CliSpec(Protocol):
    """The command-line side of one knob."""

    def add_to(self, parser: argparse.ArgumentParser, field: attrs.Attribute[Any]) -> None:
        """Add the knob's option(s) to ``parser``."""
        ...

    def read(self, options: argparse.Namespace, field: attrs.Attribute[Any]) -> Any:
        """The knob's value from parsed ``options``, or `UNSET`."""
        ...


@attrs.frozen
class Flag:
    """One option for one knob: ``--link-ttl S`` sets ``link_ttl``.

    The option is ``--`` plus the field name with dashes unless ``option`` says
    otherwise; ``parse`` converts its text (argparse's ``type``).
    """

    help: str
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    action: str = "store"
    choices: tuple[Any, ...] | None = None
    option: str | None = None

    def add_to(self, parser: argparse.ArgumentParser, field: attrs.Attribute[Any]) -> None:
        """Add ``--option``; absent from the namespace unless given, so defaults stay here."""
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS}
        kwargs["help"] = self.help
        if self.action in ("store", "append"):
            kwargs["metavar"] = self.metavar
            if self.parse is not None:
                kwargs["type"] = self.parse
            if self.choices is not None:
                kwargs["choices"] = self.choices
            if self.action == "store" and field.default is not attrs.NOTHING:
                kwargs["help"] += f" (default: {_shown(field.default)})"
        kwargs["action"] = self.action
        parser.add_argument(self.option or "--" + field.name.replace("_", "-"), **kwargs)

    def read(self, options: argparse.Namespace, field: attrs.Attribute[Any]) -> Any:
        """The option's value, or `UNSET` when it was not given."""
        return getattr(options, field.name, UNSET)


@attrs.frozen
class JsonCodec:
    """A knob's value to and from JSON (the field's converter accepts what load returns)."""

    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]


def _plain_dump(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _identity(value: Any) -> Any:
    return value


#: For values JSON holds as they are, tuples becoming lists.
PLAIN = JsonCodec(dump=_plain_dump, load=_identity)


def knob(
    default: Any, *, cli: CliSpec | None, json: JsonCodec = PLAIN, **field_options: Any
) -> Any:
    """An attrs field that is an emulator knob. ``cli=None`` keeps it off the command line."""
    return attrs.field(default=default, metadata={_CLI: cli, _JSON: json}, **field_options)


def cli_spec(field: attrs.Attribute[Any]) -> CliSpec | None:
    """The field's command-line side, or None if it has none."""
    spec: CliSpec | None = field.metadata.get(_CLI)
    return spec


def json_codec(field: attrs.Attribute[Any]) -> JsonCodec:
    """The field's JSON codec."""
    codec: JsonCodec = field.metadata.get(_JSON, PLAIN)
    return codec


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return str(value[0])  # a (low, high) latency range that is one number
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def add_knob_arguments(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """Add an option for every knob of attrs class ``cls`` that has one."""
    for field in attrs.fields(cls):
        spec = cli_spec(field)
        if spec is not None:
            spec.add_to(parser, field)


def knobs_from_options(options: argparse.Namespace, cls: type[Any]) -> dict[str, Any]:
    """The knobs of ``cls`` that parsed ``options`` set, by field name."""
    found: dict[str, Any] = {}
    for field in attrs.fields(cls):
        spec = cli_spec(field)
        value = UNSET if spec is None else spec.read(options, field)
        if value is not UNSET:
            found[field.name] = value
    return found


def dump_json(instance: Any) -> dict[str, Any]:
    """Every field of attrs ``instance`` as JSON-ready data."""
    return {
        f.name: json_codec(f).dump(getattr(instance, f.name)) for f in attrs.fields(type(instance))
    }


def load_json(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Field values of ``cls`` from (part of) `dump_json` output; TypeError if unknown."""
    fields = attrs.fields_dict(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TypeError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    return {name: json_codec(fields[name]).load(value) for name, value in data.items()}
