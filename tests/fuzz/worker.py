"""The fuzz worker: a long-lived process that loads one file per request through minicnn's
public loader for its format and reports ``ok`` or the exception's type.

Protocol: one JSON line in (``{"fmt": ..., "path": ...}``), one JSON line out
(``{"outcome": "ok" | type name, "minicnn": bool, "message": first line}``). Runs under
``RLIMIT_AS`` (``MINICNN_FUZZ_MEMORY``, 2 GiB) so a file that makes a reader allocate without
bound ends as a ``MemoryError`` report (or a crash), never as a machine out of memory.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import warnings


def _limit_memory():
    limit = int(os.environ.get("MINICNN_FUZZ_MEMORY", 2 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _loaders():
    import minicnn
    from minicnn.data.dicom import read_dicom
    from minicnn.data.images import load_image
    from minicnn.pretrained.keras_import import load_keras
    from minicnn.readers.torch import read_torch_state_dict
    from minicnn.train import load_checkpoint

    def npz(p):
        m = minicnn.load(p)
        m.load_weights(p)

    def xrv_record(p):
        """The reader level of ``minicnn.load`` on a torchxrayvision pickle: detect -> read_torch_file ->
        the module record's state_dict, attributes and ``op_threshs`` as the xrv builder takes them."""
        from minicnn.pretrained.xrv import _state_dict_of
        from minicnn.readers.torch import read_torch_file
        tf = read_torch_file(p)
        _state_dict_of(tf, p, None)
        if tf.module is not None:
            tf.module.attributes

    def onnx_model(p):
        """``load_onnx``, then a prediction: an imported graph must run or have been refused."""
        import numpy as np
        g = minicnn.load_onnx(p)
        shape = [1 if not isinstance(d, int) or d <= 0 else min(d, 64) for d in g.input_shape]
        g.predict(np.ones([1] + shape, np.float32))

    def selftest(mode):                 # proves the harness sees each failure kind
        import time

        import numpy as np
        if mode == "memory":
            return np.ones(3 << 30, np.uint8)
        if mode == "hang":
            time.sleep(3600)
        if mode == "crash":
            os._exit(3)
        raise TypeError("a non-minicnn error")

    return {"_selftest": selftest, "npz": npz, "checkpoint": load_checkpoint, "safetensors": read_torch_state_dict,
            "pth_zip": read_torch_state_dict, "pth_legacy": read_torch_state_dict,
            "h5": load_keras, "keras": load_keras,
            "png": lambda p: load_image(p, size=(4, 4)), "jpeg": lambda p: load_image(p, size=(4, 4)),
            "dicom": read_dicom, "dicom_rle": read_dicom, "dicom_deflate": read_dicom, "dicom_jpeg": read_dicom,
            "xrv_zip": xrv_record, "xrv_legacy": xrv_record, "xrv_oldtorch": xrv_record, "xrv_full": minicnn.load,
            "onnx": onnx_model, "onnx_ext": onnx_model}


def main() -> None:
    _limit_memory()
    warnings.simplefilter("ignore")
    from minicnn.errors import MinicnnError
    loaders = _loaders()
    out = sys.stdout
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            loaders[req["fmt"]](req["path"])
            rep = {"outcome": "ok", "minicnn": False, "message": ""}
        except BaseException as e:          # noqa: BLE001 -- the report is the point
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            rep = {"outcome": type(e).__name__, "minicnn": isinstance(e, MinicnnError),
                   "message": (str(e).splitlines() or [""])[0][:300]}
        print(json.dumps(rep), file=out, flush=True)


if __name__ == "__main__":
    main()
