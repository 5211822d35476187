"""One switch for results independent of the thread count: runtime.configure(deterministic=True)."""
import numba
import numpy as np
import pytest

from minicnn import losses, optim, runtime, small_cnn, train
from minicnn.cli import main
from minicnn.data import ArrayLoader
from minicnn.errors import UsageError


@pytest.fixture
def restore_runtime():
    before = runtime.settings()
    yield
    runtime.configure(threads=before.threads or numba.config.NUMBA_NUM_THREADS, deterministic=before.deterministic)


def _train(threads):
    runtime.configure(threads=threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 1, 32, 32)).astype(np.float32)
    y = (x[:, 0, :16].mean(axis=(1, 2)) > 0).astype(np.float32)
    m = small_cnn.conv_net("tiny", in_channels=1, outputs=1, image_size=32, seed=0, dropout=0.2)
    train.fit(m, losses.WeightedBCE(), optim.Adam(m.params(), lr=3e-3), ArrayLoader(x, y, batch_size=16, seed=0),
              epochs=2, seed=0, progress=False, log=lambda s: None)
    return m.state_dict()


def test_deterministic_training_is_bit_identical_for_1_and_2_threads(restore_runtime):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2 to compare thread counts")
    runtime.configure(deterministic=True)
    assert runtime.settings().deterministic and runtime.work_split() == runtime.DETERMINISTIC_SPLIT
    one, two = _train(1), _train(2)
    assert runtime.settings().threads == 2
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)


def test_work_split_follows_the_threads_by_default(restore_runtime):
    runtime.configure(threads=1, deterministic=False)
    assert runtime.work_split() == 1 and not runtime.settings().deterministic


def test_the_cli_switch_applies_it(tmp_path, restore_runtime, capsys):
    runtime.configure(deterministic=False)
    assert main(["predict", str(tmp_path / "missing.npz"), str(tmp_path), "--deterministic"]) == 1
    assert runtime.settings().deterministic
    assert "missing.npz" in capsys.readouterr().err


def test_a_bad_value_is_a_usage_error():
    with pytest.raises(UsageError, match="deterministic"):
        runtime.configure(deterministic="yes")


def test_resume_keeps_the_deterministic_switch(restore_runtime, tmp_path):
    from minicnn.data.synthetic import make_synthetic
    from minicnn.experiment import resume_config
    make_synthetic(tmp_path / "data", n=40, size=16, seed=0)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "data"), "--out", str(run), "--epochs", "1", "--image-size", "16",
                 "--arch", "tiny", "--batch-size", "8", "--deterministic", "--quiet"]) == 0
    assert resume_config(run).deterministic is True
    runtime.configure(deterministic=False)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert runtime.settings().deterministic                   # the resumed run ran as it was started
