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
    """Fully connected subnet of `layers` linear layers (>= 2): c_in -> width (-> width ...) -> c_out, ReLU in
    between, i.e. `layers - 1` hidden layers of `width`; output in float32."""

    def __init__(self, c_in: int, c_out: int, width: int, layers: int):
        if layers < 2:
            raise ValueError(f"a subnet needs at least 2 fully connected layers, got {layers}")
        mods: list[nn.Module] = []
        d = c_in
        for _ in range(layers - 1):
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
            k = int(config.flux_components)
            if k > self.n_wave:
                raise ValueError(f"flux_components ({k}) must not exceed the number of pixels ({self.n_wave})")
            if k:
                # fixed (not trained) projection of the standardized flux: set by `set_flux_basis`, saved as a buffer
                self.register_buffer("flux_basis", torch.zeros(self.n_wave, k))
            self.features = feature_network((k or self.n_wave) + 1, config.feature_layers, config.n_features)
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

    def set_flux_basis(self, basis) -> None:
        """The (n_wave, flux_components) orthonormal basis the standardized flux is projected on."""
        basis = torch.as_tensor(np.asarray(basis, dtype=np.float32))
        if basis.shape != self.flux_basis.shape:
            raise ValueError(f"flux basis of shape {tuple(basis.shape)}, expected {tuple(self.flux_basis.shape)}")
        with torch.no_grad():
            self.flux_basis.copy_(basis)

    def condition(self, cond_in: torch.Tensor) -> torch.Tensor:
        if self.config.flux_components:
            cond_in = torch.cat([cond_in[:, :self.n_wave] @ self.flux_basis.to(cond_in.dtype), cond_in[:, self.n_wave:]], dim=1)
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
    """Inference path of a trained CINN: the same reverse pass as FrEIA's, for many spectra x many samples (and the
    same forward pass, `forward`, for densities of given points).

    Why it is faster per core than FrEIA's reverse pass with the condition repeated n times (same arithmetic on
    every sample row, so the same samples to float32 rounding):
    - the condition's contribution to the first layer of every coupling subnet, W_c c + b, is computed once per
      spectrum (not once per sample), and no [x, c] concatenation of (samples x n_features) is ever built;
    - every subnet layer is one addmm on weights copied once, transposed and contiguous, with ReLU in place
      (no extra pass over a fresh activation buffer);
    - permutations are index gathers; samples of several spectra can run as one batch (GPU).
    Callers feed the samples in blocks (`cinn.posterior` uses 1024 rows on CPU: activations of 1024 x 512 stay
    in the core's cache and the matrix products run at the core's sgemm rate). Build a new FastReverse after
    changing the model's weights.
    """

    def __init__(self, model: CINN):
        import FrEIA.modules as Fm

        self.model = model
        # in forward order: ("perm", perm_inv, None) or ("glow", block, (subnet1, subnet2)), a subnet being
        # (wx_t, wc_t, b) of its first layer and [(w_t, b), ...] of the others
        self.steps = []
        with torch.no_grad():
            for mod in model.flow.module_list:
                if isinstance(mod, Fm.PermuteRandom):
                    self.steps.append(("perm", mod.perm_inv, mod.perm))  # reverse gathers by perm_inv, forward by perm
                elif isinstance(mod, Fm.GLOWCouplingBlock):
                    subs = tuple(self._split(sub, n_x) for sub, n_x in ((mod.subnet1, mod.split_len1), (mod.subnet2, mod.split_len2)))
                    self.steps.append(("glow", mod, subs))
                else:  # pragma: no cover - we build the flow ourselves
                    raise TypeError(f"unsupported flow module {type(mod).__name__}")

    @staticmethod
    def _split(subnet: Subnet, n_x: int):
        linears = [m for m in subnet if isinstance(m, nn.Linear)]
        if len(linears) * 2 - 1 != len(subnet) or not all(isinstance(m, nn.ReLU) for m in list(subnet)[1::2]):
            raise TypeError("FastReverse expects subnets of Linear layers with ReLU in between")  # pragma: no cover
        w = linears[0].weight.detach()
        first = (w[:, :n_x].t().contiguous(), w[:, n_x:].t().contiguous(), linears[0].bias.detach().clone())
        rest = [(m.weight.detach().t().contiguous(), m.bias.detach().clone()) for m in linears[1:]]
        return first, rest

    def cond_terms(self, c: torch.Tensor) -> list:
        """Per coupling block, (cc1, cc2): W_c c + b of both subnets' first layers, (n_spec, width)."""
        return [None if kind != "glow" else tuple(torch.addmm(first[2], c, first[1]) for first, _ in subs)
                for kind, _, subs in self.steps]

    @staticmethod
    def _subnet(sub, x: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
        """subnet([x, c]) with the condition term precomputed: x (S, n, n_x), cc (S, width) -> (S*n, out)."""
        (wx_t, _, _), rest = sub
        s, n, n_x = x.shape
        if s == 1:
            h = torch.addmm(cc[0], x.reshape(n, n_x), wx_t)
        else:
            h = torch.matmul(x.reshape(s * n, n_x), wx_t).reshape(s, n, -1).add_(cc[:, None, :]).reshape(s * n, -1)
        h.relu_()
        for i, (w_t, b) in enumerate(rest):
            h = torch.addmm(b, h, w_t)
            if i < len(rest) - 1:
                h.relu_()
        return h.float()

    def reverse(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (S, n, d) and condition c (S, n_features) -> labels (S, n, d), log|det dx/dz| (S, n)."""
        s, n, d = z.shape
        cterms = self.cond_terms(c)
        x = z.float()
        logdet = torch.zeros(s, n, dtype=torch.float32, device=z.device)
        for (kind, mod, subs), cc in zip(reversed(self.steps), reversed(cterms)):
            if kind == "perm":
                x = x[..., mod]
                continue
            l1, l2 = mod.split_len1, mod.split_len2
            x1, x2 = x[..., :l1], x[..., l1:]
            a1 = self._subnet(subs[0], x1.contiguous(), cc[0]).reshape(s, n, -1)
            s1 = mod.clamp * mod.f_clamp(a1[..., :l2])
            y2 = (x2 - a1[..., l2:]) * torch.exp(-s1)
            a2 = self._subnet(subs[1], y2.contiguous(), cc[1]).reshape(s, n, -1)
            s2 = mod.clamp * mod.f_clamp(a2[..., :l1])
            y1 = (x1 - a2[..., l1:]) * torch.exp(-s2)
            logdet -= s1.sum(-1) + s2.sum(-1)
            x = torch.cat([y1, y2], dim=-1)
        return x, logdet

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The density pass, x (S, n, d) and condition c (S, n_features) -> z (S, n, d), log|det dz/dx| (S, n): FrEIA's
        forward pass with the same savings as `reverse` (an ensemble's mixture density, `Posterior.log_prob`)."""
        s, n, d = x.shape
        cterms = self.cond_terms(c)
        x = x.float()
        logdet = torch.zeros(s, n, dtype=torch.float32, device=x.device)
        for (kind, mod, subs), cc in zip(self.steps, cterms):
            if kind == "perm":
                x = x[..., subs]
                continue
            l1, l2 = mod.split_len1, mod.split_len2
            x1, x2 = x[..., :l1], x[..., l1:]
            a2 = self._subnet(subs[1], x2.contiguous(), cc[1]).reshape(s, n, -1)
            s2 = mod.clamp * mod.f_clamp(a2[..., :l1])
            y1 = torch.exp(s2) * x1 + a2[..., l1:]
            a1 = self._subnet(subs[0], y1.contiguous(), cc[0]).reshape(s, n, -1)
            s1 = mod.clamp * mod.f_clamp(a1[..., :l2])
            y2 = torch.exp(s1) * x2 + a1[..., l2:]
            logdet += s1.sum(-1) + s2.sum(-1)
            x = torch.cat([y1, y2], dim=-1)
        return x, logdet


__all__ = ["CINN", "Subnet", "FastReverse", "log_normal", "feature_network"]
