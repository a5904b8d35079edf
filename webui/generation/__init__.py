"""Generation: the scheduler that owns the model (jobs prepared and run on its thread), cancels, stats."""
