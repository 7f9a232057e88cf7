"""Benchmarks are scripts (`make bench`, `make bench-queries`), never pytest tests."""

collect_ignore_glob = ["*"]
