"""A Keras model file's config and weights, as the importer reads them (:mod:`minicnn.pretrained.keras_import`).

* the config: each layer's name (``entry_name``), a model's layer entries (``layer_entries``) and
  the calls that feed a layer (``layer_calls``: Keras 3 ``{"args", "kwargs"}`` and Keras 2 lists);
* the weights of one layer by its variable names: ``Keras3Weights`` over the ``layers/<key>/vars``
  tree of :func:`~minicnn.readers.keras.read_keras3_weights` (``<key>`` = snake_case class name
  numbered in config order), ``Keras2Weights`` over the groups of a legacy full-model ``.h5``;
  both check that every stored array is used;
* ``fail``: the one error the importer raises for anything it cannot reproduce.
"""
from __future__ import annotations

import json
import re
from collections import Counter

from ..errors import KerasImportError

def fail(cls, name, option, detail=""):
    raise KerasImportError(f"Keras layer {cls} '{name}': {option}" + (f" -- {detail}" if detail else ""))


def snake_case(name: str) -> str:
    """Keras' ``to_snake_case`` (the weight-file key of a layer class)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


#: The largest kernel, stride or pool window a Keras config may declare.
MAX_WINDOW = 4096


def pair(v):
    """A Keras size (an int or a pair of ints) as a pair of positive ints; anything else is refused."""
    items = list(v) if isinstance(v, (list, tuple)) else [v]
    if len(items) == 1:
        items = items * 2
    if not (len(items) == 2 and all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_WINDOW
                                    for i in items)):
        raise KerasImportError(f"a size must be a positive int or a pair of them (at most {MAX_WINDOW}), "
                               f"got {str(v)[:40]!r}")
    return items[0], items[1]


# ------------------------------------------------------------------------------------------ weights
class Keras3Weights:
    """The ``layers/`` level of a Keras 3 weights tree for one container (model)."""

    def __init__(self, tree: dict, entries: list, where: str):
        self.tree, self.where, self.keys, self.used = tree.get("layers", {}), where, {}, set()
        seen = Counter()
        for e in entries:
            base = snake_case(e["class_name"])
            n = seen[base]
            seen[base] += 1
            self.keys[entry_name(e)] = base if n == 0 else f"{base}_{n}"

    def _node(self, name):
        key = self.keys[name]
        if key not in self.tree:
            raise KerasImportError(f"{self.where}: no weights group 'layers/{key}' for layer '{name}'")
        self.used.add(key)
        return self.tree[key]

    def get(self, cls, name, var_names):
        arrays = self._node(name)["vars"]
        if len(arrays) != len(var_names):
            raise KerasImportError(f"{self.where}: layer {cls} '{name}' (weights 'layers/{self.keys[name]}') "
                                   f"holds {len(arrays)} arrays, expected {len(var_names)} ({', '.join(var_names)})")
        return dict(zip(var_names, arrays))

    def child(self, entry):
        name = entry_name(entry)
        return Keras3Weights(self._node(name), layer_entries(entry), f"{self.where}/layers/{self.keys[name]}")

    def check_all_used(self):
        left = sorted(k for k, v in self.tree.items() if k not in self.used and _has_arrays(v))
        if left:
            raise KerasImportError(f"{self.where}: weights of {left} were not used by any layer of the config")


def _has_arrays(node) -> bool:
    return bool(node["vars"]) or any(_has_arrays(c) for c in node["layers"].values()) \
        or any(_has_arrays(c) for c in node["children"].values())


class Keras2Weights:
    """Legacy full-model HDF5: one group per top-level layer; a nested model's group holds all its layers' weights."""

    def __init__(self, groups: dict, where: str, nested_group: str | None = None, used=None):
        self.groups, self.where, self.nested = groups, where, nested_group
        self.owner = used is None          # the top-level nested model owns its group's bookkeeping
        self.used = set() if used is None else used

    def get(self, cls, name, var_names):
        if self.nested is None:
            g = self.groups.pop(name, None)
            if g is None:
                raise KerasImportError(f"{self.where}: no weights for layer {cls} '{name}'")
            wnames, arrays = g.weight_names, g.arrays
        else:
            g = self.groups.get(self.nested)
            pairs = [(wn, a) for wn, a in zip(g.weight_names, g.arrays) if _owner(wn) == name] if g else []
            wnames, arrays = [p[0] for p in pairs], [p[1] for p in pairs]
            self.used.update(wnames)
        short = [_var(wn) for wn in wnames]
        if sorted(short) == sorted(var_names):
            return {s: a for s, a in zip(short, arrays)}
        if self.nested is None and len(arrays) == len(var_names):   # unusual names: Keras' own rule, by position
            return dict(zip(var_names, arrays))
        raise KerasImportError(f"{self.where}: layer {cls} '{name}' has weights {wnames}, expected "
                               f"{', '.join(var_names)}")

    def child(self, entry):
        name = entry_name(entry)
        if self.nested is None:
            return Keras2Weights(self.groups, self.where, name)
        return Keras2Weights(self.groups, self.where, self.nested, used=self.used)

    def check_all_used(self):
        if self.nested is None:
            left = sorted(self.groups)
        elif not self.owner:
            return
        else:
            g = self.groups.pop(self.nested, None)
            left = [wn for wn in (g.weight_names if g else []) if wn not in self.used]
        if left:
            raise KerasImportError(f"{self.where}: weights {left} were not used by any layer of the config")


def _var(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[-1].split(":")[0]


def _owner(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[0] if "/" in weight_name else ""


# ------------------------------------------------------------------------------------------ config
def entry_name(entry) -> str:
    return entry.get("name") or entry["config"]["name"]


def layer_entries(model_entry) -> list:
    cfg = model_entry["config"]
    return cfg["layers"] if isinstance(cfg, dict) else cfg      # very old Sequential: a bare list


def tensor_refs(v):
    """``[name, node, tensor]`` or a list of them -> list of tuples."""
    if v and isinstance(v[0], str):
        return [tuple(v[:3])]
    return [tuple(r[:3]) for r in v]


def layer_calls(entry):
    """The calls of a layer as ``[(inbound_refs, kwargs, is_list_arg)]`` (Keras 3 and Keras 2 forms)."""
    out = []
    cls, name = entry["class_name"], entry_name(entry)
    for node in entry.get("inbound_nodes") or []:
        if isinstance(node, dict):                     # Keras 3: {"args": [...], "kwargs": {...}}
            args, kwargs = node.get("args", []), dict(node.get("kwargs") or {})
            refs, as_list = [], False
            for a in args:
                if isinstance(a, list) and all(_is_tensor(t) for t in a):
                    refs += [tuple(t["config"]["keras_history"]) for t in a]
                    as_list = True
                elif _is_tensor(a):
                    refs.append(tuple(a["config"]["keras_history"]))
                else:
                    fail(cls, name, f"call argument {json.dumps(a)[:80]}", "only tensors can be passed")
            for k, v in kwargs.items():
                if _is_tensor(v) or (isinstance(v, list) and any(_is_tensor(t) for t in v)):
                    fail(cls, name, f"call keyword {k}=<tensor>", "not supported")
            out.append((refs, kwargs, as_list))
        else:                                           # Keras 2: [[name, node, tensor, {kwargs}], ...]
            refs, kwargs = [], {}
            for t in node:
                refs.append((t[0], t[1], t[2]))
                if len(t) > 3 and t[3]:
                    kwargs.update(t[3])
            out.append((refs, kwargs, len(refs) > 1))
    return out


def _is_tensor(a) -> bool:
    return isinstance(a, dict) and a.get("class_name") == "__keras_tensor__"
