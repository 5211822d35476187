"""The declarative descriptions every architecture file fills in: its weight files and how they map.

``WeightSpec`` says how the weight files of one architecture map onto its minicnn graph (whose
nodes carry torchvision's module names); the generic converter (:mod:`minicnn.pretrained.mapping`)
reads it and knows no architecture itself. ``WeightsEntry`` is one downloadable weight file.
Both are plain data: this module imports nothing from minicnn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

NameTable = Callable[[str], Optional[str]]          # node name -> Keras layer name (None: not named)


@dataclass(frozen=True)
class WeightsEntry:
    """One known weight file.

    digest: ``('md5', full hex)`` or ``('sha256', hex prefix)``, or ``('sha256', None)`` when the
    project publishes none (torchxrayvision): the SHA-256 is then recorded on first download and
    checked on every later use; preprocessing: a mode of ``minicnn.pretrained.preprocess``
    ('imagenet-torch', 'imagenet-caffe', 'tf', 'xrv').

    Multi-label chest X-ray models also carry ``outputs`` (the output names, in order, ``''`` for an
    output the model was not trained on), ``op_threshs`` (each output's operating point, NaN where
    none), ``image_size`` (the side the model was trained at) and ``protocol`` (how the reported
    results were obtained, e.g. CheXNet's ten crops).
    """
    name: str
    architecture: str
    source: str                 # 'keras' or 'torchvision': the semantics the builder must use
    url: str
    digest: tuple
    include_top: bool
    preprocessing: str
    licence: str
    classes: str = "ImageNet-1k (1000 classes; names: keras imagenet_class_index.json / torchvision _IMAGENET_CATEGORIES)"
    outputs: tuple = ()
    op_threshs: tuple = ()
    image_size: int | None = None
    protocol: str = ""

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class WeightSpec:
    """How the weight files of one architecture map onto its graph (torchvision node names).

    architecture         ``model.meta['architecture']`` of the graphs it describes (None: any graph)
    keras_names          name tables ``node -> Keras layer name``, one per naming scheme, Keras 3 /
                         tf-keras first (``conv2_block1_1_conv``), then Keras 2 keras-applications
                         (``res2a_branch2a``) if it differs
    keras_by_name        put a Keras file's layers in node order when one table names them all
                         (otherwise the file's order decides, as in Keras; names only explain mismatches)
    keras_order          ``layers -> layers``: a Keras file's layers into node order by another rule
                         (InceptionV3: the creation counter in its auto-generated names)
    keras3_names         ``model -> name table`` for Keras 3 ``.weights.h5`` files when it is not
                         ``keras_names[0]`` (InceptionV3: the auto-generated names)
    keras3_call_inputs   ``node -> its inputs in the order the Keras code passes them``, when that
                         differs from the node's (ResNet50: ``Add()([shortcut, x])``)
    keras3_layer_order   whether the Keras 3 layer order of the graph is known (a generic graph: no)
    flatten_dense        ``(flatten node, Dense node)``: the Dense reads a Keras NHWC flatten, so its
                         rows are permuted to NCHW order at load (VGG16)
    torch_drop_prefixes  torch state_dict key prefixes with no node (InceptionV3's ``AuxLogits.``):
                         dropped and listed in ``model.meta['dropped']``, never silently
    dropped_suffixes     torch keys that are counters, not weights (``num_batches_tracked``)
    head_nodes           the classification head's torch names; dropped (and listed) without a head
    keras_head_layers    the Keras names of the head layer, dropped (and listed) likewise
    torch_signature      a state_dict key only this architecture has (``minicnn convert`` recognises it)
    torch_head_weight    the state_dict key of the classifier's weight (its rows count the classes)
    weights              the known downloadable files (:class:`WeightsEntry`)
    """
    architecture: str | None = None
    keras_names: tuple = ()
    keras_by_name: bool = False
    keras_order: Callable | None = None
    keras3_names: Callable | None = None
    keras3_call_inputs: Callable | None = None
    keras3_layer_order: bool = True
    flatten_dense: tuple | None = None
    torch_drop_prefixes: tuple = ()
    dropped_suffixes: tuple = ("num_batches_tracked",)
    head_nodes: tuple = ("classifier", "fc")
    keras_head_layers: tuple = ("fc1000", "predictions", "fc")
    torch_signature: str | None = None
    torch_head_weight: str | None = None
    weights: tuple = ()

    def keras_name(self, node: str) -> str | None:
        """The node's Keras layer name in the first naming scheme (None when unknown)."""
        return self.keras_names[0](node) if self.keras_names else None
