"""The model zoo by name. Each model is one file: a config dataclass and an nn.Module with
`forward(step) -> (scores, losses)`, `tables()` and `reset_rows(kind, rows)`."""
from __future__ import annotations

import dataclasses

import torch.nn as nn

from model.popularity import Popularity, PopularityConfig
from model.sasrec import SASRec, SASRecConfig
from model.unifiedssr import UnifiedSSR, UnifiedSSRConfig
from model.unisar import UniSAR, UniSARConfig
from model.user import USER, USERConfig

MODELS: dict[str, tuple[type, type]] = {
    "unisar": (UniSARConfig, UniSAR),
    "popularity": (PopularityConfig, Popularity),
    "sasrec": (SASRecConfig, SASRec),
    "unifiedssr": (UnifiedSSRConfig, UnifiedSSR),
    "user": (USERConfig, USER),
}


def make_config(name: str, **overrides):
    """The named model's config with `overrides`; unknown names or fields are errors."""
    if name not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {name!r}")
    config_cls = MODELS[name][0]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"{name} config: expected fields among {sorted(fields)}, got unknown {sorted(unknown)}")
    # checkpoints store tuples as lists
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return config_cls(**overrides)


def build(name: str, config) -> nn.Module:
    return MODELS[name][1](config)
