"""Cost of `weight_average` (the moving average of the weights after every optimiser step, `cinn.train.Trainer`)
beside the plain training step, in one run: forward + backward + gradient clip + Adam step of a batch, with and
without the averaging update, for the reference recipe's network (flux compressed to 128 components) and the
published network (25,200 pixels into the 2048-1024-512 feature network: 67 M parameters to average).
Run: `python -m benchmarks weight_average [--repeats 5 --steps 4]`."""
from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch


def _setup(cfg, n_wave: int, batch: int):
    from cinn.model import CINN
    from cinn.train import Trainer

    model = CINN(cfg, n_wave)
    if cfg.flux_components:
        model.set_flux_basis(torch.linalg.qr(torch.randn(n_wave, cfg.flux_components))[0].numpy())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(batch, len(cfg.labels), generator=g), torch.randn(batch, n_wave + 1, generator=g)
    # the Trainer's own averaging code on a stand-in holding what it reads (cfg, model, averaged)
    t = SimpleNamespace(cfg=cfg, model=model, averaged=None)
    t._averaged_parameters = lambda: Trainer._averaged_parameters(t)

    def average() -> None:
        Trainer._average(t)

    def step(with_average: bool) -> None:
        opt.zero_grad(set_to_none=True)
        z, logdet = model(x, cond)
        loss = (0.5 * (z * z).sum(1) - logdet).mean() / z.shape[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if with_average:
            average()

    n_avg = sum(p.numel() for p in model.parameters() if p.is_floating_point())
    return step, average, n_avg


def main(argv=None) -> None:
    from benchmarks.learning_curve import RECIPE
    from cinn.config import CINNConfig, as_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--n-wave", type=int, default=25200)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    recipe = as_config(RECIPE).replace(weight_average=0.99, device="cpu")  # configs/reference-tsgrid-lte.yaml
    published = CINNConfig(weight_average=0.99, device="cpu")
    print(f"torch threads {torch.get_num_threads()}; median of {args.repeats} repeats of {args.steps} steps")
    print(f"{'network':<28} {'parameters':>11} {'step ms':>9} {'step+avg ms':>12} {'avg alone ms':>13} {'ratio':>6}")
    for name, cfg, batch in (("reference recipe, batch 256", recipe, 256), ("published, batch 256", published, 256)):
        step, average, n_avg = _setup(cfg, args.n_wave, batch)
        step(True)  # warm-up (and the average's first copy)
        times = {False: [], True: []}
        alone = []
        for _ in range(args.repeats):
            for avg in (False, True):  # interleaved: the machine's load hits both alike
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step(avg)
                times[avg].append((time.perf_counter() - t0) / args.steps * 1e3)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                average()
            alone.append((time.perf_counter() - t0) / args.steps * 1e3)
        plain, with_avg = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name:<28} {n_avg:>11,} {plain:>9.1f} {with_avg:>12.1f} {statistics.median(alone):>13.2f} {with_avg / plain:>6.3f}")


if __name__ == "__main__":
    main()
