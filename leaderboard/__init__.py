"""Read-only consumers of run directories: the static leaderboard site (build.py) and the CI
regression gate (gate.py). Neither imports torch, a task or a sandbox: they read config.json,
metrics.json and results.jsonl, nothing else.
"""
