"""`unisar serve` at the front door: --help with defaults, one-line errors, exit 2."""
from __future__ import annotations

from ops.broker import free_port
from ops.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, or a flag it refuses
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_setting_with_its_default(capsys):
    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0
    for text in ("--host ADDR", "(default: 127.0.0.1; env UNISAR_SERVE_HOST)", "(default: 8000; env UNISAR_SERVE_PORT)",
                 "(default: ./checkpoints; env UNISAR_CHECKPOINT_DIR)", "(default: 1000; env UNISAR_MAX_CANDIDATES)",
                 "(default: False; env UNISAR_HISTORY_ENDPOINT)", "(default: auto; env UNISAR_PRECISION)"):
        assert text in " ".join(out.split()), text
    assert "--serve-token" not in out  # environment only: a flag would show in the process list


def test_a_bad_setting_is_one_line_and_exit_2(capsys):
    code, _, err = run(capsys, "serve", "--port", "70000")
    assert code == 2
    assert err.strip().count("\n") == 0 and err.startswith("unisar serve: error: --serve-port: expected an integer")
    code, _, err = run(capsys, "serve", "--precision", "fp8")
    assert code == 2 and "--precision: expected one of auto, bf16, fp32, got 'fp8'" in err


def test_no_broker_is_one_line_and_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "serve", "--brokers", f"127.0.0.1:{free_port()}", "--serve-state-dir",
                       str(tmp_path / "view"), "--checkpoint-dir", str(tmp_path / "ckpt"))
    assert code == 2 and err.startswith("unisar serve: error: no Kafka broker answers") and err.count("\n") == 1
