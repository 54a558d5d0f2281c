"""Scoring a model on a finished satsft output (`satsft eval`): pure functions per task, no Beam."""
