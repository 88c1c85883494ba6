"""Stream side: event schema, history step, sample codec, producer, worker."""
