"""Shared fixtures: the real-data folder beside the checkout (skipped when absent)."""

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not beside this checkout")
    return REALDATA


@pytest.fixture(autouse=True)
def _restore_ctbone_logger():
    """The CLI configures the "ctbone" logger for a process (level, handler, no propagation); a command run
    in-process by one test must not hide another test's log records from caplog."""
    import logging

    logger = logging.getLogger("ctbone")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
