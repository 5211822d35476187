"""Shared test configuration: hypothesis profiles, ../shared, the real Keras model wheel."""
import hashlib
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


PNEUMONIA_WHEEL_GLOB = "pneumonia_model_package-0.3.0-*.whl"
PNEUMONIA_WHEEL_SHA256 = "4bb1ee80366db5de818c7255e62878871b8ec545681193f429e2575b791d3536"


def find_pneumonia_wheels() -> list:
    """Wheels in ``$MINICNN_TEST_WHEEL_DIR``, then in ``minicnn demo``'s own cache."""
    from minicnn.demo import minicnn_home
    wheel_dir = os.environ.get("MINICNN_TEST_WHEEL_DIR")
    folders = ([Path(wheel_dir)] if wheel_dir else []) + [minicnn_home() / "wheels"]
    return [w for folder in folders if folder.is_dir() for w in sorted(folder.glob(PNEUMONIA_WHEEL_GLOB))]


@pytest.fixture(scope="session")
def pneumonia_wheel() -> Path:
    """The hash-checked ``pneumonia-model-package==0.3.0`` wheel from ``$MINICNN_TEST_WHEEL_DIR``, or
    the one ``minicnn demo`` already cached (``$MINICNN_HOME/wheels``, default ``~/.cache/minicnn``).

    ``.ci/run`` downloads it before the tests (tests never reach the network). Without it the
    tests that need it skip -- except in CI (``CI`` set), where a missing wheel is a failure.
    """
    from minicnn.demo import minicnn_home
    wheel_dir = os.environ.get("MINICNN_TEST_WHEEL_DIR")
    found = find_pneumonia_wheels()
    if not found:
        msg = (f"no wheel {PNEUMONIA_WHEEL_GLOB} in $MINICNN_TEST_WHEEL_DIR ({wheel_dir!r}) or in "
               f"{minicnn_home() / 'wheels'} (where `minicnn demo` caches it); run `minicnn demo` once, or "
               f"`python -m pip download --no-deps pneumonia-model-package==0.3.0 -d DIR` and set the variable")
        if os.environ.get("CI"):
            pytest.fail("CI: " + msg)
        pytest.skip(msg)
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    assert digest == PNEUMONIA_WHEEL_SHA256, f"{found[0]}: SHA-256 {digest} is not the pinned {PNEUMONIA_WHEEL_SHA256}"
    return found[0]
