"""`unisar serve`: rankings from the freshest model and the freshest history.

    changelog (compacted) --> view.ChangelogFollower --> own RocksDB view of every history
    events topic (its end) --> pool.PopularPool: recently popular items (recommend's candidates)
    checkpoint directory --> models.ModelHolder: newest complete checkpoint, swapped atomically
    HTTP (app.py) --> service.RankingService --> batcher.MicroBatcher --> ranking.score_requests

The service never reads the worker's RocksDB (one process owns a RocksDB directory): it
follows the changelog the workers already write, the Kafka way of sharing state, into a store
of its own that survives restarts (it resumes from the changelog positions it stored). The
pure core (request_ids.py, ranking.py, pool.py) knows nothing of HTTP or Kafka.
"""
