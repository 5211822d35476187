"""An ONNX-imported torchvision DenseNet121 against minicnn's native DenseNet121, same weights.

    python benchmarks/onnx_import.py [--quick | --tiny] [--json PATH]

torchvision's densenet121 (random weights) is saved as a state dict (read by the native builder)
and exported with torch.onnx.export (TorchScript exporter; the dynamo exporter gives the same
graph of Conv / BatchNormalization / Relu / Concat nodes). Both minicnn graphs are validated
against each other, then timed (median of ``--repeats`` predicts at 224x224). The issue asks the
imported graph to stay within 10% of the native model's time.
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _harness import check_close, median_time, parse_args  # noqa: E402


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    import torch
    import torchvision
    import minicnn
    from minicnn.pretrained import densenet121
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None).eval()
    size, batch = (32, 2) if args.tiny else (224, 3)          # --tiny: the script runs (the times mean nothing)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        pth, onx = os.path.join(d, "d121.pth"), os.path.join(d, "d121.onnx")
        torch.save(net.state_dict(), pth)
        torch.onnx.export(net, (torch.zeros(1, 3, size, size),), onx, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}})
        native, imported = densenet121(weights=pth, input_shape=(3, size, size)), minicnn.load_onnx(onx)
    err = check_close("imported vs native", imported.predict(x), native.predict(x), 1e-4)
    t_native = median_time(lambda: native.predict(x), args.repeats)
    t_imported = median_time(lambda: imported.predict(x), args.repeats)
    result = {"batch": len(x), "native_s": t_native, "imported_s": t_imported, "ratio": t_imported / t_native,
              "rel_err": err}
    print(f"DenseNet121 {size}x{size} batch {len(x)}: native {t_native:.3f} s, ONNX-imported {t_imported:.3f} s, "
          f"ratio {t_imported / t_native:.2f} (outputs agree to {err:.1e})")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
