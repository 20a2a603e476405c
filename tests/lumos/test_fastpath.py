"""The TorchScript CPU inference graph gives the eager network's outputs and never stale weights."""

import torch

from lumos_ops.lumos.fastpath import inference_callable
from lumos_ops.lumos.model import get_model


def _batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 2, 60, 60, generator=g), torch.randn(n, 4, generator=g),
            torch.randint(0, 80, (n,), generator=g))


def _trained_like(seed=0):
    torch.manual_seed(seed)
    net = get_model("fast")
    net.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(3):
            net(*_batch(64, seed + 1))
    return net.eval()


def test_graph_matches_eager_for_any_batch_size():
    net = _trained_like()
    x, s, b = _batch(300)
    with torch.inference_mode():
        run = inference_callable(net, x, s, b)
        assert run is not net
        for n in (300, 7, 2, 1):
            eager, fast = net(x[:n], s[:n], b[:n]), run(x[:n], s[:n], b[:n])
            for a, c in zip(eager, fast):
                torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-5)


def test_graph_is_rebuilt_after_the_weights_change():
    net = _trained_like()
    x, s, b = _batch(16)
    with torch.inference_mode():
        first = inference_callable(net, x, s, b)
        assert inference_callable(net, x, s, b) is first  # cached
    with torch.no_grad():
        net.head.weight.add_(0.5)  # in place, as an optimizer step
    with torch.inference_mode():
        second = inference_callable(net, x, s, b)
        assert second is not first
        torch.testing.assert_close(second(x, s, b).mu, net(x, s, b).mu, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(first(x, s, b).mu, second(x, s, b).mu)


def test_optimize_false_and_single_rows_use_the_eager_network():
    net = _trained_like()
    x, s, b = _batch(4)
    assert inference_callable(net, x, s, b, optimize=False) is net
    assert inference_callable(net, x[:1], s[:1], b[:1]) is net
