"""Shared test configuration: hypothesis profiles and the path to ../shared."""
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# deadline=None: the first call of a Numba kernel compiles (seconds). In CI the examples are
# derandomized so a run is reproducible; HYPOTHESIS_PROFILE=intense explores much more.
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=25, **_common)
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_common)
settings.register_profile("intense", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside the checkout")
    return SHARED


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
