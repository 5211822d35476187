"""VGG16, ResNet50 and InceptionV3 parity: minicnn against torchvision with random weights AND random
batch-norm running statistics, loaded from ``.pth`` (zip) and ``.safetensors`` files.

rel err = max|a - b| / max|b| over the whole output; the bound is 1e-4 everywhere. One
architecture at a time (module-scoped fixtures, freed before the next), weight files in tmp_path,
small batches and, for the second file format, smaller inputs. The Keras side of these three
architectures is checked against Keras' own outputs by ``pretrained/verify_keras_refs.py`` (the
reference files are too big to commit); here only its name tables and layouts.
"""
import gc
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from torch_reference import randomize

from minicnn.pretrained.inception import TORCH_DROPPED_PREFIXES, inception_v3, keras_creation_order
from minicnn.pretrained._common import weighted_nodes
from minicnn.pretrained.mapping import permute_flatten_rows
from minicnn.readers.keras import KerasLayerWeights
from minicnn.pretrained.resnet import resnet50, resnet50_keras2_name, resnet50_keras_name
from minicnn.pretrained.vgg import VGG16_SPEC, vgg16, vgg16_keras_name

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def _save_both(torch, net, folder, name):
    from safetensors.torch import save_file

    sd = net.state_dict()
    paths = {"pth": folder / f"{name}.pth", "safetensors": folder / f"{name}.safetensors"}
    torch.save(sd, paths["pth"])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(paths["safetensors"]))
    return paths, list(sd)


def _torch_case(tmp_path_factory, name, make, sizes, batch=(1, 2), extra=None):
    """Build a random torchvision net, save it both ways, and compute its outputs on random inputs.

    ``sizes``: input size per format; returns ``(paths, keys, inputs, refs, extra_refs)``.
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    pytest.importorskip("safetensors")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    net = make().eval()
    randomize(torch, net, 1)
    rng = np.random.default_rng(0)
    x = {fmt: rng.standard_normal((n, 3, s, s)).astype(np.float32) for (fmt, s), n in zip(sizes.items(), batch)}
    with torch.no_grad():
        ref = {fmt: net(torch.from_numpy(v)).numpy().astype(np.float64) for fmt, v in x.items()}
        more = extra(torch, net, x) if extra else None
    paths, keys = _save_both(torch, net, tmp_path_factory.mktemp(name), name)
    del net
    gc.collect()
    return paths, keys, x, ref, more


def _parity(build, case, fmt, **kwargs):
    paths, _, x, ref, _ = case
    model = build(paths[fmt], input_shape=x[fmt].shape[1:], **kwargs)
    assert model.meta["source"] == "torchvision" and model.output_activation is None
    out = model.predict(x[fmt])
    err = rel_err(out, ref[fmt])
    dropped = model.meta["dropped"]
    del model
    gc.collect()
    assert out.shape == ref[fmt].shape
    assert err < TOL, f"{fmt}: max relative error {err:.3e}"
    return dropped


# ------------------------------------------------------------------------------------------------
# ResNet50
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_case(tmp_path_factory):
    def pooled(torch, net, x):                      # include_top=False, pooling='avg' reference
        fc, net.fc = net.fc, torch.nn.Identity()
        out = net(torch.from_numpy(x["safetensors"])).numpy().astype(np.float64)
        net.fc = fc
        return out

    import_tv = pytest.importorskip("torchvision")
    case = _torch_case(tmp_path_factory, "resnet50", lambda: import_tv.models.resnet50(weights=None),
                       {"pth": 224, "safetensors": 96}, extra=pooled)
    yield case
    gc.collect()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_resnet50_matches_torchvision(resnet_case, fmt):
    dropped = _parity(resnet50, resnet_case, fmt)
    assert sorted(dropped) == sorted(k for k in resnet_case[1] if k.endswith("num_batches_tracked"))


def test_resnet50_notop_pooled_drops_fc_and_lists_it(resnet_case):
    paths, keys, x, _, pooled = resnet_case
    model = resnet50(paths["safetensors"], include_top=False, pooling="avg", input_shape=(3, 96, 96))
    assert rel_err(model.predict(x["safetensors"]), pooled) < TOL
    assert {"fc.weight", "fc.bias"} <= set(model.meta["dropped"])


def test_resnet_state_dict_into_vgg_lists_missing_and_unexpected(resnet_case):
    with pytest.raises(ValueError) as e:
        vgg16(resnet_case[0]["pth"], include_top=False, input_shape=(3, 32, 32))
    msg = str(e.value)
    assert "missing" in msg and "features.0.weight" in msg
    assert "unexpected" in msg and "layer1.0.conv1.weight" in msg


def test_torch_file_refuses_keras_source(resnet_case):
    with pytest.raises(ValueError, match="torchvision"):
        resnet50(resnet_case[0]["pth"], source="keras")


# ------------------------------------------------------------------------------------------------
# InceptionV3 (299 for the .pth; 75, the smallest size torchvision accepts, for the rest)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inception_case(tmp_path_factory):
    def without_transform(torch, net, x):
        net.transform_input = False
        out = net(torch.from_numpy(x["safetensors"])).numpy().astype(np.float64)
        net.transform_input = True
        return out

    tv = pytest.importorskip("torchvision")
    make = lambda: tv.models.inception_v3(weights=None, aux_logits=True, transform_input=True,  # noqa: E731
                                          init_weights=False)
    case = _torch_case(tmp_path_factory, "inception_v3", make, {"pth": 299, "safetensors": 75},
                       extra=without_transform)
    yield case
    gc.collect()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_inception_v3_matches_torchvision(inception_case, fmt):
    dropped = _parity(inception_v3, inception_case, fmt)        # transform_input=None: on for torchvision files
    keys = inception_case[1]
    aux = [k for k in keys if k.startswith(TORCH_DROPPED_PREFIXES)]
    assert len(aux) >= 10 and "AuxLogits.fc.weight" in aux
    assert sorted(dropped) == sorted(set(aux) | {k for k in keys if k.endswith("num_batches_tracked")})


def test_inception_v3_transform_input_off(inception_case):
    paths, _, x, _, ref_off = inception_case
    model = inception_v3(paths["safetensors"], transform_input=False, input_shape=(3, 75, 75))
    assert "transform_input" not in model.nodes and model.meta["preprocessing"]["normalization"]["mode"] == "tf"
    assert rel_err(model.predict(x["safetensors"]), ref_off) < TOL


def test_inception_v3_transform_input_is_an_explicit_node(inception_case):
    model = inception_v3(inception_case[0]["safetensors"], input_shape=(3, 75, 75))
    assert model.meta["transform_input"] and model.meta["preprocessing"]["normalization"]["mode"] == "imagenet-torch"
    node = model.nodes["transform_input"]
    assert np.allclose(node.layer.scale, [0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5])
    assert np.allclose(node.layer.offset, [(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5])
    assert not inception_v3(input_shape=(3, 75, 75)).meta["transform_input"]     # random: torchvision's default
    with pytest.raises(ValueError, match="transform_input"):
        inception_v3(source="keras", transform_input=True, input_shape=(3, 75, 75))


# ------------------------------------------------------------------------------------------------
# VGG16 (the heaviest: ~530 MB of weights; 224 for the .pth, 64 for .safetensors so that the
# AdaptiveAvgPool2d((7, 7)) really averages and replicates over uneven bins)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg_case(tmp_path_factory):
    tv = pytest.importorskip("torchvision")
    case = _torch_case(tmp_path_factory, "vgg16", lambda: tv.models.vgg16(weights=None),
                       {"pth": 224, "safetensors": 64}, batch=(1, 2))
    yield case
    for p in case[0].values():
        p.unlink()
    gc.collect()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_vgg16_matches_torchvision(vgg_case, fmt):
    dropped = _parity(vgg16, vgg_case, fmt)
    assert dropped == []                                            # VGG has no batch-norm counters


def test_vgg16_notop_drops_classifier_and_lists_it(vgg_case):
    model = vgg16(vgg_case[0]["safetensors"], include_top=False, input_shape=(3, 32, 32))
    assert model.predict(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 512, 1, 1)
    assert sorted(model.meta["dropped"]) == sorted(f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias"))


# ------------------------------------------------------------------------------------------------
# Keras names and layouts (no TensorFlow needed)
# ------------------------------------------------------------------------------------------------
def _keras_names(model, table):
    return [table(n.name) for n in weighted_nodes(model)]


def test_keras_name_tables_cover_every_weighted_node_once():
    r = resnet50(source="keras", input_shape=(3, 32, 32))
    for table, first, shortcut in ((resnet50_keras_name, "conv1_conv", "conv2_block1_0_conv"),
                                   (resnet50_keras2_name, "conv1", "res2a_branch1")):
        names = _keras_names(r, table)
        assert None not in names and len(set(names)) == len(names) == 107    # 106 + predictions/fc1000
        assert names[0] == first and shortcut in names
    assert resnet50_keras_name("layer4.2.bn3") == "conv5_block3_3_bn"
    assert resnet50_keras2_name("layer3.5.conv2") == "res4f_branch2b"
    v = vgg16(source="keras", include_top=False, input_shape=(3, 32, 32))
    assert _keras_names(v, vgg16_keras_name) == [f"block{b}_conv{c}" for b, n in enumerate((2, 2, 3, 3, 3), 1)
                                                 for c in range(1, n + 1)]


def test_keras_resnet50_structure():
    m = resnet50(source="keras", include_top=False, input_shape=(3, 64, 64))
    assert m["layer2.0.conv1"].stride == (2, 2) and m["layer2.0.conv2"].stride == (1, 1)   # v1: stride on the 1x1
    assert all("b" in m[n].params for n in m.nodes if n.endswith(("conv1", "conv2", "conv3", "downsample.0")))
    assert m["bn1"].eps == 1.001e-5 and "pad0" in m.nodes and "pad1" in m.nodes
    t = resnet50(include_top=False, input_shape=(3, 64, 64))
    assert t["layer2.0.conv1"].stride == (1, 1) and t["layer2.0.conv2"].stride == (2, 2)   # v1.5
    assert t["bn1"].eps == 1e-5 and "b" not in t["conv1"].params


def test_keras_inception_structure():
    k = inception_v3(source="keras", include_top=False, input_shape=(3, 75, 75))
    t = inception_v3(include_top=False, input_shape=(3, 75, 75))
    assert "gamma" not in k["Mixed_5b.branch1x1.bn"].params and "gamma" in t["Mixed_5b.branch1x1.bn"].params
    assert k["Mixed_5b.branch1x1.bn"].eps == t["Mixed_5b.branch1x1.bn"].eps == 1e-3
    assert not k["Mixed_5b.branch_pool_avg"].count_include_pad and t["Mixed_5b.branch_pool_avg"].count_include_pad
    assert len(weighted_nodes(k)) == 188


def test_keras_creation_order_sorts_auto_names():
    def L(name):
        return KerasLayerWeights(name, ["w"], [np.zeros(1)])
    shuffled = [L(n) for n in ("conv2d", "batch_normalization", "conv2d_2", "conv2d_1", "batch_normalization_2",
                               "batch_normalization_1", "conv2d_10", "batch_normalization_10", "predictions")]
    order = [l.name for l in keras_creation_order(shuffled)]
    assert order == ["conv2d", "batch_normalization", "conv2d_1", "batch_normalization_1", "conv2d_2",
                     "batch_normalization_2", "conv2d_10", "batch_normalization_10", "predictions"]
    other = [L("a"), L("conv2d")]
    assert keras_creation_order(other) == other                      # unknown names: positional, untouched


def test_keras_flatten_rows_permuted_to_nchw():
    m = vgg16(source="keras", include_top=True, classes=3, input_shape=(3, 64, 64), seed=0)
    assert "avgpool" not in m.nodes and not any(n in m.nodes for n in ("classifier.2", "classifier.5"))
    rng = np.random.default_rng(0)
    fmap = rng.standard_normal((2, 512, 2, 2)).astype(np.float32)                        # NCHW, as minicnn sees it
    w_keras = rng.standard_normal((512 * 2 * 2, 4096)).astype(np.float32)              # rows in NHWC order
    keras_out = fmap.transpose(0, 2, 3, 1).reshape(2, -1) @ w_keras                    # Keras: Flatten over NHWC
    w = permute_flatten_rows(m, {"classifier.0.W": w_keras}, VGG16_SPEC)["classifier.0.W"]
    assert rel_err(fmap.reshape(2, -1) @ w, keras_out) < 1e-6


# ------------------------------------------------------------------------------------------------
# export script
# ------------------------------------------------------------------------------------------------
def test_export_torchvision_script_writes_a_loadable_file(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    spec = importlib.util.spec_from_file_location("export_torchvision", ROOT / "pretrained" / "export_torchvision.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["export_torchvision"] = mod
    spec.loader.exec_module(mod)
    out = tmp_path / "r.safetensors"
    assert mod.main(["resnet50", str(out), "--weights", "none"]) == 0
    model = resnet50(out, input_shape=(3, 32, 32))                  # strict: every tensor named and shaped
    assert model.meta["source"] == "torchvision" and model.meta["weights"] == "r.safetensors"
