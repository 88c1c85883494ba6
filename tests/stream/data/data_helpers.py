"""Helpers for the data tests: small files in the layouts the loaders read."""
from __future__ import annotations

import csv
from pathlib import Path

DAY_MS = 86_400_000
DAY0 = 1_684_684_800_000  # 2023-05-22 00:00 Beijing time (UTC+8)

REC_HEADER = ["user_id", "item_id", "playing_time", "duration_ms", "time", "timestamp", "click", "forward", "like"]
SRC_HEADER = ["user_id", "search_session_id", "search_session_time", "search_session_timestamp", "keyword",
              "search_source", "item_id", "click_cnt", "item_type"]
ITEM_HEADER = ["item_id", "caption", "author_id", "first_level_category_id", "second_level_category_id"]


def write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def rec_row(user: int, item: int, ts: int | str, click: int = 1) -> list[object]:
    return [user, item, 1000.0, 2000.0, "2023-05-22 00:00:00", ts, click, 0, 0]


def src_row(user: int, session: int, ts: int | str, keyword: str, item: int, click_cnt: int,
            item_type: str = "VIDEO") -> list[object]:
    return [user, session, "2023-05-22 00:00:00", ts, keyword, "USER_INPUT", item, click_cnt, item_type]


def write_kuaisar(directory: Path, rec: list[list[object]], src: list[list[object]],
                  items: list[list[object]] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "rec_inter.csv", REC_HEADER, rec)
    write_csv(directory / "src_inter.csv", SRC_HEADER, src)
    if items is not None:
        write_csv(directory / "item_features.csv", ITEM_HEADER, items)
    return directory


def clicked_categories(config, n_events: int) -> dict[str, list[str]]:
    """Each user's rec clicks in a simulated run of `n_events`, as the clicked items' categories."""
    from stream.data import simulator

    world = simulator.World.build(config)
    category = dict(world.categories())
    per_user: dict[str, list[str]] = {}
    for event in simulator.generate(config, n_events, world):
        if event["type"] == "rec" and event["click"]:
            per_user.setdefault(event["user"], []).append(category[event["item"]])
    return per_user
