"""torchxrayvision's chest X-ray classifiers as minicnn graphs: DenseNet121 (224 px) and ResNet50 (512 px).

References (read, not copied): mlmed/torchxrayvision ``torchxrayvision/models.py`` (``DenseNet``,
``ResNet``, ``op_norm``, ``model_urls``) and ``utils.py`` (``normalize``, ``read_xray_dcm``);
Cohen et al., "TorchXRayVision: A library of chest X-ray datasets and models" (MIDL 2022).

The models, as torchxrayvision runs them (``model(x)`` with ``x`` one channel on [-1024, 1024])::

    DenseNet121   features (torchvision DenseNet121, conv0 with 1 input channel) -> relu
                  -> adaptive average pool -> classifier Linear(1024, 18)
    ResNet50      torchvision resnet50 with conv1 of 1 input channel, fc Linear(2048, 18)
    then          sigmoid -> op_norm (each output rescaled so its operating point maps to 0.5;
                  NaN thresholds give 0.5)

Here the architecture is the builder of :mod:`minicnn.pretrained.densenet` /
:mod:`minicnn.pretrained.resnet` at input (1, 224, 224) / (1, 512, 512), and the calibration is a
graph node (``sigmoid``, then ``calibration`` = :class:`minicnn.layers.OperatingPoints`), so
Grad-CAM and exported graphs see it. ``output=`` picks what ``predict`` returns:

    'calibrated'     torchxrayvision's default output (the operating points map to 0.5)
    'probabilities'  the sigmoid outputs (torchxrayvision with ``op_threshs = None, apply_sigmoid=True``)
    'logits'         the classifier's outputs

``op_threshs`` and the output names come from the registry entry the file matches (by file name,
or by the SHA-256 recorded when it was downloaded), as torchxrayvision sets them after loading; a
file that matches none loads uncalibrated with a warning (its own ``op_threshs`` buffer, if it
saved one, is used instead). The published DenseNet files are whole pickled modules
(``torch.save(model)``), read by the allow-list unpickler without running anything; the ResNet50
file is a plain state_dict.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np

from ..data.preprocessing import Preprocessing
from ..errors import UsageError, WeightFileError
from ..layers.activation import Sigmoid
from ..layers.elementwise import OperatingPoints
from ..model import Graph
from ..readers.detect import detect_format
from ..readers.npz import read_npz
from ..readers.torch import TorchFile, read_torch_file
from .densenet import DENSENET121_BLOCKS, densenet_graph
from .download import cache_dir, file_digest, recorded_digest
from .mapping import _npz_state_dict, convert_torch_state_dict, resolve_weights
from .resnet import RESNET50_BLOCKS, resnet_graph
from .spec import WeightSpec, WeightsEntry

OUTPUTS = ("calibrated", "probabilities", "logits")
#: torchxrayvision's 18 outputs, in order (``datasets.default_pathologies``).
PATHOLOGIES = ("Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
               "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia",
               "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum")
#: A threshold no output reaches: an output the model was not trained on is never a finding.
UNTRAINED_THRESHOLD = 1.0

_RELEASE = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
_LICENCE = ("Apache-2.0 (mlmed/torchxrayvision code and released weights); trained on public chest X-ray "
            "datasets (NIH ChestX-ray14, PadChest, CheXpert, MIMIC-CXR, RSNA, ...) whose own data-use terms apply")
_NAN = float("nan")
_ALL = PATHOLOGIES
_NIH = PATHOLOGIES[:14] + ("", "", "", "")
_PC = PATHOLOGIES[:14] + ("", "Fracture", "", "")
_CHEX = ("Atelectasis", "Consolidation", "", "Pneumothorax", "Edema", "", "", "Effusion", "Pneumonia", "",
         "Cardiomegaly", "", "", "", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum")
_RSNA = tuple("Pneumonia" if i == 8 else "Lung Opacity" if i == 16 else "" for i in range(18))
_N = _NAN
# (registry name, torchxrayvision name, file, outputs, op_threshs): copied from model_urls in models.py
_DENSENETS = [
    ("all", "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt", _ALL,
     (0.07422872, 0.038290843, 0.09814756, 0.0098118475, 0.023601074, 0.0022490358, 0.010060724, 0.103246614,
      0.056810737, 0.026791653, 0.050318155, 0.023985857, 0.01939503, 0.042889766, 0.053369623, 0.035975814,
      0.20204692, 0.05015312)),
    ("nih", "nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt", _NIH,
     (0.039117552, 0.0034529066, 0.11396341, 0.0057298196, 0.00045666535, 0.0018880932, 0.012037827, 0.038744126,
      0.0037213727, 0.014730946, 0.016149804, 0.054241467, 0.037198864, 0.0004403434, _N, _N, _N, _N)),
    ("pc", "pc-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt", _PC,
     (0.031012505, 0.013347598, 0.081435576, 0.001262615, 0.002587246, 0.0035944257, 0.0023071, 0.055412333,
      0.044385884, 0.042766232, 0.043258056, 0.037629247, 0.005658899, 0.0091741895, _N, 0.026507627, _N, _N)),
    ("chex", "chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt", _CHEX,
     (0.1988969, 0.05710573, _N, 0.0531293, 0.1435217, _N, _N, 0.27212676, 0.07749717, _N, 0.19712369, _N, _N, _N,
      0.09932402, 0.09273402, 0.3270967, 0.10888247)),
    ("rsna", "kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt", _RSNA,
     (_N,) * 8 + (0.13486601,) + (_N,) * 7 + (0.13511065, _N)),
    ("mimic_nb", "mimic_nb-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt", _CHEX,
     (0.08558747, 0.011884617, _N, 0.0040595434, 0.010733786, _N, _N, 0.118761964, 0.022924708, _N, 0.06358637,
      _N, _N, _N, 0.022143636, 0.017476924, 0.1258702, 0.014020768)),
    ("mimic_ch", "mimic_ch-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt", _CHEX,
     (0.09121389, 0.010573786, _N, 0.005023008, 0.003698257, _N, _N, 0.08001232, 0.037242252, _N, 0.05006329, _N,
      _N, _N, 0.019866971, 0.03823637, 0.11303808, 0.0069147074)),
]
_RESNET_THRESHS = (0.51570356, 0.50444704, 0.53787947, 0.50723547, 0.5025118, 0.5035252, 0.5038076, 0.51862943,
                   0.5078151, 0.50724894, 0.5056339, 0.510706, 0.5053923, 0.5020846, _N, 0.5080557, 0.5138526, _N)


def _classes_text(outputs) -> str:
    return (f"{sum(1 for o in outputs if o)} of torchxrayvision's 18 pathologies, in its order "
            "(outputs the model was not trained on are named '')")


def _entry(name, arch, filename, outputs, op_threshs, size) -> WeightsEntry:
    return WeightsEntry(name, arch, "torchvision", _RELEASE + filename, ("sha256", None), True, "xrv", _LICENCE,
                        classes=_classes_text(outputs), outputs=tuple(outputs), op_threshs=tuple(op_threshs),
                        image_size=size)


XRV_DENSENET121_SPEC = WeightSpec(
    architecture="xrv-densenet121", head_nodes=("classifier",),
    torch_signature="features.denseblock4.denselayer16.conv2.weight", torch_head_weight="classifier.weight",
    weights=tuple(_entry(f"xrv-densenet121-{key}", "xrv-densenet121", f, outs, th, 224)
                  for key, f, outs, th in _DENSENETS))
XRV_RESNET50_SPEC = WeightSpec(
    architecture="xrv-resnet50", head_nodes=("fc",),
    torch_signature="layer4.2.conv3.weight", torch_head_weight="fc.weight",
    weights=(_entry("xrv-resnet50-res512-all", "xrv-resnet50", "pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt",
                    _ALL, _RESNET_THRESHS, 512),))
XRV_SPECS = (XRV_DENSENET121_SPEC, XRV_RESNET50_SPEC)


def match_entry(path, spec: WeightSpec) -> WeightsEntry | None:
    """The registry entry a weight file is: by file name, else by the SHA-256 recorded for a cached copy."""
    name = os.path.basename(os.fspath(path))
    for e in spec.weights:
        if e.filename == name:
            return e
    recorded = {recorded_digest(os.path.join(cache_dir(), e.filename)): e for e in spec.weights}
    recorded.pop(None, None)
    if recorded:
        return recorded.get(file_digest(path, "sha256"))
    return None


def _state_dict_of(tf: TorchFile, path: str, prefix: str | None) -> tuple[dict, np.ndarray | None]:
    """The network's tensors (torchxrayvision's ResNet wrapper keeps torchvision's under ``model.``) and
    the file's own ``op_threshs`` buffer, if it saved one."""
    sd = dict(tf.state_dict)
    own = sd.pop("op_threshs", None)
    if prefix and sd and all(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items()}
    if own is not None and np.asarray(own).shape != (18,):
        raise WeightFileError(f"{path}: op_threshs has shape {np.asarray(own).shape}, expected (18,)",
                              path=path, field="op_threshs")
    return sd, own


def _finish(model: Graph, output: str, outputs, thresholds, size: int, source: dict) -> Graph:
    """Name the outputs, add the calibration nodes for ``output='calibrated'``, set meta."""
    if output not in OUTPUTS:
        raise UsageError(f"output must be one of {OUTPUTS}, got {output!r}")
    head = model.output_name
    thr = None if thresholds is None else np.asarray(thresholds, dtype=np.float64).reshape(-1)
    trained = np.array([bool(o) for o in outputs])
    if output == "calibrated" and thr is None:
        output = "probabilities"             # the caller was warned: no thresholds to calibrate with
    meta = {"classes": list(outputs), "outputs": list(outputs), "output": output,
            "op_threshs": None if thr is None else [None if math.isnan(t) else float(t) for t in thr],
            "preprocessing": Preprocessing.for_xrv(size).to_dict(), "include_top": True, "pathology_outputs": True,
            **source}
    if output == "calibrated":
        model.add("sigmoid", Sigmoid(), inputs=head)
        model.add("calibration", OperatingPoints(thr))
        model.output_activation = None
        meta["threshold"] = [0.5 if ok else UNTRAINED_THRESHOLD for ok in trained]
        meta["threshold_rule"] = "torchxrayvision's calibration: 0.5 is each output's operating point"
    elif output == "probabilities":
        model.output_activation = "sigmoid"
        if thr is not None:
            meta["threshold"] = [float(t) if ok and not math.isnan(t) else UNTRAINED_THRESHOLD
                                 for t, ok in zip(thr, trained)]
            meta["threshold_rule"] = "torchxrayvision's operating points (op_threshs)"
    else:
        model.output_activation = None
    model.meta.update(meta)
    return model


def _backbone(model: Graph, size: int, source: dict) -> Graph:
    """``include_top=False``: the feature extractor (no head, no calibration) with torchxrayvision's preprocessing."""
    model.meta.update({"preprocessing": Preprocessing.for_xrv(size).to_dict(), "include_top": False, "classes": None,
                       **source})
    return model


def _load_npz(model: Graph, path: str, spec: WeightSpec) -> tuple[tuple, np.ndarray | None, dict]:
    """A minicnn ``.npz`` of this architecture (e.g. a converted or random-weight xrv model saved by
    minicnn): its arrays (a head the model does not have is dropped and listed), outputs and ``op_threshs``."""
    own = model.state_dict()
    sd = _npz_state_dict(path)
    keep = {k: v for k, v in sd.items() if k in own}
    dropped = sorted(k for k in sd if k not in own and k.split(".")[0] in spec.head_nodes + ("calibration",))
    extra = sorted(set(sd) - set(keep) - set(dropped))
    if extra:
        raise WeightFileError(f"{path} holds arrays no {spec.architecture} has ({', '.join(extra[:5])}); is it a "
                              f"model of another architecture?", path=path)
    model.load_state_dict(keep, strict=True)
    _, config = read_npz(path)
    meta = (config or {}).get("meta") or {}
    source = {"source": "torchvision", "weights": os.path.basename(path), "dropped": dropped, "registry": None}
    outputs = tuple(meta.get("outputs") or PATHOLOGIES)
    thr = meta.get("op_threshs")
    return outputs, None if thr is None else np.array([np.nan if t is None else t for t in thr], np.float64), source


def _load(model: Graph, weights, spec: WeightSpec, prefix: str | None) -> tuple[tuple, np.ndarray | None, dict]:
    path = resolve_weights(weights, spec)
    if detect_format(path) == "npz":
        return _load_npz(model, path, spec)
    tf = read_torch_file(path)
    sd, own = _state_dict_of(tf, path, prefix)
    converted, dropped = convert_torch_state_dict(model, sd, source=path, spec=spec)
    model.load_state_dict(converted, strict=True)
    entry = match_entry(path, spec)
    source = {"source": "torchvision", "weights": os.path.basename(path), "dropped": dropped,
              "registry": None if entry is None else entry.name}
    if not any(n in model.nodes for n in spec.head_nodes):
        return (), None, source                 # a backbone: outputs and calibration do not apply
    if entry is not None:
        return entry.outputs, np.asarray(entry.op_threshs, np.float64), source
    attrs = tf.module.attributes if tf.module is not None else {}
    names = next((tuple(v) for k in ("pathologies", "targets") if isinstance(v := attrs.get(k), (list, tuple))
                  and len(v) == 18 and all(isinstance(t, str) for t in v)), PATHOLOGIES)
    known = ", ".join(e.filename for e in spec.weights)
    if own is not None:
        warnings.warn(f"{path} matches no known torchxrayvision file ({known}): calibrated with the op_threshs "
                      "saved in the file", stacklevel=3)
        return names, np.asarray(own, np.float64), source
    warnings.warn(f"{path} matches no known torchxrayvision file by name or recorded digest ({known}): loaded "
                  "uncalibrated (sigmoid probabilities); rename it to its published name to get torchxrayvision's "
                  "calibration", stacklevel=3)
    return names, None, source


def xrv_densenet121(weights=None, output: str = "calibrated", seed=None, include_top: bool = True,
                    pooling=None) -> Graph:
    """torchxrayvision's DenseNet121 (1 x 224 x 224 input on [-1024, 1024], 18 outputs).

    weights      None (random; no thresholds, so 'calibrated' gives probabilities), a torchxrayvision
                 file (``torch.save(model)``, zip or legacy), a minicnn ``.npz`` of this architecture
                 (its head dropped for ``include_top=False``) or a registry name (``xrv-densenet121-all``,
                 ``-nih``, ``-pc``, ``-chex``, ``-rsna``, ``-mimic_nb``, ``-mimic_ch``), fetched into the cache.
    output       'calibrated' (torchxrayvision's default), 'probabilities' or 'logits'.
    include_top  False: the 1-channel feature extractor (``pooling`` None -> (N, 1024, 7, 7), 'avg' ->
                 (N, 1024)), e.g. a backbone for a new pneumonia head.
    """
    model = densenet_graph(DENSENET121_BLOCKS, classes=18, input_shape=(1, 224, 224), seed=seed,
                           name="xrv-densenet121", include_top=include_top, pooling=pooling)
    source = {"source": "torchvision", "registry": None}
    if weights is not None:
        outputs, thr, source = _load(model, weights, XRV_DENSENET121_SPEC, prefix=None)
    if not include_top:
        return _backbone(model, 224, source)
    if weights is None:
        return _finish(model, output, PATHOLOGIES, None, 224, source)
    return _finish(model, output, outputs, thr, 224, source)


def xrv_resnet50(weights=None, output: str = "calibrated", seed=None, include_top: bool = True,
                 pooling=None) -> Graph:
    """torchxrayvision's ResNet50 (1 x 512 x 512 input on [-1024, 1024], 18 outputs; ``resnet50-res512-all``).

    ``weights``: None, the state_dict file (``...-resnet50-test512-e400-state.pt``; a state_dict of the
    whole ``xrv.models.ResNet`` keeps the same tensors under ``model.``) or ``xrv-resnet50-res512-all``.
    ``output``, ``include_top``, ``pooling``: as for :func:`xrv_densenet121`.
    """
    model = resnet_graph(RESNET50_BLOCKS, classes=18, input_shape=(1, 512, 512), seed=seed, name="xrv-resnet50",
                         include_top=include_top, pooling=pooling)
    source = {"source": "torchvision", "registry": None}
    if weights is not None:
        outputs, thr, source = _load(model, weights, XRV_RESNET50_SPEC, prefix="model.")
    if not include_top:
        return _backbone(model, 512, source)
    if weights is None:
        return _finish(model, output, PATHOLOGIES, None, 512, source)
    return _finish(model, output, outputs, thr, 512, source)
