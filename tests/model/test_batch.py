import numpy as np

from model.batch import collate
from model.tensors import encode, sample_negatives
from model.idtable import IdTable
from stream.contract.history import History, Limits, RecBehaviour, SearchBehaviour
from stream.contract.samples import Sample

LIMITS = Limits(max_rec=4, max_search=3, max_clicks=2, max_words=4)


def sample(task="rec", items=(9,), label=1, query=(), rec=(), search=()) -> Sample:
    return Sample("e", 1, 100, task, items, label, query, History(-1, tuple(rec), tuple(search)))


def test_mixed_sequence_is_time_ordered_rec_first_on_ties_padding_keeps_type():
    s = sample(
        rec=[RecBehaviour(10, 101), RecBehaviour(30, 102)],
        search=[SearchBehaviour(20, (7, 8), (201,)), SearchBehaviour(30, (7,), ())],
    )
    b = collate([s], LIMITS)
    r = b.tasks["rec"]
    np.testing.assert_array_equal(r.rec_items[0], [101, 102, 0, 0])
    # slots: rec 0..3, search 4..6. Time order: rec0 (10), search0 (20), rec1 (30), search1 (30), then padding
    np.testing.assert_array_equal(r.mixed[0], [0, 4, 1, 5, 2, 3, 6])
    assert b.queries[r.search_query[0, 0]].tolist()[:2] == [7, 8]
    assert r.search_query[0, 2] == 0 and r.search_clicks[0, 0].tolist() == [201, 0]


def test_search_rows_per_click_exposures_skipped_history_truncated():
    long = [RecBehaviour(t, 100 + t) for t in range(10)]
    b = collate(
        [sample("search", items=(5, 6, 7), query=(1, 2)), sample(label=0), sample(rec=long)], LIMITS
    )
    assert b.skipped == 1
    assert b.tasks["search"].target.tolist() == [5, 6]  # up to max_clicks rows
    assert (b.tasks["search"].query == b.tasks["search"].query[0]).all()
    assert b.tasks["rec"].rec_items[-1].tolist() == [106, 107, 108, 109]  # the latest 4


def test_negatives_avoid_the_users_items_and_repeat_nothing():
    rng = np.random.default_rng(0)
    exclude = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    neg = sample_negatives(rng, 12, exclude, 7, strict=True)
    for row, ex in zip(neg, exclude):
        assert len(set(row.tolist())) == 7 and not set(row.tolist()) & set(ex.tolist())


def test_encode_maps_ids_into_one_local_vocabulary():
    s = sample(items=(9,), rec=[RecBehaviour(1, 11), RecBehaviour(2, 12)], search=[SearchBehaviour(3, (5,), (11, 13))])
    tables = {k: IdTable(64) for k in ("users", "items", "words")}
    tables["items"].lookup(np.arange(100, 130))  # items seen before: the pool negatives come from
    step, _ = encode(collate([s] * 3, LIMITS), tables, np.random.default_rng(0), train=True, n_negatives=4)
    t = step.tasks["rec"]
    rows = step.item_rows[t.rec_items[0, :2]]
    assert rows.tolist() == tables["items"].find(np.array([11, 12])).tolist()
    assert step.item_rows[t.candidates[:, 0]].tolist() == tables["items"].find(np.array([9, 9, 9])).tolist()
    assert t.candidates.shape == (3, 5)
    negative_rows = set(step.item_rows[t.candidates[:, 1:]].flatten().tolist())
    assert not negative_rows & set(tables["items"].find(np.array([9, 11, 12, 13])).tolist())


def test_a_searchs_other_clicks_are_never_its_negatives_and_one_row_per_search_is_first():
    tables = {k: IdTable(64) for k in ("users", "items", "words")}
    tables["items"].lookup(np.arange(1, 9))  # a pool of 8 items: 3 are the search's clicks
    s = sample("search", items=(1, 2), query=(7,))
    batch = collate([s, sample("search", items=(3,), query=(8,))], LIMITS)
    assert batch.tasks["search"].first.tolist() == [True, False, True]
    for seed in range(20):
        step, _ = encode(batch, tables, np.random.default_rng(seed), train=True, n_negatives=5)
        t = step.tasks["search"]
        clicks = set(tables["items"].find(np.array([1, 2])).tolist())
        for row in (0, 1):  # the rows of the search with clicks 1 and 2
            assert not set(step.item_rows[t.candidates[row, 1:]].tolist()) & clicks
        assert t.first.tolist() == [True, False, True]


def test_negative_queries_equal_to_a_batch_query_share_its_index():
    tables = {k: IdTable(64) for k in ("users", "items", "words")}
    tables["items"].lookup(np.arange(1, 20))
    batch = collate([sample("search", items=(1,), query=(7, 8), search=[SearchBehaviour(5, (9,), (2,))])], LIMITS)
    rel = np.array([[7, 8, 0], [4, 0, 0], [4, 0, 0], [9, 0, 0]])
    step, _ = encode(batch, tables, np.random.default_rng(0), train=True, n_negatives=3, rel_queries=rel)
    queries = [tuple(q[q != 0].tolist()) for q in batch.queries]
    own, history = queries.index((7, 8)), queries.index((9,))
    idx = step.rel_queries.tolist()
    assert idx[0] == own and idx[3] == history and idx[1] == idx[2] not in (own, history)


def test_sessions_split_the_mixed_sequence_at_gaps_over_30_minutes_counting_back_from_now():
    hour = 3_600_000
    history = History(-1, (RecBehaviour(0, 101), RecBehaviour(2 * hour + 60_000, 102)),
                      (SearchBehaviour(60_000, (7,), (201,)), SearchBehaviour(2 * hour + 120_000, (7,), (202,))))
    now = Sample("e", 1, 2 * hour + 180_000, "rec", (9,), 1, (), history)
    later = Sample("e", 1, 3 * hour, "search", (5, 6), 1, (7,), history)  # 58 minutes of silence since
    b = collate([now, later], LIMITS)
    # time order: rec0, search0 | 2-hour gap | rec1, search1, then 3 padding positions
    np.testing.assert_array_equal(b.tasks["rec"].session[0], [1, 1, 0, 0, -1, -1, -1])
    # the search repeats per click, and its current session is empty: the history is 1 and 2 back
    np.testing.assert_array_equal(b.tasks["search"].session, [[2, 2, 1, 1, -1, -1, -1]] * 2)
    step, _ = encode(b, {k: IdTable(64) for k in ("users", "items", "words")}, np.random.default_rng(0),
                     train=True, n_negatives=2)
    assert step.tasks["rec"].session.tolist() == b.tasks["rec"].session.tolist()
    empty = collate([sample()], LIMITS).tasks["rec"].session
    assert (empty == -1).all()


def test_exposures_join_the_rec_rows_as_labelled_negatives_when_asked():
    samples = [sample(items=(9,)), sample(items=(4,), label=0), sample("search", items=(5,), query=(1,)),
               sample(items=(8,))]
    left_out = collate(samples, LIMITS)
    assert left_out.skipped == 1 and left_out.tasks["rec"].label is None
    assert left_out.tasks["rec"].target.tolist() == [9, 8]
    used = collate(samples, LIMITS, exposures=True)
    assert used.skipped == 0
    rec = used.tasks["rec"]
    assert rec.target.tolist() == [9, 8, 4] and rec.label.tolist() == [1.0, 1.0, 0.0]  # clicks, then exposures
    assert used.tasks["search"].label is None
    assert collate([sample(items=(9,))], LIMITS, exposures=True).tasks["rec"].label is None  # none to label
    tables = {k: IdTable(64) for k in ("users", "items", "words")}
    step, _ = encode(used, tables, np.random.default_rng(0), train=True, n_negatives=3)
    assert step.tasks["rec"].label.tolist() == [1.0, 1.0, 0.0]
