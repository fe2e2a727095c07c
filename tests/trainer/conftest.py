"""Fixtures for tests/trainer: the tiny random Llama (a session fixture from tests/fixtures)."""

from tests.fixtures.tiny_llama import tiny_llama_dir  # noqa: F401 - re-exported fixture
