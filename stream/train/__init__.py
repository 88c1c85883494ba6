"""The continual trainer (samples -> test-then-train steps -> checkpoints) and its scale-out."""
