"""`minicnn convert` of a torchvision state dict: architecture recognised from the keys."""
import numpy as np
import pytest

from minicnn.cli import main
from minicnn.serialization import load
from minicnn.pretrained import densenet121
from minicnn.pretrained.convert import guess_torch_architecture


def test_convert_torchvision_safetensors_recognises_densenet(tmp_path):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    from safetensors.torch import save_file
    torch.manual_seed(0)
    net = tv.models.densenet121(weights=None, num_classes=2).eval()
    src = tmp_path / "dn.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(src))
    out = tmp_path / "dn.npz"
    assert main(["convert", str(src), str(out), "--preprocess", "imagenet-torch", "--image-size", "64",
                 "--classes", "NORMAL,PNEUMONIA"]) == 0
    model = load(out)
    assert model.meta["architecture"] == "densenet121" and model.output_activation == "softmax"
    assert model.meta["preprocessing"]["normalization"]["mode"] == "imagenet-torch"
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(model.predict(x), ref, rtol=1e-4, atol=1e-6)
    direct = densenet121(weights=str(src), classes=2, input_shape=(3, 64, 64))
    np.testing.assert_allclose(model.forward(x), direct.forward(x), rtol=1e-6)


def test_unknown_state_dict_is_named():
    with pytest.raises(ValueError, match="could not recognise the architecture"):
        guess_torch_architecture({"encoder.weight": np.zeros(1)})
