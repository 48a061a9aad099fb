"""Example projects that run in CI as end-to-end tests (tests/test_examples.py)."""
