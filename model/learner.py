"""The learner: what the trainer, `unisar fit` and `unisar eval` talk to (River's vocabulary).

    learner = Learner("unisar", seed=0, n_items=700_000)
    terms = learner.learn_many(samples)   # one optimiser step; {"total": ..., "rec/bce": ...}
    scores = learner.score(samples)       # {"rec": (B, 100), ...}, column 0 the true item
    learner.load_state_dict(learner.state_dict())

It owns what a stream needs around the model: the id -> row tables (rows recycled when ids
go stale, their embedding and Adam state reset), the item pool negatives are drawn from
(the item table itself: a bounded set of recently seen items, sampled uniformly, as the
paper samples uniformly over its catalogue), a bounded pool of recent queries for L_Rel,
the local catalogue (item features and user profiles, joined by id at batch time), and the
optimisers:
  - dense parameters: Adam, L2 on non-bias weights (coupled, as the reference);
  - embedding tables: SparseAdam on the rows a step touched, with the same L2 added to
    those rows' gradients (model.optim.TableAdam). A 670k-row table therefore costs per
    step what the batch touches, not 670k rows of Adam; untouched rows keep their moments
    (lazy Adam). Their learning rate, `table_lr`, defaults to `lr`: a rare item's row moves
    only on the few steps that touch it, so a larger one lets it leave its init within a
    few epochs.
Randomness comes from `seed` alone: negatives and dropout of step t are drawn from
generators seeded by (seed, t), so a resumed checkpoint continues exactly.

Data parallel (`learn_many(samples, sync=...)`, world size > 1): model.data_parallel.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading

import numpy as np
import torch

from model.batch import Batch, collate
from model.tensors import encode
from model.data_parallel import FindOnly, StepSync, batch_ids, pack_step, union_lookup, unpack_step
from model.catalogue import Catalogue
from model.idtable import KINDS, IdTable
from model.optim import TableAdam
from model.precision import autocast, use_bf16
from model.querypool import QueryPool
from model.registry import build, make_config
from stream.contract.history import Limits
from stream.contract.items import MAX_FIELDS, ItemRecord
from stream.contract.samples import Sample

_SEEDED = threading.RLock()  # torch's global generator is one per process: seed-then-draw must not interleave
FORMAT = 3  # 2: the item catalogue joined the checkpoint; 3: user profiles, catalogues keyed by token widths


class Learner:
    def __init__(
        self,
        model: str = "unisar",
        *,
        seed: int = 0,
        lr: float = 1e-3,
        table_lr: float | None = None,
        l2: float = 3e-5,
        n_negatives: int = 16,
        unknown_rate: float = 0.05,
        query_pool: int = 50_000,
        catalogue_size: int | None = None,
        profile_size: int | None = None,
        exposures: bool = False,
        precision: str = "fp32",
        device: str = "cpu",
        **config,
    ) -> None:
        if lr <= 0 or (table_lr is not None and table_lr <= 0):
            raise ValueError(f"expected learning rates > 0, got lr={lr} and table_lr={table_lr}")
        self.model_name, self.seed, self.lr, self.l2 = model, seed, lr, l2
        self.table_lr = lr if table_lr is None else table_lr
        if not 0.0 <= unknown_rate < 1.0:
            raise ValueError(f"expected unknown_rate in [0, 1), got {unknown_rate}")
        # the share of training candidates shown as unknown items (model.tensors.encode)
        self.n_negatives, self.unknown_rate, self.device = n_negatives, unknown_rate, torch.device(device)
        self.asked_exposures = exposures
        self.set_precision(precision)
        self.config = make_config(model, **config)
        cfg = self.config
        self.limits = Limits(max_rec=cfg.max_rec, max_search=cfg.max_search, max_clicks=cfg.max_clicks)
        with _SEEDED, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = build(model, cfg).to(self.device)
        self.ids = {kind: IdTable(getattr(cfg, f"n_{kind}")) for kind in KINDS}
        # item features and user profiles, joined by id at batch time (for a model that embeds them)
        self.catalogue = Catalogue(catalogue_size or max(cfg.n_items, Catalogue.DEFAULT_CAPACITY),
                                   (getattr(cfg, "category_levels", 2), getattr(cfg, "caption_words", 16)))
        self.profiles = Catalogue(profile_size or max(cfg.n_users, Catalogue.DEFAULT_CAPACITY), (MAX_FIELDS,))
        self._features = getattr(cfg, "use_item_features", False)
        self._profiles = getattr(cfg, "use_user_features", False)
        self.queries = QueryPool(query_pool, self.limits.max_words)
        self.step = 0

        tables = [e.weight for embs in self.model.tables().values() for e in embs]
        table_ids = {id(p) for p in tables}
        dense = [(n, p) for n, p in self.model.named_parameters() if id(p) not in table_ids]
        self.optimizers: dict[str, torch.optim.Optimizer] = {"tables": TableAdam(tables, lr=self.table_lr, weight_decay=l2)}
        if dense:
            groups = [
                {"params": [p for n, p in dense if "bias" not in n], "weight_decay": l2},
                {"params": [p for n, p in dense if "bias" in n], "weight_decay": 0.0},
            ]
            self.optimizers["dense"] = torch.optim.Adam([g for g in groups if g["params"]], lr=lr)

    def set_precision(self, precision: str) -> None:
        """auto, bf16 or fp32: bf16 autocast of the forward pass where chosen (model.precision);
        weights, optimiser state and losses stay fp32. A choice of the run, not of the model."""
        self.precision, self.bf16 = precision, use_bf16(precision, self.device)

    @property
    def exposures(self) -> bool:
        """Whether rec exposures without a click train the model as labelled negatives of its rec
        loss (model.batch.collate): asked for, and the model learns from them (USER does not)."""
        return self.asked_exposures and getattr(self.model, "learns_exposures", True)

    # ------------------------------------------------------------- learn and score

    def learn_many(self, batch: Batch | list[Sample], sync: StepSync | None = None) -> dict[str, float]:
        """One optimiser step on a batch (both tasks' rows at once). Returns its loss terms.

        With `sync` (world size > 1), one data-parallel step: every rank must call it, in
        the same step, even with an empty batch (see the module's notes)."""
        if not isinstance(batch, Batch):
            batch = collate(batch, self.limits, exposures=self.exposures)
        if sync is not None and sync.world_size > 1:
            return self._learn_synced(batch, sync)
        if not batch.tasks:
            return {}
        rng = np.random.default_rng([self.seed, self.step])
        n_rel = getattr(self.config, "rel_negatives", 0) if getattr(self.config, "use_rel", False) else 0
        # sampled before the batch joins the pool; a negative equal to a pair's own query is
        # masked in L_Rel (encode gives equal queries one index)
        rel_queries = self.queries.sample(rng, n_rel)
        self.queries.add(batch.queries)
        step, recycled = encode(
            batch, self.ids, rng, train=True, n_negatives=self.n_negatives, unknown_rate=self.unknown_rate,
            n_rel_items=n_rel, rel_queries=rel_queries, catalogue=self.feature_catalogue(),
            profiles=self.feature_profiles(),
        )
        self._recycle(recycled)
        self.model.train()
        # two learners may step in two threads (a periodic retrain beside the trainer's steps)
        with _SEEDED, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed * 1_000_003 + self.step)
            with autocast(self.bf16, self.device):
                _, losses = self.model(step.to(self.device))
        if "total" not in losses:  # no row the model learns from (USER and a batch of rec exposures)
            return {}
        if not torch.isfinite(losses["total"]):
            # A NaN or infinite loss would poison the weights and Adam's moments: skip the
            # step (the caller sees the terms and counts it).
            return {k: float(v.detach()) for k, v in losses.items()}
        self._zero_grad()
        losses["total"].backward()
        self._apply_step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def _learn_synced(self, batch: Batch, sync: StepSync) -> dict[str, float]:
        n_rel = getattr(self.config, "rel_negatives", 0) if getattr(self.config, "use_rel", False) else 0
        shared = np.random.default_rng([self.seed, self.step])  # drawn alike on every rank
        own = np.random.default_rng([self.seed, self.step, 2, sync.rank])  # this rank's negatives
        # 1. the same table and query-pool updates on every rank: the union of all batches
        gathered = [unpack_step(p) for p in sync.all_gather(pack_step(batch_ids(batch), batch.queries))]
        if not any(len(ids["users"]) for ids, _ in gathered):  # no rank has a row: no step, no change
            return {}
        rel_queries = self.queries.sample(shared, n_rel)  # before the batches join the pool
        for _, queries in gathered:
            self.queries.add(queries)
        recycled = union_lookup(self.ids, [ids for ids, _ in gathered], {"words": rel_queries})
        with _SEEDED, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(int(np.random.SeedSequence([self.seed, self.step, 3]).generate_state(1)[0]))
            self._recycle(recycled)
        # 2. this rank's forward and backward, the tables only read
        self._zero_grad()
        terms, weight = {}, 0.0
        if batch.tasks:
            frozen = {kind: FindOnly(table) for kind, table in self.ids.items()}
            step, _ = encode(
                batch, frozen, own, train=True, n_negatives=self.n_negatives, unknown_rate=self.unknown_rate,
                n_rel_items=n_rel, rel_queries=rel_queries, catalogue=self.feature_catalogue(),
                profiles=self.feature_profiles(),
            )
            self.model.train()
            with _SEEDED, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed((self.seed * 1_000_003 + self.step) * sync.world_size + sync.rank)
                with autocast(self.bf16, self.device):
                    _, losses = self.model(step.to(self.device))
            terms = {k: float(v.detach()) for k, v in losses.items()}
            if "total" in losses and torch.isfinite(losses["total"]):  # a non-finite rank contributes nothing
                losses["total"].backward()
                weight = float(len(batch))
        # 3. the same averaged gradients, then the same step, on every rank
        if self._all_reduce_grads(sync, weight) == 0:
            self._zero_grad()
            return terms
        self._apply_step()
        return terms

    def add_items(self, records) -> None:
        """Take catalogue records (stream.contract.items: ItemRecord and ProfileRecord) into the
        local catalogue; the next batches embed those items' features and users' profiles."""
        records = list(records)
        items = [r for r in records if isinstance(r, ItemRecord)]
        users = [r for r in records if not isinstance(r, ItemRecord)]
        self.catalogue.update(np.fromiter((r.item for r in items), np.int64, len(items)),
                              [r.categories for r in items], [r.words for r in items])
        self.profiles.update(np.fromiter((r.user for r in users), np.int64, len(users)), [r.fields for r in users])

    def feature_catalogue(self) -> Catalogue | None:
        """The catalogue encode joins item features from: None for a model that embeds none."""
        return self.catalogue if self._features else None

    def feature_profiles(self) -> Catalogue | None:
        """The profiles encode joins by user: None for a model that embeds none."""
        return self.profiles if self._profiles else None

    def _zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def _apply_step(self) -> None:
        """The optimiser step on the gradients in place: both optimisers."""
        for opt in self.optimizers.values():
            opt.step()
        self.step += 1

    def _all_reduce_grads(self, sync: StepSync, weight: float) -> float:
        """Replace every gradient by the rows-weighted mean over ranks; returns the total
        weight (0: no rank has a gradient, nobody steps)."""
        dense = [p for group in self.optimizers["dense"].param_groups for p in group["params"]] \
            if "dense" in self.optimizers else []
        sizes = [p.numel() for p in dense]
        flat = torch.zeros(1 + len(dense) + sum(sizes), dtype=torch.float32)
        flat[0] = weight
        at = 1 + len(dense)
        for i, (p, n) in enumerate(zip(dense, sizes)):
            if p.grad is not None:
                flat[1 + i] = 1.0
                flat[at : at + n] = p.grad.detach().reshape(-1).cpu() * weight
            at += n
        flat = sync.all_reduce(flat)
        total = float(flat[0])
        at = 1 + len(dense)
        for i, (p, n) in enumerate(zip(dense, sizes)):
            p.grad = (flat[at : at + n] / total).view_as(p).to(p.device) if total and flat[1 + i] > 0 else None
            at += n
        for group in self.optimizers["tables"].param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    indices, values = torch.zeros((1, 0), dtype=torch.int64), torch.zeros((0, *p.shape[1:]))
                else:
                    g = g.coalesce().cpu()
                    indices, values = g.indices(), g.values() * weight
                local = torch.sparse_coo_tensor(indices, values, p.shape, check_invariants=False).coalesce()
                g = sync.all_reduce(local).coalesce()
                p.grad = None if not total or g._nnz() == 0 else torch.sparse_coo_tensor(
                    g.indices(), g.values() / total, p.shape, is_coalesced=True, check_invariants=False
                ).to(p.device)
        return total

    def digest(self) -> str:
        """A hash of everything that must be equal on every data-parallel rank: parameters,
        optimiser state, id tables, query pool and step."""
        h = hashlib.blake2b(digest_size=8)

        def feed(value) -> None:
            if isinstance(value, dict):
                for key in sorted(value, key=str):
                    h.update(repr(key).encode())
                    feed(value[key])
            elif isinstance(value, (list, tuple)):
                for v in value:
                    feed(v)
            elif isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
            else:
                h.update(repr(value).encode())

        state = self.state_dict()
        feed({k: state[k] for k in ("step", "model", "optimizers", "ids", "queries", "catalogue", "profiles")})
        return h.hexdigest()

    @torch.no_grad()
    def score(
        self,
        batch: Batch | list[Sample],
        n_negatives: int | None = 99,
        exclude: dict[int, np.ndarray] | None = None,
        seed: int | None = None,
        negatives: dict[str, np.ndarray] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Scores (B, C) per task; column 0 is the true item, the others `n_negatives` items
        sampled uniformly from the known items, none of which the user touched (their
        history, or `exclude[user]`), or the raw item ids `negatives[task]` (B, n) given by
        the caller (model.evaluation draws them independently of the model). An item the
        model does not hold scores through its unknown-item vector. `n_negatives=None` ranks
        against every known item (full ranking): the user's own items then score -inf.
        Learns nothing."""
        if not isinstance(batch, Batch):
            batch = collate(batch, self.limits)
        if not len(batch):  # e.g. only rec exposures, which are not ranked: nothing to score
            return {}
        rng = np.random.default_rng([self.seed if seed is None else seed, self.step, 1])
        step, _ = encode(batch, self.ids, rng, train=False, n_negatives=n_negatives, exclude=exclude,
                         negatives=negatives, catalogue=self.feature_catalogue(), profiles=self.feature_profiles())
        self.model.eval()
        with autocast(self.bf16, self.device):
            scores, _ = self.model(step.to(self.device))
        out = {}
        for task, s in scores.items():
            blocked = step.tasks[task].blocked
            out[task] = s.float().cpu() if blocked is None else s.float().cpu().masked_fill(blocked, float("-inf"))
        return out

    # ------------------------------------------------------------- streams: recycling, L2

    def _recycle(self, recycled: dict[str, np.ndarray]) -> None:
        """Rows handed to new ids start fresh: new embedding, zero Adam moments."""
        tables = self.model.tables()
        state = self.optimizers["tables"].state
        for kind, rows in recycled.items():
            if not len(rows) or kind not in tables:
                continue
            rows_t = torch.from_numpy(rows).to(self.device)
            self.model.reset_rows(kind, rows_t)
            for emb in tables[kind]:
                for moment in ("exp_avg", "exp_avg_sq"):
                    if moment in state.get(emb.weight, {}):
                        state[emb.weight][moment][rows_t] = 0.0

    # ------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        """One dict of tensors and plain values (loads with torch.load(weights_only=True))."""
        return {
            "format": FORMAT,
            "model_name": self.model_name,
            "config": dataclasses.asdict(self.config),
            "learner": {"seed": self.seed, "lr": self.lr, "table_lr": self.table_lr, "l2": self.l2,
                        "n_negatives": self.n_negatives, "unknown_rate": self.unknown_rate, "exposures": self.asked_exposures,
                        "precision": self.precision,
                        "query_pool": len(self.queries.words), "catalogue_size": self.catalogue.ids.capacity,
                        "profile_size": self.profiles.ids.capacity},
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "ids": {kind: table.state_dict() for kind, table in self.ids.items()},
            "queries": self.queries.state_dict(),
            "catalogue": self.catalogue.state_dict(),
            "profiles": self.profiles.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != FORMAT:
            older = isinstance(state.get("format"), int) and state["format"] < FORMAT
            older = " (an older release's: train it again)" if older else ""
            raise ValueError(f"checkpoint: expected format {FORMAT}, got {state.get('format')!r}{older}")
        if state["model_name"] != self.model_name or state["config"] != dataclasses.asdict(self.config):
            raise ValueError("checkpoint: its model or config differs from this learner's; use Learner.from_state_dict")
        self.model.load_state_dict(state["model"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        for kind, table in self.ids.items():
            table.load_state_dict(state["ids"][kind])
        self.queries.load_state_dict(state["queries"])
        self.catalogue.load_state_dict(state["catalogue"])
        self.profiles.load_state_dict(state["profiles"])
        self.step = int(state["step"])

    @classmethod
    def from_state_dict(cls, state: dict, device: str = "cpu") -> Learner:
        if not isinstance(state, dict) or "model_name" not in state or "config" not in state:
            raise ValueError("checkpoint: expected a dict saved by Learner.state_dict()")
        learner = cls(state["model_name"], device=device, **state["learner"], **state["config"])
        learner.load_state_dict(state)
        return learner
