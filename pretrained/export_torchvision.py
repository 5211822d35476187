"""Export a torchvision model's state_dict to ``.safetensors`` or ``.pth`` for minicnn.

    python pretrained/export_torchvision.py densenet121 out.safetensors            # ImageNet weights
    python pretrained/export_torchvision.py resnet50 out.pth --weights none       # random weights

Run it where torch and torchvision are installed (minicnn itself never imports torch). The output
format follows the file name: ``.safetensors`` (safetensors) or ``.pth`` / ``.pt`` (``torch.save``,
zip format). ``--weights imagenet`` downloads torchvision's default ImageNet weights
(``download.pytorch.org``, cached by torch hub); ``none`` exports a randomly initialised model.
The file is written to a temporary name beside ``OUT`` and renamed when complete.

Load it with ``minicnn.pretrained.<arch>(weights='out.safetensors')``. For InceptionV3 the file
holds torchvision's auxiliary classifier (``AuxLogits.*``); minicnn drops and lists it. Pair the
weights with 'torch' preprocessing (ImageNet mean/std); see pretrained/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys

ARCHITECTURES = ("densenet121", "vgg16", "resnet50", "inception_v3")


def build(arch: str, weights: str):
    import torchvision

    fn = getattr(torchvision.models, arch)
    if weights == "imagenet":
        return fn(weights="DEFAULT")
    if arch == "inception_v3":          # what the ImageNet file holds: the aux head too
        return fn(weights=None, aux_logits=True, init_weights=True)
    return fn(weights=None)


def export(arch: str, out: str, weights: str = "imagenet") -> int:
    """Write ``arch``'s state_dict to ``out``; returns the number of tensors written."""
    import torch

    ext = os.path.splitext(out)[1].lower()
    if ext not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"{out}: the file name must end in .safetensors, .pth or .pt")
    model = build(arch, weights).eval()
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = out + ".part"
    if ext == ".safetensors":
        from safetensors.torch import save_file
        save_file(sd, tmp, metadata={"architecture": arch, "source": "torchvision", "weights": weights})
    else:
        torch.save(sd, tmp)
    os.replace(tmp, out)
    return len(sd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Export a torchvision model's weights for minicnn.")
    ap.add_argument("arch", choices=ARCHITECTURES)
    ap.add_argument("out", help="output file: .safetensors, .pth or .pt")
    ap.add_argument("--weights", choices=("imagenet", "none"), default="imagenet")
    args = ap.parse_args(argv)
    try:
        n = export(args.arch, args.out, args.weights)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} tensors of torchvision {args.arch} ({args.weights} weights) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
