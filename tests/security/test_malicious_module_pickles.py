"""Malicious torchxrayvision-style whole-module pickles through the whole ``minicnn.load`` path
(detect -> read_torch_file -> the xrv builder), zip and legacy: a code-running global hidden deep
in the module tree, legacy module ids whose source text is code, classes outside the allow-list
named like torchxrayvision's, and a module record given a hostile state. A marker file proves
nothing ran (the payloads are built with the assembler of ``tests/pretrained/test_xrv_pickle.py``,
whose control test shows they run under plain ``pickle``)."""
from __future__ import annotations

import pytest

import minicnn
from minicnn.errors import UnsafeFileError, WeightFileError
from tests.pretrained.test_xrv_pickle import G, S, T, legacy_file, module, odict, zip_file


def _payload(marker, how):
    cmd = T(S(f"touch {marker}"))
    evil = G("os", "system") + cmd + b"R"
    if how == "deep attribute":            # features.denseblock1.denselayer1.conv1 carries the call
        conv = module("torch.nn.modules.conv.Conv2d", attrs=[("padding_mode", evil)], legacy=False)
        layer = module("torchxrayvision.models._DenseLayer", modules=[("conv1", conv)], legacy=False)
        block = module("torchxrayvision.models._DenseBlock", modules=[("denselayer1", layer)], legacy=False)
        feats = module("torch.nn.modules.container.Sequential", modules=[("denseblock1", block)], legacy=False)
        return module("torchxrayvision.models.DenseNet", modules=[("features", feats)], legacy=False)
    if how == "legacy source is code":     # ('module', cls, file, source): the source must never be compiled
        src = f"__import__('os').system('touch {marker}')"
        klass = T(S("module"), G("torchxrayvision.models", "DenseNet"), S("/x/models.py"), S(src)) + b"Q"
        return klass + b")\x81}(" + S("_parameters") + odict([]) + S("_modules") + odict([]) + b"ub"
    if how == "lookalike class":           # not on the allow-list, however close its name
        return G("torchxrayvision.models", "DenseNet.__init__.__globals__") + b")R"
    if how == "other module class":
        return module("torch.nn.modules.module.Module", legacy=False)
    if how == "state names a global":      # BUILD of an allowed record whose state dict holds os.system
        return G("torchxrayvision.models", "DenseNet") + b")\x81}(" + S("_modules") + evil + b"ub"
    raise AssertionError(how)


HOWS = ["deep attribute", "legacy source is code", "lookalike class", "other module class", "state names a global"]


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("how", HOWS)
def test_hostile_module_pickles_are_refused_by_load_and_run_nothing(tmp_path, how, container):
    marker = tmp_path / "pwned"
    p = tmp_path / "densenet121-res224-all.pt"
    (zip_file if container == "zip" else legacy_file)(p, _payload(marker, how), [])
    with pytest.raises(WeightFileError) as e:
        minicnn.load(p)
    msg = str(e.value)
    assert str(p) in msg and not marker.exists()
    if how in ("deep attribute", "state names a global"):
        assert isinstance(e.value, UnsafeFileError) and "os.system" in msg
    elif how == "lookalike class":
        assert isinstance(e.value, UnsafeFileError) and "DenseNet.__init__.__globals__" in msg
    elif how == "other module class":
        assert isinstance(e.value, UnsafeFileError) and "torch.nn.modules.module.Module" in msg


def test_the_legacy_source_payload_is_code(tmp_path):
    """Control: the source text really is a command when compiled (so never compiling it matters)."""
    marker = tmp_path / "control"
    exec(compile(f"__import__('os').system('touch {marker}')", "<x>", "exec"))   # noqa: S102 - the control
    assert marker.exists()
