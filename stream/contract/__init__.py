"""The data contract: event v1, stable ids, the history and sample codecs, event files.

Pure and self-contained: no settings, metrics or Kafka. `model/` may import this and nothing
else of the project."""
