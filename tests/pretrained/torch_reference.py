"""Shared by the torchvision parity tests: make a reference network's every statistic non-trivial."""


def randomize(torch, net, seed):
    """Random BN gamma/beta/running stats (never the identity init) and random biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)              # gamma in [0.5, 1.5]
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)          # beta in [-0.2, 0.2]
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.num_batches_tracked.fill_(3)
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
