"""Fixtures for tests/common: the S3 server fixture is imported here, where it is used."""

from tests.fixtures.s3_server import s3_server  # noqa: F401 - re-exported as a pytest fixture
