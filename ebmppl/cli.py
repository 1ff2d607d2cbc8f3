"""The ``ebmppl`` command line (thin: parses, calls the API, writes a run folder).

``ebmppl fit`` trains an energy (default: two moons; ``--data FILE`` for your
own ``.npy``/``.npz``/``.csv`` data) and writes a run folder with config,
metrics, checkpoint, figures and an HTML report; ``ebmppl sample`` samples a
built-in target (or, with ``--run PATH``, a trained run folder or a file
written by :func:`ebmppl.save`) and writes draws, an ArviZ summary and a
figure; ``ebmppl compare`` compares samplers on a target or a trained energy.
``--help`` shows every option's default; ``ebmppl --version`` the version.

Output: a failed command removes the output folder it created (never one that
existed before, never a ``fit`` folder holding a checkpoint to resume).
Progress goes to stderr: a bar on a terminal, whole lines (no carriage
returns) on a pipe or file, nothing with ``--quiet``.

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
import shutil
import signal
import sys
import time
import warnings

from ebmppl._deprecation import UNSET, renamed

__all__ = ["main"]

_DEFAULT_TARGET = "banana"


def _progress(args: argparse.Namespace) -> tuple[bool, bool]:
    """(tqdm bars, plain lines): bars on a terminal; on a pipe or file a few whole lines; nothing with --quiet."""
    if args.quiet:
        return False, False
    tty = sys.stderr.isatty()
    return tty, not tty


def _line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _LineProgress:
    """A fit callback printing one line per tenth of the run (for logs: no carriage-return redraws)."""

    def __init__(self, total: int):
        self.total, self.last, self.t0 = total, None, time.perf_counter()

    def __call__(self, step: int, state, metrics) -> bool:
        import numpy as np

        tenth = max(1, self.total // 10)
        if self.last is None or step // tenth > self.last // tenth or step >= self.total:
            self.last = step
            last = {k: float(np.asarray(v)[-1]) for k, v in metrics.items() if k in ("loss", "energy_pos", "energy_neg")}
            shown = "".join(f", {k} {v:.3f}" for k, v in last.items())
            _line(f"fit: step {step}/{self.total} ({100 * step // self.total}%){shown}, "
                  f"{time.perf_counter() - self.t0:.0f} s")
        return False


def _sample(args: argparse.Namespace) -> int:
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ebmppl import diagnostics, sample
    from ebmppl.plots import plot_samples_2d
    from ebmppl.samplers import get_sampler

    key = jax.random.key(args.seed)
    init = None
    if args.run_path is not None:
        from ebmppl.recipes import Standardized, standard_coordinates
        from ebmppl.runs import load_trained_energy

        energy, cfg = load_trained_energy(args.run_path)
        what = f"the trained run {args.run_path}"
        if isinstance(energy.energy_fn, Standardized) and energy.energy_fn.shift is not None:
            # fit's "density" recipe: start where the data are, [-2, 2] sd around their mean
            _, shift, scale = standard_coordinates(energy)
            u = jax.random.uniform(jax.random.fold_in(key, 1), (args.chains, *energy.event_shape), minval=-2.0, maxval=2.0)
            init = jax.numpy.asarray(shift) + jax.numpy.asarray(scale) * u
    else:
        from ebmppl.targets import TARGETS

        args.target = args.target or _DEFAULT_TARGET
        energy = TARGETS[args.target]().energy
        what = args.target
    sampler = get_sampler(args.sampler)
    bars, lines = _progress(args)
    if lines:
        _line(f"sample: {args.sampler} on {what}, {args.chains} chains x ({args.num_warmup} warm-up + "
              f"{args.num_samples} draws)")
    t0 = time.perf_counter()
    out = sample(energy, key, sampler=sampler, num_chains=args.chains, num_warmup=args.num_warmup,
                 num_samples=args.num_samples, init=init, progress_bar=bars)
    if lines:
        _line(f"sample: done in {time.perf_counter() - t0:.1f} s")
    run = pathlib.Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    draws = np.asarray(out.positions)
    np.save(run / "draws.npy", draws)
    table = diagnostics.summary(out.to_arviz())
    table.to_csv(run / "summary.csv")
    info = {
        "target": args.target, "run": args.run_path, "sampler": args.sampler, "chains": args.chains,
        "warmup": args.num_warmup, "samples": args.num_samples, "seed": args.seed,
        "step_size": float(np.asarray(out.params["step_size"])),
        "acceptance_rate": float(np.nanmean(np.asarray(out.stats.acceptance_rate))),
        "divergences": int(np.asarray(out.stats.is_divergent).sum()),
        "max_rhat": float(diagnostics.rhat(draws).max()),
        "min_ess_bulk": float(diagnostics.ess(draws).min()),
        "timings_s": out.timings,
    }
    # the thresholds of diagnostics.compare (Vehtari et al. 2021): R-hat <= 1.01, bulk ESS >= 400
    problems = [f"R-hat {info['max_rhat']:.3f} > 1.01"] if not info["max_rhat"] <= 1.01 else []
    problems += [f"bulk ESS {info['min_ess_bulk']:.0f} < 400"] if not info["min_ess_bulk"] >= 400 else []
    problems += [f"{info['divergences']} divergences"] if info["divergences"] else []
    info["converged"] = not problems
    (run / "run.json").write_text(json.dumps(info, indent=2))
    figure = run / "samples.png"
    if energy.event_shape == (2,):
        fig = plot_samples_2d(energy, draws, title=f"{args.sampler} on {args.run_path or args.target}")
        fig.savefig(figure, dpi=120)
        plt.close(fig)
    else:
        diagnostics.plot_trace(out.to_arviz())
        plt.gcf().savefig(figure, dpi=120)
        plt.close("all")
    print(table.to_string())
    print(f"\nR-hat max {info['max_rhat']:.4f}, bulk ESS min {info['min_ess_bulk']:.0f}, "
          f"acceptance {info['acceptance_rate']:.2f}, divergences {info['divergences']}")
    if problems:
        print(f"NOT CONVERGED ({'; '.join(problems)}): these draws are not yet a trustworthy sample; raise "
              "--num-warmup/--num-samples or try another --sampler (e.g. nuts).", file=sys.stderr)
    print(f"wrote {run}/ (draws.npy, summary.csv, run.json, samples.png)")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from ebmppl.fit import CHECKPOINT_NAME, TrainingDiverged
    from ebmppl.runs import FitConfig, fit_run

    if args.test_fraction is not None and args.data is None:
        raise ValueError("--test-fraction applies to --data (the built-in datasets have their own held-out set).")
    options = ("widths", "sampler", "init_strategy", "steps", "batch_size", "num_mcmc_steps", "step_size",
               "noise_scale", "lr", "alpha", "test_fraction")
    # unset: FitConfig's default, the single source of defaults
    given = {name: getattr(args, name) for name in options if getattr(args, name) is not None}
    if args.data is not None:
        given["data"] = args.data
    else:
        given["dataset"] = args.dataset or FitConfig.dataset
    cfg = FitConfig(seed=args.seed, out=args.out, **given)
    bars, lines = _progress(args)
    callbacks = [_LineProgress(cfg.resolved().steps)] if lines else []
    if lines:
        _line(f"fit: {cfg.data or cfg.dataset} -> {args.out}")
    # SIGTERM (a scheduler's kill) is handled like Ctrl-C: fit checkpoints the last completed chunk
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        evaluation = fit_run(cfg, resume=args.resume, overwrite=args.overwrite, progress_bar=bars, callbacks=callbacks)
    except KeyboardInterrupt:
        if (pathlib.Path(args.out) / CHECKPOINT_NAME).exists():
            print(f"\ninterrupted: checkpoint of the last completed step written to {args.out}; continue with "
                  f"'ebmppl fit --out {args.out} --resume' (and the same options)", file=sys.stderr)
        else:
            print("\ninterrupted before the first checkpoint: nothing to resume.", file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"ebmppl fit: training diverged: {err}", file=sys.stderr)
        if (pathlib.Path(args.out) / CHECKPOINT_NAME).exists():
            print(f"ebmppl fit: {args.out} is kept: it holds the last good checkpoint.", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    for key, value in evaluation.items():
        print(f"{key:>26s}: {value}")
    written = sorted(p.name for p in pathlib.Path(args.out).iterdir() if not p.name.startswith("."))
    print(f"\nwrote {args.out}/ ({', '.join(written)})")
    return 0


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _compare(args: argparse.Namespace) -> int:
    from ebmppl.runs import compare_run

    if not args.checkpoint:
        args.target = args.target or _DEFAULT_TARGET
    names = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--samplers: expected comma-separated sampler names, got {args.samplers!r}.")
    # user errors before the header line, so that an error is one line on stderr
    from ebmppl.runs import load_trained_energy
    from ebmppl.samplers import available

    unknown = [n for n in names if n not in available()]
    if unknown:
        raise ValueError(f"unknown sampler {unknown[0]!r}; choose from {', '.join(available())}.")
    if args.checkpoint:
        load_trained_energy(args.checkpoint)  # a missing or damaged run fails here, with its own message
    bars, lines = _progress(args)
    if lines:
        _line(f"compare: {', '.join(names)} on {args.checkpoint or args.target}, {args.chains} chains x "
              f"({args.num_warmup} warm-up + {args.num_samples} draws) each")
    t0 = time.perf_counter()
    comparison = compare_run(None if args.checkpoint else args.target, names, out=args.out, num_chains=args.chains,
                             num_warmup=args.num_warmup, num_samples=args.num_samples, seed=args.seed,
                             checkpoint=args.checkpoint, progress_bar=bars)
    if lines:
        _line(f"compare: done in {time.perf_counter() - t0:.1f} s")
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), e.g. 0.2, got {text}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help states its default: ``(default: X)`` appended unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text:
            return text
        if action.nargs == 0:  # a flag
            return f"{text} (default: off)"
        return f"{text} (default: {action.default})"


def _renamed_option(parser: argparse.ArgumentParser, old: str, new: str, default, **kw) -> None:
    """Option ``new`` (shown in --help) and its deprecated spelling ``old`` (hidden; same type), resolved by
    :func:`_resolve_renamed` after parsing: ``old`` still works for one release, with a warning on stderr."""
    parser.add_argument(new, default=UNSET, **kw)
    parser.add_argument(old, dest=_old_dest(old), default=UNSET, type=kw.get("type"), choices=kw.get("choices"),
                        metavar=kw.get("metavar"), help=argparse.SUPPRESS)
    parser.set_defaults(renamed_options=(*(parser.get_default("renamed_options") or ()), (old, new, default)))


def _old_dest(flag: str) -> str:
    return "deprecated_" + flag.lstrip("-").replace("-", "_")


def _resolve_renamed(args: argparse.Namespace) -> list[str]:
    """Give each renamed option its value (from the old spelling where only that was given); the warnings' texts.

    Raises
    ------
    TypeError
        Both spellings of one option were given.
    """
    messages = []
    for old, new, default in getattr(args, "renamed_options", ()):
        dest = new.lstrip("-").replace("-", "_")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = renamed(f"ebmppl {args.command}", old, getattr(args, _old_dest(old)), new, getattr(args, dest),
                            default=default)
        setattr(args, dest, value)
        messages += [str(w.message) for w in caught]
    return messages


def _trained_or_target(parser: argparse.ArgumentParser, flag: str, dest: str, help: str) -> None:
    """The subject of sample/compare: ``--target NAME`` or a trained energy (``flag`` PATH), not both."""
    from ebmppl.targets import TARGETS

    subject = parser.add_mutually_exclusive_group()
    subject.add_argument("--target", default=None, choices=sorted(TARGETS),
                         help=f"built-in target (default: {_DEFAULT_TARGET}, unless the trained energy is given)")
    subject.add_argument(flag, dest=dest, default=None, metavar="PATH",
                         help=f"a trained energy to sample instead of --target: {help} (default: none, use --target)")


def _sampling_options(parser: argparse.ArgumentParser, chains_help: str, out: str) -> None:
    """The options sample and compare share: chains, warm-up and kept draws per chain, seed, output, quiet."""
    parser.add_argument("--chains", type=_int_at_least(1), default=4, help=chains_help)
    _renamed_option(parser, "--warmup", "--num-warmup", 1000, type=_int_at_least(0),
                    help="warm-up steps per chain (default: 1000; --warmup is its deprecated spelling)")
    _renamed_option(parser, "--samples", "--num-samples", 1000, type=_int_at_least(1),
                    help="kept draws per chain (default: 1000; --samples is its deprecated spelling)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the initial positions and the chains")
    parser.add_argument("--out", default=out, help="output folder (removed again if this command fails and it did "
                                                   "not exist before)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _parser() -> argparse.ArgumentParser:
    from ebmppl import __version__
    from ebmppl.buffer import STRATEGIES
    from ebmppl.runs import DATASETS, FitConfig
    from ebmppl.samplers import available

    toy, file, digits = FitConfig().resolved(), FitConfig(data="FILE").resolved(), FitConfig(dataset="digits").resolved()

    def by_data(name: str) -> str:  # a default that depends on the data, as FitConfig.resolved fills it
        a, f, b = getattr(toy, name), getattr(file, name), getattr(digits, name)
        a, f, b = (",".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else v
                   for v in (a, f, b))
        if a == f:
            return f"default: {a} for 2-D data and --data, {b} for digits"
        return f"default: {a} for the 2-D datasets, {f} for --data, {b} for digits"

    parser = _Parser(prog="ebmppl", description="Energy-based models on NumPyro, BlackJAX and ArviZ.",
                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=_HelpFormatter, **kw)

    f = add("fit", help="train an energy on a built-in dataset or your own data file and write a run folder "
                        "with a report", description="Train an energy and write a run folder (config, metrics, "
                        "checkpoint, figures, report.html). Progress: a bar on a terminal, a line per tenth of "
                        "the run when stderr is a pipe or file, nothing with --quiet.")
    data = f.add_mutually_exclusive_group()
    data.add_argument("--dataset", default=None, choices=DATASETS,
                      help=f"built-in training data (default: {FitConfig.dataset}, unless --data is given)")
    data.add_argument("--data", default=None, metavar="FILE",
                      help="your own data, one example per row: FILE.npy; FILE.npz holding one array, or "
                           "FILE.npz:NAME for its array NAME; FILE.csv of numbers (a header row is detected). Any "
                           "dimension and scale: the network sees standardised data, the report and samples are "
                           "in your data's units (default: none, use --dataset)")
    f.add_argument("--test-fraction", type=_fraction, default=None,
                   help=f"share of the --data rows held out for evaluation, drawn with --seed "
                        f"(default: {FitConfig.test_fraction})")
    def data_option(flag: str, parse, text: str) -> None:  # an option whose default FitConfig.resolved fills
        f.add_argument(flag, type=parse, default=None, help=f"{text} ({by_data(flag[2:].replace('-', '_'))})")

    data_option("--widths", _widths, "hidden widths of the MLP energy, e.g. 128,128,128")
    f.add_argument("--sampler", default=FitConfig.sampler, choices=available(),
                   help=f"sampler for the negatives ({by_data('sampler')})")
    _renamed_option(f, "--init", "--init-strategy", FitConfig.init_strategy, choices=sorted(STRATEGIES),
                    help=f"where the negative chains start (default: {FitConfig.init_strategy}; --init is its "
                         "deprecated spelling)")
    data_option("--steps", _int_at_least(1), "training steps")
    f.add_argument("--batch-size", type=_int_at_least(1), default=FitConfig.batch_size, help="examples per step")
    _renamed_option(f, "--mcmc-steps", "--num-mcmc-steps", None, type=_int_at_least(1),
                    help=f"K sampler steps per training step ({by_data('num_mcmc_steps')}; --mcmc-steps is its "
                         "deprecated spelling)")
    data_option("--step-size", _positive_float, "sampler step size, in standard deviations of the data except for "
                                                "digits")
    data_option("--noise-scale", _positive_float, "Langevin noise scale")
    f.add_argument("--lr", type=_positive_float, default=FitConfig.lr, help="Adam learning rate")
    data_option("--alpha", _non_negative_float, "L2 energy penalty")
    f.add_argument("--seed", type=_int_at_least(0), default=FitConfig.seed,
                   help="seed of the network, the training and the --data split")
    f.add_argument("--out", default=FitConfig.out, help="run folder (removed again if this command fails before "
                                                        "it holds a checkpoint and it did not exist before)")
    f.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    f.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    f.add_argument("--quiet", action="store_true", help="no progress output")
    f.set_defaults(run=_fit)

    c = add("compare", help="compare samplers on a built-in target or a trained energy")
    _trained_or_target(c, "--checkpoint", "checkpoint", "a run folder of 'ebmppl fit' or a file written by ebmppl.save")
    c.add_argument("--samplers", default="mala,hmc,nuts,barker,ula", help="comma-separated sampler names")
    _sampling_options(c, "chains per sampler", "runs/compare")
    c.set_defaults(run=_compare)

    s = add("sample", help="sample a built-in target or a trained energy and write draws, a summary and a figure")
    _trained_or_target(s, "--run", "run_path", "a run folder of 'ebmppl fit' (draws in the units of its data) or a "
                                               "file written by ebmppl.save")
    s.add_argument("--sampler", default="nuts", choices=available(), help="sampler")
    _sampling_options(s, "chains", "runs/sample")
    s.set_defaults(run=_sample)
    return parser


def _make_folder(path: pathlib.Path) -> pathlib.Path | None:
    """Create ``path`` (and parents); return the topmost folder this call created, ``None`` if it existed."""
    created = None
    for folder in (path.absolute(), *path.absolute().parents):
        if folder.exists():
            break
        created = folder
    path.mkdir(parents=True, exist_ok=True)
    return created


def _remove_created(created: pathlib.Path | None, args: argparse.Namespace) -> None:
    """After a failure: remove the output folder this command created, unless it holds a resumable checkpoint."""
    if created is None or not created.exists():
        return
    from ebmppl.fit import CHECKPOINT_NAME

    if args.command == "fit" and (pathlib.Path(args.out) / CHECKPOINT_NAME).exists():
        return  # an interrupted (or diverged) run: its checkpoint is what --resume continues
    shutil.rmtree(created, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ebmppl`` command: returns the exit status (user errors exit 2 with one line).

    A command that fails removes the output folder it created (never one that
    existed before it started, and never a fit run folder that holds a
    checkpoint to resume).

    Examples
    --------
    >>> import contextlib, io, tempfile
    >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
    ...     status = main(["sample", "--target", "gaussian", "--sampler", "mala", "--warmup", "100",
    ...                    "--samples", "100", "--out", tempfile.mkdtemp(), "--quiet"])
    >>> status, "R-hat max" in printed.getvalue()
    (0, True)
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        for message in _resolve_renamed(args):
            print(message, file=sys.stderr)
    except TypeError as err:  # both spellings of an option: "ebmppl fit: pass --x= only (...), not both."
        parser.exit(2, f"ebmppl {args.command}: error: {str(err).split(': ', 1)[-1]}\n")
    from ebmppl.checkpoint import CheckpointError

    created = None
    try:
        if getattr(args, "out", None):  # a bad output path fails now, before any work
            created = _make_folder(pathlib.Path(args.out))
        status = args.run(args)
    except (ValueError, OSError, CheckpointError) as err:  # OSError: bad paths, permissions, existing run folders
        _remove_created(created, args)
        message = " ".join(str(err).split())  # one line, whatever the exception text
        parser.exit(2, f"ebmppl {args.command}: error: {message}\n")
    except KeyboardInterrupt:
        _remove_created(created, args)
        print(f"\nebmppl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BaseException:
        _remove_created(created, args)
        raise
    if status != 0:
        _remove_created(created, args)
    return status


if __name__ == "__main__":
    sys.exit(main())
