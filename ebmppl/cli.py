"""The ``ebmppl`` command line (thin: parses, calls the API, writes a run folder).

``ebmppl fit`` trains an energy (default: two moons) and writes a run folder
with config, metrics, checkpoint, figures and an HTML report;
``ebmppl sample`` samples a built-in target and writes draws, an ArviZ
summary and a figure.

Exit status: 0 done; 2 a user error (bad option value, unknown dataset or
sampler, bad path, unreadable checkpoint, existing run folder) with a
one-line message and no traceback; 1 training diverged (one line, with
advice); 130 interrupted (Ctrl-C or SIGTERM) after writing a checkpoint of
the last completed chunk, which ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
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


def _fit(args: argparse.Namespace) -> int:
    from ebmppl.runs import FitConfig, fit_run

    widths = args.widths
    cfg = FitConfig(dataset=args.dataset, widths=widths, sampler=args.sampler, init=args.init, steps=args.steps,
                    batch_size=args.batch_size, mcmc_steps=args.mcmc_steps, step_size=args.step_size,
                    noise_scale=args.noise_scale, lr=args.lr, alpha=args.alpha, seed=args.seed, out=args.out)
    from ebmppl.fit import TrainingDiverged

    # SIGTERM (a scheduler's kill) is handled like Ctrl-C: fit checkpoints the last completed chunk
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        evaluation = fit_run(cfg, resume=args.resume, overwrite=args.overwrite, progress_bar=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: checkpoint of the last completed step written to {args.out}; continue with "
              f"'ebmppl fit --out {args.out} --resume' (and the same options)", file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"ebmppl fit: training diverged: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    for key, value in evaluation.items():
        print(f"{key:>26s}: {value}")
    print(f"\nwrote {args.out}/ (report.html, config.json, metrics.jsonl, checkpoint.ebm, density.png, samples.png, curves.png)")
    return 0


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _compare(args: argparse.Namespace) -> int:
    from ebmppl.runs import compare_run

    names = [s.strip() for s in args.samplers.split(",") if s.strip()]
    comparison = compare_run(None if args.checkpoint else args.target, names, out=args.out, chains=args.chains,
                             warmup=args.warmup, samples=args.samples, seed=args.seed, checkpoint=args.checkpoint,
                             progress_bar=not args.quiet)
    print(comparison.to_markdown())
    print(f"wrote {args.out}/ (comparison.csv, comparison.md, comparison.png, trace_*.png, rank_*.png, report.html)")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a user error is ONE line on stderr (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def _float_above(low: float, inclusive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = (value >= low if inclusive else value > low) and value != float("inf")
        if not ok:  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} {low:g}, got {text}")
        return value
    return parse


_positive_float, _non_negative_float = _float_above(0.0, inclusive=False), _float_above(0.0, inclusive=True)


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 128,128,128, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"every width must be >= 1, got {text!r}")
    return widths


def _parser() -> argparse.ArgumentParser:
    from ebmppl.samplers import available
    from ebmppl.targets import TARGETS

    parser = _Parser(prog="ebmppl", description="Energy-based models on NumPyro, BlackJAX and ArviZ.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from ebmppl.buffer import STRATEGIES
    from ebmppl.runs import DATASETS

    f = sub.add_parser("fit", help="train an energy on a dataset and write a run folder with a report")
    f.add_argument("--dataset", default="two_moons", choices=DATASETS, help="training data (default two_moons)")
    f.add_argument("--widths", default=None, type=_widths, help="hidden widths of the MLP energy, e.g. 128,128,128")
    f.add_argument("--sampler", default="langevin", choices=available(), help="sampler for the negatives")
    f.add_argument("--init", default="replay_buffer", choices=sorted(STRATEGIES), help="where chains start")
    f.add_argument("--steps", type=_int_at_least(1), default=None, help="training steps (default: 5000 toy, 2000 digits)")
    f.add_argument("--batch-size", type=_int_at_least(1), default=128)
    f.add_argument("--mcmc-steps", type=_int_at_least(1), default=20, help="K sampler steps per training step")
    f.add_argument("--step-size", type=_positive_float, default=None, help="sampler step size")
    f.add_argument("--noise-scale", type=_positive_float, default=None, help="Langevin noise scale")
    f.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    f.add_argument("--alpha", type=_non_negative_float, default=None,
                   help="L2 energy penalty (default 0.05 toy, 0.1 digits)")
    f.add_argument("--seed", type=_int_at_least(0), default=0)
    f.add_argument("--out", default="runs/fit", help="run folder (default runs/fit)")
    f.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    f.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(run=_fit)
    c = sub.add_parser("compare", help="compare samplers on a built-in target or a trained run")
    c.add_argument("--target", default="banana", choices=sorted(TARGETS), help="built-in target (default banana)")
    c.add_argument("--checkpoint", default=None, help="a run folder of 'ebmppl fit' to sample instead of --target")
    c.add_argument("--samplers", default="mala,hmc,nuts,barker,ula", help="comma-separated sampler names")
    c.add_argument("--chains", type=_int_at_least(1), default=4)
    c.add_argument("--warmup", type=_int_at_least(0), default=1000)
    c.add_argument("--samples", type=_int_at_least(1), default=1000)
    c.add_argument("--seed", type=_int_at_least(0), default=0)
    c.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(run=_compare)

    s = sub.add_parser("sample", help="sample a built-in target and write draws, a summary and a figure")
    s.add_argument("--target", default="banana", choices=sorted(TARGETS), help="built-in target (default banana)")
    s.add_argument("--sampler", default="nuts", choices=available(), help="sampler (default nuts)")
    s.add_argument("--chains", type=_int_at_least(1), default=4)
    s.add_argument("--warmup", type=_int_at_least(0), default=1000)
    s.add_argument("--samples", type=_int_at_least(1), default=1000)
    s.add_argument("--seed", type=_int_at_least(0), default=0)
    s.add_argument("--out", default="runs/sample", help="run folder (default runs/sample)")
    s.set_defaults(run=_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ebmppl`` command: returns the exit status (user errors exit 2 with one line).

    Examples
    --------
    >>> import contextlib, io, tempfile
    >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
    ...     status = main(["sample", "--target", "gaussian", "--sampler", "mala", "--warmup", "100",
    ...                    "--samples", "100", "--out", tempfile.mkdtemp()])
    >>> status, "R-hat max" in printed.getvalue()
    (0, True)
    """
    parser = _parser()
    args = parser.parse_args(argv)
    from ebmppl.checkpoint import CheckpointError

    try:
        if getattr(args, "out", None):  # a bad output path fails now, before any work
            pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        return args.run(args)
    except (ValueError, OSError, CheckpointError) as err:  # OSError: bad paths, permissions, existing run folders
        message = " ".join(str(err).split())  # one line, whatever the exception text
        parser.exit(2, f"ebmppl {args.command}: error: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
