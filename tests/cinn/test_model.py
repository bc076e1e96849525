"""The flow: invertibility, log-determinant against autograd, and the fast inference path against FrEIA's."""
import numpy as np
import pytest
import torch

from cinn.config import CINNConfig
from cinn.model import CINN, FastReverse

SMALL = CINNConfig(n_blocks=4, subnet_width=32, subnet_layers=3, feature_layers=(32,), n_features=8)


def _random_model(cfg=SMALL, n_wave=20, seed=3):
    """A model whose couplings are far from the identity (the last subnet layers start near zero)."""
    model = CINN(cfg, n_wave).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dtype.is_floating_point:
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def test_inverse_of_forward_is_identity_within_1e_4():
    torch.manual_seed(0)
    model = _random_model().float()
    x = torch.randn(64, 13) * 2
    cond = torch.randn(64, 21)
    with torch.no_grad():
        z, logdet = model(x, cond)
        x_back, logdet_rev = model.reverse(z, model.condition(cond))
    assert torch.max(torch.abs(x_back - x)) < 1e-4
    assert torch.max(torch.abs(logdet + logdet_rev)) < 1e-4
    assert torch.max(torch.abs(z - x)) > 0.1  # the flow is not trivially the identity


def test_logdet_equals_log_abs_det_of_the_autograd_jacobian():
    torch.manual_seed(1)
    model = _random_model()
    x = torch.randn(5, 13, dtype=torch.float64)
    cond = torch.randn(5, 21, dtype=torch.float64)
    c = model.condition(cond).double()
    _, logdet = model.flow(x, c=[c])
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: model.flow(v[None], c=[c[i:i + 1]])[0][0], x[i])
        sign, logabs = torch.linalg.slogdet(jac)
        assert float(logdet[i].detach()) == pytest.approx(float(logabs), abs=1e-5)  # subnets return float32 by design


def test_fast_reverse_matches_freia_reverse_for_many_spectra():
    model = _random_model().float()
    cond = torch.randn(6, 21)
    z = torch.randn(6, 50, 13)
    with torch.no_grad():
        c = model.condition(cond)
        x_fast, ld_fast = FastReverse(model).reverse(z, c)
        for j in range(6):
            x_ref, ld_ref = model.reverse(z[j], c[j:j + 1].repeat(50, 1))
            np.testing.assert_allclose(x_fast[j].numpy(), x_ref.numpy(), atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(ld_fast[j].numpy(), ld_ref.numpy(), atol=1e-4)


def test_fast_forward_matches_freia_forward_and_inverts_fast_reverse():
    model = _random_model().float()
    cond = torch.randn(4, 21)
    x = 2 * torch.randn(4, 50, 13)
    with torch.no_grad():
        c = model.condition(cond)
        fast = FastReverse(model)
        z_fast, ld_fast = fast.forward(x, c)
        for j in range(4):
            z_ref, ld_ref = model.flow(x[j], c=[c[j:j + 1].repeat(50, 1)])
            np.testing.assert_allclose(z_fast[j].numpy(), z_ref.numpy(), atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(ld_fast[j].numpy(), ld_ref.numpy(), atol=1e-4)
        x_back, ld_back = fast.reverse(z_fast, c)
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=1e-4)
    np.testing.assert_allclose((ld_fast + ld_back).numpy(), 0.0, atol=1e-4)
    assert float(torch.max(torch.abs(z_fast - x))) > 0.1  # not trivially the identity


def test_published_size_and_deterministic_init():
    a, b = CINN(CINNConfig(), 100), CINN(CINNConfig(), 100)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    n_glow = sum(type(m).__name__ == "GLOWCouplingBlock" for m in a.flow.module_list)
    n_perm = sum(type(m).__name__ == "PermuteRandom" for m in a.flow.module_list)
    assert n_glow == n_perm == 16
    assert a.flow.module_list[1].clamp == 1.9
    # "subnets of three fully connected layers of 512": in -> 512 -> 512 -> out, ReLU in between
    glow = a.flow.module_list[1]
    for subnet, n_in, n_out in ((glow.subnet1, glow.split_len1, 2 * glow.split_len2), (glow.subnet2, glow.split_len2, 2 * glow.split_len1)):
        shapes = [tuple(m.weight.shape) for m in subnet if isinstance(m, torch.nn.Linear)]
        assert shapes == [(512, n_in + 256), (512, 512), (n_out, 512)]
        assert [type(m).__name__ for m in subnet] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    CINN(SMALL, 10)
    assert np.random.rand() == expected  # PermuteRandom's reseeding of numpy does not leak
