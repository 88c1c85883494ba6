"""Getting events in: the producer client and the stream worker (events -> histories -> samples)."""
