"""Bad input at the front door: one line on stderr (`unisar <command>: error: ...`), exit 2,
never a traceback, a wrong blame or a silent success. Each case is one a new user hit."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import orjson
import pytest
from eventgen import valid_events

from ops.broker import free_port
from ops.cli import build_parser, main
from ops.commands._common import settings_from
from ops.processes import settings_env
from ops.settings import (
    ENV_PREFIX,
    KafkaSettings,
    MetricsSettings,
    Settings,
    StoreSettings,
    TopicSettings,
    TrainerSettings,
    WorkerSettings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No UNISAR_* from the machine running the tests; help text not wrapped."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("COLUMNS", "1000")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`unisar ARGV` in process: (exit code, stdout, stderr); argparse's exits included."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(result: tuple[int, str, str], command: str, *says: str) -> str:
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"unisar {command}: error: "), err
    for part in says:
        assert part in err, err
    return err


@pytest.fixture
def events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in valid_events(50, users=3, seed=1)))
    return path


# ---------------------------------------------------------------- no broker listening


def _dead_broker() -> str:
    return f"127.0.0.1:{free_port()}"  # a free port: nothing listens there


@pytest.mark.parametrize("command", ["produce", "worker", "train"])
def test_no_broker_says_so_and_how_to_start_one(command, capsys, tmp_path, events_file):
    brokers = _dead_broker()
    flags = {"produce": ["--file", str(events_file), "--no-progress"],
             "worker": ["--state-dir", str(tmp_path / "state"), "--metrics-port", "0"],
             "train": ["--checkpoint-dir", str(tmp_path / "ckpt"), "--metrics-port", "0"]}[command]
    start = time.monotonic()
    result = cli(capsys, command, "--brokers", brokers, *flags)
    refused(result, command, f"no Kafka broker answers at {brokers}", "`unisar broker`")
    assert time.monotonic() - start < 10
    assert not (tmp_path / "state").exists() and not (tmp_path / "ckpt").exists()


def test_no_broker_from_the_environment_as_a_process(tmp_path, events_file):
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | {"UNISAR_BROKERS": _dead_broker()}
    done = subprocess.run([sys.executable, "-m", "ops.cli", "produce", "--file", str(events_file)],
                          capture_output=True, text=True, env=env, timeout=60)
    refused((done.returncode, done.stdout, done.stderr), "produce", "no Kafka broker answers")


# ---------------------------------------------------------------- fit and eval


def test_fit_checks_out_before_training(capsys, tmp_path, events_file):
    code, out, err = cli(capsys, "fit", "--events", str(events_file), "--out", "/nonexistent/dir/m.pt")
    refused((code, out, err), "fit", "--out", "/nonexistent/dir")
    assert "steps" not in out  # nothing trained


def test_fit_refuses_a_folder_it_cannot_write(capsys, tmp_path, events_file):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    where = "/sys" if os.geteuid() == 0 else str(locked)  # root writes anywhere but a read-only mount
    refused(cli(capsys, "fit", "--events", str(events_file), "--out", f"{where}/m.pt"), "fit", "--out", "writable")


def _missing_cuda() -> str:
    import torch

    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def test_fit_device_without_cuda(capsys, tmp_path, events_file):
    err = refused(cli(capsys, "fit", "--events", str(events_file), "--out", str(tmp_path / "m.pt"),
                      "--device", _missing_cuda()), "fit", "--device")
    assert "--events" not in err
    assert not (tmp_path / "m.pt").exists()


def test_eval_device_without_cuda_does_not_blame_the_checkpoint(capsys, tmp_path, events_file):
    err = refused(cli(capsys, "eval", "--checkpoint", str(tmp_path / "m.pt"), "--events", str(events_file),
                      "--device", _missing_cuda()), "eval", "--device")
    assert "--checkpoint" not in err


@pytest.mark.parametrize("size", ["0", "-5"])
def test_eval_batch_size_must_be_positive(size, capsys, tmp_path, events_file):
    refused(cli(capsys, "eval", "--checkpoint", str(tmp_path / "m.pt"), "--events", str(events_file),
                "--batch-size", size), "eval", f"--batch-size: expected a positive integer, got {size}")


# ---------------------------------------------------------------- data


def test_split_valid_from_after_test_from(capsys, tmp_path, events_file):
    refused(cli(capsys, "data", "split", str(events_file), "--by", "time", "--valid-from", "2024-01-02",
                "--test-from", "2024-01-01", "--out", str(tmp_path / "s")),
            "data split", "--valid-from: expected a time no later than --test-from")
    assert not list(tmp_path.glob("s.*"))


def test_split_negative_valid_n(capsys, events_file):
    refused(cli(capsys, "data", "split", str(events_file), "--by", "user", "--valid-n", "-1"),
            "data split", "--valid-n", "-1")


def test_simulate_into_a_missing_folder_creates_nothing(capsys, tmp_path):
    refused(cli(capsys, "data", "simulate", "--events", "100", "--out", str(tmp_path / "missing" / "sim.jsonl")),
            "data simulate", "--out", "existing folder")
    assert not (tmp_path / "missing").exists()


def test_simulate_into_an_unwritable_place(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    where = "/sys" if os.geteuid() == 0 else str(locked)
    refused(cli(capsys, "data", "simulate", "--events", "100", "--out", f"{where}/sim.jsonl"),
            "data simulate", "--out", "writable")


# ---------------------------------------------------------------- inspect


def test_inspect_refuses_a_folder_that_is_not_a_store_and_leaves_it_alone(capsys, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"meow")
    refused(cli(capsys, "inspect", "--user", "u1", "--state-dir", str(folder)), "inspect",
            "--state-dir", "a folder without a store")
    assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]


# ---------------------------------------------------------------- settings from the environment


def test_bad_environment_variable_names_it(capsys, monkeypatch):
    monkeypatch.setenv("UNISAR_PARTITIONS", "abc")
    err = refused(cli(capsys, "worker"), "worker",
                  "UNISAR_PARTITIONS: expected an integer >= 1 and <= 1024, got 'abc'")
    assert "validation error" not in err and "pydantic" not in err


def test_bad_environment_variable_as_a_process():
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | {"UNISAR_PARTITIONS": "abc"}
    done = subprocess.run([sys.executable, "-m", "ops.cli", "worker"], capture_output=True, text=True, env=env,
                          timeout=60)
    refused((done.returncode, done.stdout, done.stderr), "worker", "UNISAR_PARTITIONS")


def test_bad_flag_value_names_the_flag(capsys):
    refused(cli(capsys, "train", "--security-protocol", "tls"), "train",
            "--security-protocol: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'tls'")


def test_argparse_errors_are_one_line_too(capsys):
    refused(cli(capsys, "produce"), "produce", "--file")


# ---------------------------------------------------------------- version, help, precedence


def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"unisar {version('unisar-stream')}"


def _help_line(text: str, flag: str) -> str:
    """The help of one option, on one line (argparse may start it on the next)."""
    lines = text.splitlines()
    # an option's own line is indented by two spaces; a description or help text may
    # mention the flag at another indentation
    (i,) = [i for i, ln in enumerate(lines) if re.match(rf"  {re.escape(flag)}( |,|$)", ln)]
    block = [lines[i]]
    for ln in lines[i + 1:]:
        if not ln.strip() or ln.strip().startswith("-"):
            break
        block.append(ln.strip())
    return " ".join(block)


def test_worker_help_lists_every_worker_setting_with_its_default(capsys):
    code, out, _ = cli(capsys, "worker", "--help")
    assert code == 0
    for group in (WorkerSettings, StoreSettings, MetricsSettings, KafkaSettings, TopicSettings):
        for name, field in group.model_fields.items():
            if (field.json_schema_extra or {}).get("hidden"):
                assert f"--{name.replace('_', '-')}" not in out  # the password: environment only
                continue
            line = _help_line(out, f"--{name.replace('_', '-')}")
            default = "none" if field.default is None else field.default
            assert f"(default: {default}; env UNISAR_{name.upper()})" in line, line
    for name in TrainerSettings.model_fields:  # the worker does not read the trainer's settings
        if name not in WorkerSettings.model_fields:
            assert f"--{name.replace('_', '-')} " not in out


def test_every_setting_is_described():
    assert all(field.description for field in Settings.model_fields.values())


def test_flags_override_environment_override_defaults(monkeypatch):
    monkeypatch.setenv("UNISAR_PARTITIONS", "6")
    monkeypatch.setenv("UNISAR_MAX_REC", "7")
    settings = settings_from(build_parser().parse_args(["worker", "--partitions", "8", "--commit-interval", "0.5"]))
    assert (settings.partitions, settings.max_rec, settings.commit_interval_s, settings.group) == \
        (8, 7, 0.5, "unisar-worker")
    assert settings.worker.max_rec == 7 and settings.topics.partitions == 8 and settings.kafka.brokers


def test_settings_survive_the_environment_of_a_child(monkeypatch):
    settings = Settings(brokers="h:1", partitions=3, heldout="x.jsonl", max_staleness_s=2.5, sasl_password="pw")
    for key, value in settings_env(settings).items():
        if key.startswith(ENV_PREFIX):
            monkeypatch.setenv(key, value)
    assert Settings() == settings


def test_every_option_of_every_command_shows_its_default(capsys):
    import argparse

    def parsers(parser):
        yield parser
        for action in parser._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for child in action.choices.values():
                    yield from parsers(child)

    for parser in parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:  # noqa: SLF001
            default = action.default
            if not action.option_strings or action.help == argparse.SUPPRESS or default in (None, [], argparse.SUPPRESS) \
                    or isinstance(default, bool) or action.dest in ("help", "version"):
                continue
            line = _help_line(text, action.option_strings[0])
            assert "default" in line or f"({default})" in line, f"{parser.prog}: {line}"
