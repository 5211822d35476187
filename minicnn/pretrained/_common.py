"""What every architecture and the weight converter share: builder argument checks and how a
minicnn layer's arrays are named and shaped in torch and Keras files."""
from __future__ import annotations

from ..errors import UsageError, WeightFileError
from ..layers.dense import Dense
from ..layers.norm import BatchNorm2D
from .layout import oihw_shape_to_hwio

SOURCES = ("torchvision", "keras")
#: Torch state_dict suffix -> minicnn param/buffer name, per layer kind.
TORCH_NAMES = {
    "conv": {"weight": "W", "bias": "b"},
    "dense": {"weight": "W", "bias": "b"},
    "bn": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean", "running_var": "running_var"},
}
#: Keras variable role -> minicnn param/buffer name, in the order Keras stores them.
KERAS_ROLES = {
    "conv": (("kernel", "W"), ("bias", "b")),
    "dense": (("kernel", "W"), ("bias", "b")),
    "bn": (("gamma", "gamma"), ("beta", "beta"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")),
}


def check_builder_args(source, pooling, include_top, input_shape, min_size: int) -> tuple:
    """Validate the builder arguments every architecture shares; returns ``input_shape`` as ints."""
    if source not in SOURCES:
        raise UsageError(f"source must be one of {SOURCES}, got {source!r}")
    if pooling not in (None, "avg", "max"):
        raise UsageError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and pooling == "max":
        raise UsageError("include_top=True ends in global *average* pooling (or Flatten) and the classifier; "
                         "pooling='max' is only for include_top=False")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape[1:]) < min_size:
        raise UsageError(f"input_shape must be (C, H, W) with H, W >= {min_size}, got {input_shape}")
    return input_shape


def layer_kind(layer) -> str | None:
    """'bn', 'dense', 'conv' (a 4-d ``W``) or None: which weight naming a layer follows."""
    if isinstance(layer, BatchNorm2D):
        return "bn"
    if isinstance(layer, Dense):
        return "dense"
    if "W" in layer.params and layer.params["W"].ndim == 4:
        return "conv"
    return None


def weighted_nodes(model) -> list:
    """The model's nodes that hold params or buffers, in node (topological) order."""
    return [n for n in model.nodes.values() if n.layer.params or n.layer.buffers]


def keras_roles(layer) -> list[tuple[str, str, tuple]]:
    """The arrays a Keras layer stores for this minicnn layer: ``[(keras role, minicnn key, minicnn shape)]``."""
    kind = layer_kind(layer)
    if kind is None:
        raise WeightFileError(f"no Keras mapping for {type(layer).__name__}")
    own = {**layer.params, **layer.buffers}
    return [(role, key, own[key].shape) for role, key in KERAS_ROLES[kind] if key in own]


def keras_file_shape(role: str, kind: str, shape: tuple) -> tuple:
    """The shape the Keras file stores for a minicnn array of ``shape``."""
    return oihw_shape_to_hwio(shape) if role == "kernel" and kind == "conv" else shape


def normalize_keras_name(name: str) -> str:
    """``conv1/conv`` (Keras 2) and ``conv1_conv`` (Keras 3) compare equal."""
    return name.replace("/", "_")


def mismatch_error(what: str, missing, unexpected, misshaped, hint: str = "", path=None) -> WeightFileError:
    """One error listing every missing, unexpected and mis-shaped tensor (25 of each at most)."""
    lines = [f"{what} do not match the model:"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = list(items[:25]) + ([f"... and {len(items) - 25} more"] if len(items) > 25 else [])
            lines.append(f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown))
    if hint:
        lines.append(hint)
    return WeightFileError("\n".join(lines), path=path)
