from __future__ import annotations

import logging

import torch

from stream.serve.models import ModelHolder


def save_as_step(ckpt_dir, step: int) -> None:
    """The checkpoint of step 2 saved again as a later step (training it further is slow)."""
    state = torch.load(ckpt_dir.file(2), weights_only=True)
    state["step"] = step
    ckpt_dir.save(state, step)


def test_serves_the_newest_checkpoint_and_swaps_in_a_newer_one(ckpt_dir):
    holder = ModelHolder(ckpt_dir.path)
    served, refused = holder.refresh()
    assert served is holder.current and served.step == 2 and served.model_name == "unisar" and not refused
    assert holder.refresh() == (None, [])  # nothing newer
    save_as_step(ckpt_dir, 3)
    old = holder.current
    served, _ = holder.refresh()
    assert served.step == 3 and holder.current is served
    assert old.learner is not served.learner  # a batch holding the old one finishes with it


def test_a_corrupt_checkpoint_is_refused_with_a_log_line_and_the_model_keeps_serving(ckpt_dir, caplog):
    holder = ModelHolder(ckpt_dir.path)
    holder.refresh()
    good = holder.current
    ckpt_dir.file(9).write_bytes(ckpt_dir.file(2).read_bytes()[:1000])  # truncated
    ckpt_dir.file(8).write_bytes(b"not a checkpoint at all")
    with caplog.at_level(logging.ERROR, logger="stream.serve.models"):
        served, refused = holder.refresh()
    assert served is None and holder.current is good
    assert len(refused) == 2 and "ckpt-000000000009.pt refused" in caplog.text and "still serving step 2" in caplog.text
    caplog.clear()
    assert holder.refresh() == (None, [])  # refused once, not retried every check
    assert not caplog.text


def test_a_refused_file_is_tried_again_once_it_changes(ckpt_dir):
    holder = ModelHolder(ckpt_dir.path)
    ckpt_dir.file(5).write_bytes(b"partial")
    served, refused = holder.refresh()
    assert served.step == 2 and len(refused) == 1  # falls back to the newest that loads
    save_as_step(ckpt_dir, 5)  # the complete file under the same name
    served, _ = holder.refresh()
    assert served.step == 5


def test_an_empty_directory_serves_nothing_yet(tmp_path):
    holder = ModelHolder(tmp_path / "none-yet")
    assert holder.refresh() == (None, []) and holder.current is None
