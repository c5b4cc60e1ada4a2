"""Metrics computed from verdicts (pass@k) and, later, from text similarity."""
