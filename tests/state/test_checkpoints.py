import os
import subprocess
import sys
import time

import torch

from state.checkpoints import CheckpointDir


def test_save_keeps_the_newest_k_and_loads_the_latest(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=2)
    for step in (10, 20, 30):
        ckpts.save({"step": step, "w": torch.full((3,), float(step))}, step)
    assert ckpts.steps() == [20, 30]
    latest = ckpts.load_latest()
    assert latest["step"] == 30 and torch.equal(latest["w"], torch.full((3,), 30.0))


def test_a_torn_or_corrupt_newest_file_falls_back(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=3)
    ckpts.save({"step": 1}, 1)
    ckpts.file(2).write_bytes(b"not a checkpoint")  # as if written by something broken
    (tmp_path / "ckpt-000000000003.pt.tmp").write_bytes(b"half")  # a kill -9 mid-write
    ckpts = CheckpointDir(tmp_path, keep=3)
    assert ckpts.load_latest() == {"step": 1}
    ckpts.save({"step": 4}, 4)
    assert not list(tmp_path.glob("*.tmp"))


def test_kill_9_during_saves_never_leaves_a_torn_checkpoint(tmp_path):
    script = (
        "import sys, torch; from state.checkpoints import CheckpointDir\n"
        "c = CheckpointDir(sys.argv[1], keep=2)\n"
        "for s in range(1, 10**6): c.save({'step': s, 'w': torch.randn(200_000)}, s)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=os.getcwd())
    ckpts = CheckpointDir(tmp_path, keep=2)  # a reader: it never touches the writer's files

    deadline = time.monotonic() + 60
    while len(ckpts.steps()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    for step in ckpts.steps():
        state = torch.load(ckpts.file(step), weights_only=True)
        assert state["step"] == step and state["w"].shape == (200_000,)
    assert CheckpointDir(tmp_path).load_latest() is not None
