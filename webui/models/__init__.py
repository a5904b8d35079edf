"""Models: what is in the models folder, the one loaded model, per-model settings, facts read from a file."""
