"""The ``ebmppl`` command line (thin: parses, calls the API, writes a run folder).

``ebmppl sample`` samples a built-in target with a chosen sampler and writes
the draws, an ArviZ summary and a figure into a run folder.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

__all__ = ["main"]


def _sample(args: argparse.Namespace) -> int:
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ebmppl import diagnostics, sample
    from ebmppl.plots import plot_samples_2d
    from ebmppl.samplers import get_sampler
    from ebmppl.targets import TARGETS

    target = TARGETS[args.target]()
    sampler = get_sampler(args.sampler)
    out = sample(target.energy, jax.random.key(args.seed), sampler=sampler, num_chains=args.chains,
                 num_warmup=args.warmup, num_samples=args.samples)
    run = pathlib.Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    draws = np.asarray(out.positions)
    np.save(run / "draws.npy", draws)
    table = diagnostics.summary(out.to_arviz())
    table.to_csv(run / "summary.csv")
    info = {
        "target": args.target, "sampler": args.sampler, "chains": args.chains, "warmup": args.warmup,
        "samples": args.samples, "seed": args.seed,
        "step_size": float(np.asarray(out.params["step_size"])),
        "acceptance_rate": float(np.nanmean(np.asarray(out.stats.acceptance_rate))),
        "divergences": int(np.asarray(out.stats.is_divergent).sum()),
        "max_rhat": float(diagnostics.rhat(draws).max()),
        "min_ess_bulk": float(diagnostics.ess(draws).min()),
        "timings_s": out.timings,
    }
    (run / "run.json").write_text(json.dumps(info, indent=2))
    figure = run / "samples.png"
    if target.energy.event_shape == (2,):
        fig = plot_samples_2d(target.energy, draws, title=f"{args.sampler} on {args.target}")
        fig.savefig(figure, dpi=120)
        plt.close(fig)
    else:
        diagnostics.plot_trace(out.to_arviz())
        plt.gcf().savefig(figure, dpi=120)
        plt.close("all")
    print(table.to_string())
    print(f"\nR-hat max {info['max_rhat']:.4f}, bulk ESS min {info['min_ess_bulk']:.0f}, "
          f"acceptance {info['acceptance_rate']:.2f}, divergences {info['divergences']}")
    print(f"wrote {run}/ (draws.npy, summary.csv, run.json, samples.png)")
    return 0


def _parser() -> argparse.ArgumentParser:
    from ebmppl.samplers import available
    from ebmppl.targets import TARGETS

    parser = argparse.ArgumentParser(prog="ebmppl", description="Energy-based models on NumPyro, BlackJAX and ArviZ.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="sample a built-in target and write draws, a summary and a figure")
    s.add_argument("--target", default="banana", choices=sorted(TARGETS), help="built-in target (default banana)")
    s.add_argument("--sampler", default="nuts", choices=available(), help="sampler (default nuts)")
    s.add_argument("--chains", type=int, default=4)
    s.add_argument("--warmup", type=int, default=1000)
    s.add_argument("--samples", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/sample", help="run folder (default runs/sample)")
    s.set_defaults(run=_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ebmppl`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("chains", "warmup", "samples"):
        low = 0 if name == "warmup" else 1
        if getattr(args, name) < low:
            parser.error(f"--{name} must be >= {low}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
