"""The docker sandbox's image: Dockerfile, offline build (build.py) and engine helpers (engine.py)."""
