"""Fixtures for fal's clients: their realtime URL is always wss://, so their test
servers serve TLS with a certificate of the run's own (tests/certificates.py)."""

from __future__ import annotations

import pytest
from certificates import Certificate, self_signed


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, made once per run."""
    return self_signed(tmp_path_factory.mktemp("tls"))
