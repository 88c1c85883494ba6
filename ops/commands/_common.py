"""What the sub-commands share: the one error format, the parser and help format, flags made
from the typed settings, and the front-door checks (broker, device, output path).

Errors: a command calls `fail(message)`; `ops.cli.main` prints `unisar <command>: error:
<message>` as one line on stderr and returns the exit code (2 unless said otherwise).
Argument errors found by argparse take the same form (`Parser.error`), also exit 2.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import typing
from pathlib import Path
from typing import NoReturn

from ops.settings import DEFAULT_PORT, ENV_PREFIX, Settings, SettingsGroup

# ---------------------------------------------------------------- errors


class CommandError(Exception):
    """Bad input at the front door: one line for the user, no traceback."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop the command: `unisar <command>: error: <message>` on stderr, exit `code`."""
    raise CommandError(message, code)


# ---------------------------------------------------------------- parser and help


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, unless its help already words it (`(default 30)`,
    `(1000)`) or there is none to show (None, a switch, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or text is argparse.SUPPRESS or default is argparse.SUPPRESS
                or default is None or default is False or default == [] or "default" in text.lower()
                or f"({default})" in text):
            return text
        return text + " (default: %(default)s)"


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The same, keeping the description's own line breaks (a module docstring)."""


class Parser(argparse.ArgumentParser):
    """argparse with the project's help format and one-line errors (exit 2, no usage dump)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- settings as flags
#
# Flags are generated from the settings fields with argparse rather than by pydantic-settings'
# CliSettingsSource or Typer: the CLI is an argparse tree (sub-commands, `data`'s own
# sub-commands, commands with flags that are not settings), each command shows only the
# groups it reads, older flag spellings stay as aliases, and every error keeps the one
# format above. pydantic stays the single validator and reads the environment: a flag is
# passed as text to Settings(...) only when given, so flags override UNISAR_* variables,
# which override the defaults.


def add_settings_flags(parser: argparse.ArgumentParser, *groups: type[SettingsGroup]) -> None:
    """A flag for every field of `groups` (`--field-name`, plus the field's aliases), with its
    description, default and environment variable in --help, one argument group per group."""
    declared: list[str] = list(parser.get_default("settings_flags") or ())
    for group in groups:
        section = parser.add_argument_group(group.title, _escape(" ".join((group.__doc__ or "").split())))
        for name, field in group.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("hidden"):
                continue
            flags = [f"--{name.replace('_', '-')}", *extra.get("flags", ())]
            section.add_argument(*flags, dest=name, default=argparse.SUPPRESS, metavar=_metavar(field, extra),
                                 help=_flag_help(name, field, extra))
            declared.append(name)
    parser.set_defaults(settings_flags=tuple(declared))


def settings_from(args: argparse.Namespace, **values) -> Settings:
    """The settings: defaults, then UNISAR_* variables, then the flags the user gave, then
    `values` (the command's own, e.g. the embedded broker's address; None = not given)."""
    given = {name: getattr(args, name) for name in getattr(args, "settings_flags", ()) if hasattr(args, name)}
    return load_settings(given, **{k: v for k, v in values.items() if v is not None})


def load_settings(flags: dict | None = None, **values) -> Settings:
    """Settings(...) whose validation errors become one line naming the flag or the
    environment variable, what it expects and what it got."""
    from pydantic import ValidationError

    flags = flags or {}
    try:
        return Settings(**(flags | values))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = error["loc"][0] if error["loc"] else None
            field = Settings.model_fields.get(name) if isinstance(name, str) else None
            if field is None:
                problems.append(f"invalid settings: {error['msg']}")
                continue
            where = f"--{name.replace('_', '-')}" if name in flags and name not in values else \
                name if name in values else ENV_PREFIX + name.upper()
            problems.append(f"{where}: expected {expected(field)}, got {error['input']!r}")
        fail("; ".join(problems))


def expected(field) -> str:
    """What a settings field accepts, in words: 'an integer >= 1 and <= 1024'."""
    kind = field.annotation
    options = [a for a in typing.get_args(kind) if a is not type(None)] if type(None) in typing.get_args(kind) \
        else [kind]
    kind = options[0] if len(options) == 1 else kind
    if typing.get_origin(kind) is typing.Literal:
        text = "one of " + ", ".join(str(a) for a in typing.get_args(kind))
    else:
        text = {int: "an integer", float: "a number", str: "text"}.get(kind, getattr(kind, "__name__", str(kind)))
    bounds = [f"{op} {getattr(m, attr)}" for m in field.metadata
              for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
              if getattr(m, attr, None) is not None]
    return text + (" " + " and ".join(bounds) if bounds else "")


def _metavar(field, extra: dict) -> str:
    if "metavar" in extra:
        return extra["metavar"]
    if typing.get_origin(field.annotation) is typing.Literal:
        return "{" + ",".join(typing.get_args(field.annotation)) + "}"
    return {int: "N", float: "X"}.get(field.annotation, "TEXT")


def _flag_help(name: str, field, extra: dict) -> str:
    env = ENV_PREFIX + name.upper()
    default = extra.get("default") or ("none" if field.default is None else field.default)
    now = f", set now: {os.environ[env]!r}" if env in os.environ else ""
    return _escape(f"{field.description} (default: {default}; env {env}{now})")


def _escape(text: str) -> str:
    return text.replace("%", "%%")


# ---------------------------------------------------------------- front-door checks


def require_broker(settings, timeout_s: float = 3.0) -> None:
    """Fail at once, in one line, when no Kafka broker answers at the bootstrap addresses,
    instead of a client retrying for a minute and ending in a traceback."""
    import socket

    from ops.broker import answers_kafka

    addresses = []
    for address in settings.brokers.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            fail(f"--brokers: expected HOST:PORT[,HOST:PORT...], got {settings.brokers!r}")
        addresses.append((host.strip("[]"), int(port)))
    for host, port in addresses:
        if "SSL" in settings.security_protocol:  # TLS first: a TCP accept is all we can check cheaply
            try:
                socket.create_connection((host, port), timeout=timeout_s).close()
                return
            except OSError:
                continue
        elif answers_kafka(host, port):  # a Kafka ApiVersions answer, not just any listener
            return
    fail(f"no Kafka broker answers at {settings.brokers} (--brokers, env UNISAR_BROKERS): start one with "
         f"`unisar broker` (it listens on 127.0.0.1:{DEFAULT_PORT}), or "
         f"give the address of your cluster")


def check_device(device: str, flag: str = "--device") -> None:
    """A torch device this process can use, said before any work (not a traceback, not a
    blamed checkpoint)."""
    import torch

    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        fail(f"{flag}: expected cpu, cuda or cuda:N, got {device!r}")
    if chosen.type == "cpu":
        return
    if chosen.type == "cuda":
        if torch.version.cuda is None:
            fail(f"{flag} {device}: this PyTorch build ({torch.__version__}) has no CUDA support; use --device cpu")
        if not torch.cuda.is_available():
            fail(f"{flag} {device}: no CUDA device is visible to this process; use --device cpu")
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            fail(f"{flag}: expected cuda:0..cuda:{count - 1} ({count} CUDA devices), got {device!r}")
        return
    if chosen.type == "mps" and torch.backends.mps.is_available():
        return
    fail(f"{flag}: expected cpu or cuda (a device this machine has), got {device!r}")


def out_problem(path: str | os.PathLike) -> str | None:
    """Why a file cannot be written at `path` (its folder missing or read-only), or None.
    Checked before the work that produces the file, so the work is not lost."""
    target = Path(path)
    if target.is_dir():
        return f"expected a file name, got the folder {str(path)!r}"
    folder = target.parent
    if not folder.is_dir():
        return f"expected a file in an existing folder, got {str(path)!r} (no folder {str(folder)!r}; create it first)"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".unisar-write-check-"):
            pass
    except OSError as exc:
        return f"expected a writable folder, got {str(path)!r} (cannot create files in {str(folder)!r}: {exc.strerror})"
    if target.exists() and not os.access(target, os.W_OK):
        return f"expected a writable file, got {str(path)!r} (it exists and is read-only)"
    return None


def add_items_flag(p) -> None:
    p.add_argument("--items", metavar="FILE", help="catalogue (catalogue v1, stream.contract.items): category "
                   "and caption features by item id, profile fields by user id (default: X.items.jsonl beside --events "
                   "X.jsonl when it exists; 'none': no catalogue)")


def load_items(args, command: str) -> list:
    """The catalogue records of `--items` (or of the file beside `--events`); invalid ones are
    skipped with a line on stderr, an unreadable file is a user error."""
    from stream.contract.files import DataError, SourceUnavailable, catalogue_path
    from stream.contract.items import ItemRecord
    from stream.contract.offline import load_catalogue

    if args.items == "none":
        return []
    path = args.items or catalogue_path(args.events)
    if not args.items and not Path(path).is_file():
        return []
    try:
        records, rejected = load_catalogue(path)
    except (DataError, SourceUnavailable) as exc:
        fail(f"--items: {exc}")
    profiles = sum(1 for r in records if not isinstance(r, ItemRecord))
    print(f"unisar {command}: catalogue {path}: {len(records) - profiles:,} item records, {profiles:,} user profiles")
    if rejected:
        line, why = rejected[0]
        print(f"unisar {command}: skipped {len(rejected)} invalid catalogue records (first, line {line}: "
              f"{why.reason})", file=sys.stderr)
    return records


def out_file(text: str) -> str:
    """argparse type of an output file: checked at once, while parsing the flags."""
    problem = out_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


# ---------------------------------------------------------------- running


def run_until_signalled(main) -> None:
    """Run `main(stop_event)` until it returns or SIGINT/SIGTERM asks it to stop cleanly."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())

