"""What every model of the zoo shares with the learner, as a base for the models' configs."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ZooConfig:
    # rows of each id table (row 0 is padding); the learner maps raw ids onto them, and a
    # model embeds the kinds it reads
    n_users: int = 1 << 15
    n_items: int = 1 << 18
    n_words: int = 1 << 17
    # the history a sample carries (stream.contract.history.Limits)
    max_rec: int = 30
    max_search: int = 30
    max_clicks: int = 5
