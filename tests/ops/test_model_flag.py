"""`--model NAME` reaches fit, train, the demo and the training benchmark; a name the zoo
lacks stops each before any work, with one line naming the choices."""
import subprocess
import sys

import pytest

from model.registry import MODELS
from ops.cli import main


@pytest.mark.parametrize("command", [["train"], ["demo"], ["fit", "--events", "x.jsonl", "--out", "x.pt"]])
def test_an_unknown_model_is_a_one_line_error(command, capsys):
    assert main([*command, "--model", "gru4rec"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model: expected one of" in err and "gru4rec" in err
    assert all(name in err for name in MODELS)


def test_every_model_is_named_in_the_help_of_train_and_demo(capsys):
    for command in ("train", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in MODELS), command


def test_the_training_benchmark_refuses_an_unknown_model():
    done = subprocess.run([sys.executable, "benchmarks/train_speed.py", "--model", "gru4rec"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "--model: expected one of" in done.stderr


def test_the_quality_benchmark_names_its_models_and_refuses_others():
    done = subprocess.run([sys.executable, "benchmarks/quality_simulator.py", "--models", "popularity,gru4rec"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--models: expected names among" in done.stderr and "gru4rec" in done.stderr
    assert all(name in done.stderr for name in MODELS)
