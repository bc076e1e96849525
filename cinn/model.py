"""The cINN: a feature network (flux + S/N -> condition) and a FrEIA 0.2 SequenceINN of
`n_blocks` x (PermuteRandom + GLOWCouplingBlock) on the standardized labels.

FrEIA's AllInOneBlock breaks under torch 2, hence GLOWCouplingBlock + PermuteRandom. PermuteRandom(seed=)
reseeds numpy's global RNG; we restore numpy's state after building. The coupling subnets return float32
so that scales, log-determinants and densities stay float32 under mixed precision (autocast).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import CINNConfig


class Subnet(nn.Sequential):
    """Fully connected subnet: `layers` hidden layers of `width` with ReLU; output in float32."""

    def __init__(self, c_in: int, c_out: int, width: int, layers: int):
        mods: list[nn.Module] = []
        d = c_in
        for _ in range(layers):
            mods += [nn.Linear(d, width), nn.ReLU()]
            d = width
        last = nn.Linear(d, c_out)
        # start close to the identity transform (standard for coupling flows: stable early training)
        nn.init.zeros_(last.bias)
        with torch.no_grad():
            last.weight.mul_(0.01)
        mods.append(last)
        super().__init__(*mods)

    def forward(self, x):  # noqa: D401
        return super().forward(x).float()


def feature_network(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = n_in
    for w in hidden:
        mods += [nn.Linear(d, w), nn.ReLU()]
        d = w
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


class CINN(nn.Module):
    """Conditional INN. x: standardized labels (B, n_labels); cond_in: (B, n_wave + 1) standardized flux + S/N."""

    def __init__(self, config: CINNConfig, n_wave: int):
        super().__init__()
        import FrEIA.framework as Ff
        import FrEIA.modules as Fm

        self.config = config
        self.n_wave = int(n_wave)
        self.n_dim = len(config.labels)
        cpu_state = torch.random.get_rng_state()
        np_state = np.random.get_state()
        try:
            torch.manual_seed(config.init_seed)
            self.features = feature_network(self.n_wave + 1, config.feature_layers, config.n_features)
            flow = Ff.SequenceINN(self.n_dim)

            def subnet(c_in, c_out):
                return Subnet(c_in, c_out, config.subnet_width, config.subnet_layers)

            for k in range(config.n_blocks):
                flow.append(Fm.PermuteRandom, seed=config.init_seed * 1000 + k)
                flow.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(config.n_features,),
                            subnet_constructor=subnet, clamp=config.clamp, clamp_activation="ATAN")
            self.flow = flow
        finally:
            torch.random.set_rng_state(cpu_state)
            np.random.set_state(np_state)

    def condition(self, cond_in: torch.Tensor) -> torch.Tensor:
        return self.features(cond_in).float()

    def forward(self, x: torch.Tensor, cond_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels -> (z, log|det dz/dx|) (log-det float32)."""
        c = self.condition(cond_in)
        z, logdet = self.flow(x.float(), c=[c])
        return z.float(), logdet.float()

    def reverse(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z, condition (already through the feature network) -> (labels, log|det dx/dz|)."""
        x, logdet = self.flow(z.float(), c=[c], rev=True)
        return x.float(), logdet.float()

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def log_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row, float32."""
    z = z.float()
    return -0.5 * (z * z).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class FastReverse:
    """Inference path of a trained CINN: the same reverse pass as FrEIA's, for many spectra x many samples.

    The condition's contribution to the first layer of every coupling subnet, W_c c + b, is computed once per
    spectrum (not once per sample), samples of several spectra can run as one batch, permutations are index
    gathers, and no [x, c] concatenation of (samples x n_features) is ever built. The split first-layer weights
    are copied once, contiguous, at construction: build a new FastReverse after changing the model's weights.
    """

    def __init__(self, model: CINN):
        import FrEIA.modules as Fm

        self.model = model
        self.steps = []  # in forward order: ("perm", perm_inv) or ("glow", block, ((wx_t, wc_t, b) of subnet1, of subnet2))
        with torch.no_grad():
            for mod in model.flow.module_list:
                if isinstance(mod, Fm.PermuteRandom):
                    self.steps.append(("perm", mod.perm_inv, None))
                elif isinstance(mod, Fm.GLOWCouplingBlock):
                    firsts = tuple(self._split_first(sub, n_x) for sub, n_x in ((mod.subnet1, mod.split_len1), (mod.subnet2, mod.split_len2)))
                    self.steps.append(("glow", mod, firsts))
                else:  # pragma: no cover - we build the flow ourselves
                    raise TypeError(f"unsupported flow module {type(mod).__name__}")

    @staticmethod
    def _split_first(subnet: Subnet, n_x: int):
        first: nn.Linear = subnet[0]
        w = first.weight.detach()
        return w[:, :n_x].t().contiguous(), w[:, n_x:].t().contiguous(), first.bias.detach().clone()

    def cond_terms(self, c: torch.Tensor) -> list:
        """Per coupling block, (cc1, cc2): W_c c + b of both subnets' first layers, (n_spec, width)."""
        return [None if kind != "glow" else tuple(torch.addmm(b, c, wc_t) for _, wc_t, b in firsts)
                for kind, _, firsts in self.steps]

    @staticmethod
    def _subnet(subnet: Subnet, wx_t: torch.Tensor, x: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
        """subnet([x, c]) with the condition term precomputed: x (S, n, n_x), cc (S, width) -> (S*n, out)."""
        s, n, n_x = x.shape
        h = torch.matmul(x.reshape(s * n, n_x), wx_t).reshape(s, n, -1)
        h = torch.relu_(h.add_(cc[:, None, :])).reshape(s * n, -1)
        for layer in list(subnet)[2:]:
            h = layer(h)
        return h.float()

    def reverse(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (S, n, d) and condition c (S, n_features) -> labels (S, n, d), log|det dx/dz| (S, n)."""
        s, n, d = z.shape
        cterms = self.cond_terms(c)
        x = z.float()
        logdet = torch.zeros(s, n, dtype=torch.float32, device=z.device)
        for (kind, mod, firsts), cc in zip(reversed(self.steps), reversed(cterms)):
            if kind == "perm":
                x = x[..., mod]
                continue
            l1, l2 = mod.split_len1, mod.split_len2
            x1, x2 = x[..., :l1], x[..., l1:]
            a1 = self._subnet(mod.subnet1, firsts[0][0], x1.contiguous(), cc[0]).reshape(s, n, -1)
            s1 = mod.clamp * mod.f_clamp(a1[..., :l2])
            y2 = (x2 - a1[..., l2:]) * torch.exp(-s1)
            a2 = self._subnet(mod.subnet2, firsts[1][0], y2.contiguous(), cc[1]).reshape(s, n, -1)
            s2 = mod.clamp * mod.f_clamp(a2[..., :l1])
            y1 = (x1 - a2[..., l1:]) * torch.exp(-s2)
            logdet -= s1.sum(-1) + s2.sum(-1)
            x = torch.cat([y1, y2], dim=-1)
        return x, logdet


__all__ = ["CINN", "Subnet", "FastReverse", "log_normal", "feature_network"]
