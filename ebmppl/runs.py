"""Run folders: a whole training job (data, network, fit, evaluation, figures, report) in one call.

This is what ``ebmppl fit`` runs. A run folder holds::

    config.json       the options of the run
    metrics.jsonl     one JSON line of metrics per training step
    checkpoint.ebm    the full training state (resumable, checksummed)
    evaluation.json   held-out log-likelihood, data entropy, MMD (2-D) or MMD (images);
                      a data file: log-likelihood (grid in 1-D/2-D, AIS beyond), Gaussian baseline, MMD
    density.png       2-D: data beside the learned density
    samples.png       model samples (2-D: over the density; digits: a grid; a data file of
                      another dimension: marginal and pairwise histograms against held-out data)
    curves.png        training curves
    health.png        training health: energies of data/negatives/noise, chain mixing, acceptance
    report.html       one page showing all of it, with health warnings and advice
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import math
import os
import pathlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl import buffer as buffers
from ebmppl import recipes
from ebmppl.data import TOY_DENSITIES, load_digits, toy
from ebmppl.energy import Energy
from ebmppl.evaluation import grid_log_partition, log_likelihood, mmd
from ebmppl.fit import CHECKPOINT_NAME, FitResult, fit
from ebmppl.health import TrainingHealth
from ebmppl.nn import MLPEnergy
from ebmppl.logz import LogZWarning
from ebmppl.normalisability import NotNormalisableError
from ebmppl.samplers import ChainHealthWarning, available, get_sampler, langevin, sample, ula

__all__ = ["FitConfig", "fit_run", "compare_run", "load_run_energy", "load_trained_energy", "load_data_file", "DATASETS"]

DATASETS = sorted(TOY_DENSITIES) + ["digits"]
TOY_STEPS = 8000
"""Training steps of ``ebmppl fit`` on a built-in 2-D dataset."""
TOY_BUFFER = 2000
"""Replay-buffer slots of ``ebmppl fit`` on a built-in 2-D dataset (the ``"density"`` recipe's own: 1000)."""
TOY_ALPHA = 0.01
"""Energy penalty of ``ebmppl fit`` on a built-in 2-D dataset (the ``"density"`` recipe's own: 0).

A regulariser with a small bias (a Gaussian's variance +3 % at 0.01 against -4 % at 0, 1000 steps). Kept
because these settings (8000 steps, buffer 2000) need it on separated modes: at 0, two moons trains as well
(seed 0: gap 0.038 vs 0.033 nats) but eight Gaussians runs away (gap 1e9, 26 health warnings; 3.1 nats and 9
warnings at 0.01). Issue 15, finding 5."""
TOY_STEP = 0.03
"""MALA step of ``ebmppl fit`` on a built-in 2-D dataset, in standardised units (the recipe's own, too)."""
TOY_MCMC_STEPS = 16
"""Sampler steps per update of ``ebmppl fit`` on a built-in 2-D dataset: as good as 20 on two moons
(3 seeds, ``benchmarks/bench_defaults.py``) at 4/5 of the cost, so the default run trains in under a minute."""
FILE_DATASET = "file"  # FitConfig.dataset of a run on a data file (FitConfig.data)


@dataclasses.dataclass
class FitConfig:
    """Options of a training run; ``None`` means the dataset's default (see :func:`FitConfig.resolved`).

    Examples
    --------
    >>> cfg = FitConfig(dataset="eight_gaussians", steps=100).resolved()
    >>> cfg.dataset, cfg.steps, cfg.widths
    ('eight_gaussians', 100, (128, 128, 128))
    """

    dataset: str = "two_moons"
    widths: tuple[int, ...] | None = None
    sampler: str | None = None
    init: str = "replay_buffer"
    steps: int | None = None
    batch_size: int = 128
    mcmc_steps: int | None = None
    step_size: float | None = None
    noise_scale: float | None = None
    lr: float = 1e-3
    alpha: float | None = None
    buffer_size: int | None = None
    reinit_prob: float = 0.05
    seed: int = 0
    out: str = "runs/fit"
    # your own data: a file (see :func:`load_data_file`); ``dataset`` then reads "file"
    data: str | None = None
    test_fraction: float = 0.2

    def __post_init__(self):
        if self.data is not None:
            self.data = os.fspath(self.data)
            self.dataset = FILE_DATASET

    def resolved(self) -> FitConfig:
        """Fill the dataset defaults.

        Toy 2-D data and data files: :func:`ebmppl.fit`'s ``"density"`` recipe
        (:mod:`ebmppl.recipes`: the data standardised per coordinate, a
        Gaussian confinement 3 standard deviations wide, the result in the
        data's units) with an MLP d-128-128-128-1, MALA negatives
        (Metropolis-corrected: no step-size bias) and a replay buffer
        re-initialised on ±3 standard deviations. Data files: 5000 steps and
        the recipe's own step (:data:`~ebmppl.recipes.DENSITY_STEP`), buffer
        (:data:`~ebmppl.recipes.BUFFER_CAPACITY`) and penalty
        (:data:`~ebmppl.recipes.DENSITY_ALPHA`: none, so the fit is unbiased);
        the built-in 2-D datasets: :data:`TOY_STEPS` steps of
        :data:`TOY_MCMC_STEPS` MALA steps of size
        :data:`TOY_STEP`, a :data:`TOY_BUFFER`-slot buffer and the lighter
        penalty :data:`TOY_ALPHA`, measured to reach their data's
        log-likelihood and sample distribution (issue 14, finding 10).
        ``sampler``, ``step_size``, ``noise_scale``, ``buffer_size`` and
        ``alpha`` given here replace these and act in standardised units.
        Adam at ``lr`` for half the run, then a cosine decay to ``lr / 10``.
        Digits: MLP 64-256-256-1, 2000 steps, practical Langevin
        with step 1 and noise 0.01 clamped to [-1, 1], buffer 10 000, alpha 0.1.

        Examples
        --------
        >>> FitConfig().resolved().steps, FitConfig(data="points.csv").resolved().alpha
        (8000, 0.0)
        >>> FitConfig(dataset="digits").resolved().widths
        (256, 256)
        """
        if self.data is None and self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}.")
        if self.sampler is not None and self.sampler not in available():
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(available())}.")
        if self.init not in buffers.STRATEGIES:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(sorted(buffers.STRATEGIES))}.")
        digits, toy = self.dataset == "digits", self.data is None and self.dataset != "digits"
        defaults = {
            "widths": (256, 256) if digits else (128, 128, 128),
            "steps": 2000 if digits else TOY_STEPS if toy else 5000,
            "mcmc_steps": TOY_MCMC_STEPS if toy else 20,
            # 2-D and data files: fit's "density" recipe (ebmppl.recipes); MALA is exact, so the learned
            # density is not sharpened to undo a step-size bias
            "sampler": "langevin" if digits else "mala",
            "step_size": 1.0 if digits else TOY_STEP if toy else recipes.DENSITY_STEP,
            # data files keep the recipe's robust buffer and penalty (modes of any widths); the built-in
            # 2-D densities, whose modes are known, take a longer buffer and a lighter penalty, measured to
            # reach their data's log-likelihood (issue 14, finding 10; alpha 0.1 left 0.33 nats on two moons)
            "buffer_size": 10_000 if digits else TOY_BUFFER if toy else recipes.BUFFER_CAPACITY,
            "alpha": 0.1 if digits else TOY_ALPHA if toy else recipes.DENSITY_ALPHA,
        }
        out = dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})
        if out.noise_scale is None:
            out.noise_scale = 0.01 if digits else math.sqrt(2 * out.step_size)
        for name in ("steps", "batch_size", "mcmc_steps", "buffer_size"):
            if getattr(out, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(out, name)}.")
        for name in ("step_size", "noise_scale", "lr"):
            if not getattr(out, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(out, name)}.")
        if not 0 <= out.reinit_prob <= 1:
            raise ValueError(f"reinit_prob must be in [0, 1], got {out.reinit_prob}.")
        out.widths = tuple(int(w) for w in out.widths)
        return out


DATA_SUFFIXES = (".npy", ".npz", ".csv")


def load_data_file(spec: str | os.PathLike) -> np.ndarray:
    """Examples ``(n, d)`` (float32) from a ``.npy``, ``.npz`` or ``.csv`` file: what ``ebmppl fit --data`` reads.

    Parameters
    ----------
    spec
        ``file.npy`` (one array); ``file.npz`` holding one array, or
        ``file.npz:NAME`` to pick the array ``NAME``; ``file.csv`` of numbers,
        comma-, semicolon- or tab-separated, with or without a header row
        (detected: a first row that is not all numbers is a header). An array
        of shape ``(n,)`` is read as ``n`` examples of dimension 1.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        An unknown suffix; an ``.npz`` with several arrays and no ``:NAME``
        (the message lists them) or without ``NAME``; a non-numeric array or
        CSV cell (named by line and column); an array of more than 2
        dimensions; fewer than 10 examples; NaN or infinite values.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "points.csv").write_text("height,weight\\n1.70,65\\n1.82,80\\n" + "1.6,55\\n" * 10)
    >>> load_data_file(folder / "points.csv").shape
    (12, 2)
    >>> np.savez(folder / "two.npz", a=np.zeros((20, 3)), b=np.ones(20))
    >>> load_data_file(f"{folder}/two.npz:b").shape
    (20, 1)
    >>> load_data_file(folder / "two.npz")
    Traceback (most recent call last):
    ...
    ValueError: ...two.npz holds 2 arrays (a, b); say which one with ...two.npz:NAME, e.g. ...two.npz:a.
    """
    return _read_data(spec)[0]


def _read_data(spec: str | os.PathLike) -> tuple[np.ndarray, list[str] | None]:
    """(examples (n, d) float32, column names of a CSV header or None)."""
    text = os.fspath(spec)
    path, key = pathlib.Path(text), None
    if not path.exists() and ":" in text:
        head, _, tail = text.rpartition(":")
        if head.lower().endswith(".npz") and tail:
            path, key = pathlib.Path(head), tail
    if not path.is_file():
        raise FileNotFoundError(f"data file {text!r} not found; pass a .npy, .npz (optionally file.npz:NAME) or "
                                ".csv file of examples, one per row.")
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(f"data file {path} has suffix {suffix!r}; ebmppl reads {', '.join(DATA_SUFFIXES)} "
                         "(save your array with numpy.save or as a CSV of numbers).")
    stat = path.stat()
    x, names = _read_data_cached(str(path.resolve()), key, stat.st_mtime_ns, stat.st_size)
    return x.copy(), names


@functools.lru_cache(maxsize=4)
def _read_data_cached(path_text: str, key: str | None, mtime_ns: int, size: int):
    path = pathlib.Path(path_text)
    names = None
    try:
        if path.suffix.lower() == ".csv":
            x, names = _read_csv(path)
        elif path.suffix.lower() == ".npy":
            x = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                files = list(npz.files)
                if key is None:
                    if len(files) != 1:
                        raise ValueError(f"{path} holds {len(files)} arrays ({', '.join(files)}); say which one with "
                                         f"{path}:NAME, e.g. {path}:{files[0] if files else 'x'}.")
                    key = files[0]
                elif key not in files:
                    raise ValueError(f"{path} holds no array {key!r}; it holds {', '.join(files) or 'none'}.")
                x = npz[key]
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickle" in str(err).lower():
            raise ValueError(f"{path} holds Python objects (a pickled array), not numbers; save a numeric array "
                             "(numpy.save(path, np.asarray(x, dtype=float))).") from None
        raise
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} cannot be read as a {path.suffix} file ({err}).") from None
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
        raise ValueError(f"{path}: the examples must be real numbers, got an array of dtype {x.dtype}.")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{path}: expected examples of shape (n, d), one example per row, got shape {x.shape}; "
                         "reshape it, e.g. x.reshape(len(x), -1).")
    if x.shape[0] < 10 or x.shape[1] < 1:
        raise ValueError(f"{path}: need at least 10 examples (rows) and 1 column, got shape {x.shape}.")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{path}: {bad.sum()} examples hold NaN or infinite values (rows "
                         f"{', '.join(str(r) for r in rows[:5])}{', ...' if len(rows) > 5 else ''}, counting from 0); "
                         "remove or impute them.")
    if not (np.abs(x) < 1e30).all():
        raise ValueError(f"{path}: values beyond 1e30 overflow float32 arithmetic; rescale the data.")
    return x, names


def _read_csv(path: pathlib.Path) -> tuple[np.ndarray, list[str] | None]:
    import csv

    text = path.read_text(encoding="utf-8-sig")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    rows = [(i + 1, row) for i, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter))
            if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path} holds no rows.")

    def numbers(row):
        try:
            return [float(cell) for cell in row]
        except ValueError:
            return None

    names = None
    if numbers(rows[0][1]) is None:  # a first row that is not all numbers is a header
        names = [cell.strip() for cell in rows[0][1]]
        rows = rows[1:]
    width = len(names) if names is not None else (len(rows[0][1]) if rows else 0)
    values = []
    for line, row in rows:
        if len(row) != width:
            raise ValueError(f"{path}, line {line}: {len(row)} values, but {'the header has' if names else 'line 1 has'} "
                             f"{width}; every row must have the same columns.")
        parsed = numbers(row)
        if parsed is None:
            col = next(j for j, cell in enumerate(row) if numbers([cell]) is None)
            raise ValueError(f"{path}, line {line}, column {col + 1}"
                             f"{f' ({names[col]})' if names else ''}: {row[col]!r} is not a number; "
                             "the CSV must hold numbers only (one header row allowed).")
        values.append(parsed)
    return np.asarray(values, dtype=np.float64).reshape(len(values), width), names


def _data_split(cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """The data file's (train, test) rows in the data's units: a permutation seeded by ``cfg.seed``."""
    if not 0 < cfg.test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {cfg.test_fraction}.")
    x = load_data_file(cfg.data)
    n = x.shape[0]
    n_test = min(max(2, round(cfg.test_fraction * n)), n - 2)
    perm = np.random.default_rng(cfg.seed).permutation(n)
    return x[perm[n_test:]], x[perm[:n_test]]


def _load(cfg: FitConfig):
    """(train, test, limits or None, ToyDensity or None); a data file's rows in the data's own units."""
    if cfg.data is not None:
        train, test = _data_split(cfg)
        constant = np.flatnonzero(~(train.astype(np.float64).std(axis=0) > 0))
        if constant.size:
            raise ValueError(f"{cfg.data}: column(s) {', '.join(str(c) for c in constant)} (counting from 0) take one "
                             "value in the training split; a constant column has no density. Drop it.")
        return jnp.asarray(train, jnp.float32), jnp.asarray(test, jnp.float32), None, None
    if cfg.dataset == "digits":
        train, _ = load_digits("train", seed=cfg.seed)
        test, _ = load_digits("test", seed=cfg.seed)
        return jnp.asarray(train), jnp.asarray(test), None, None
    density = toy(cfg.dataset)
    k_train, k_test = jax.random.split(jax.random.key(10_000 + cfg.seed))
    return density.sample(k_train, 10_000), density.sample(k_test, 5_000), density.limits, density


def _build_energy(cfg: FitConfig, train: jax.Array, legacy: bool = False) -> Energy:
    """The network as the user gives it to :func:`ebmppl.fit` (the ``"density"`` recipe adds the rest).

    ``legacy``: the 2-D network of run folders written before ebmppl recorded the energy in its
    checkpoints (trained in data units with its own Gaussian base term), to load those.
    """
    event_shape = tuple(train.shape[1:])
    if legacy and cfg.data is None and cfg.dataset != "digits":
        spread = 3.0 * float(jnp.max(jnp.std(train, axis=0)))
        center = [float(c) for c in jnp.mean(train, axis=0)]
        net = MLPEnergy(2, cfg.widths, base_scale=spread, base_center=center, key=jax.random.key(cfg.seed))
    else:  # digits: pixels clamped to [-1, 1]; else the recipe's confinement keeps exp(-E) normalisable
        net = MLPEnergy(math.prod(event_shape), cfg.widths, key=jax.random.key(cfg.seed))
    return Energy.from_equinox(net, event_shape=event_shape)


def load_run_energy(run_dir: str | os.PathLike) -> tuple[Energy, FitConfig]:
    """The trained energy of a run folder written by :func:`fit_run` (``ebmppl fit``), and its config.

    The energy is the one :func:`ebmppl.fit` returned, read from the
    checkpoint's energy description: for 2-D data and data files (``ebmppl
    fit --data``) a :class:`ebmppl.recipes.Standardized` energy in the data's
    own units (standardisation, confinement and log-Jacobian included), so its
    samples are in the units of the file and no data file is read. Run
    folders written before checkpoints described their energy are rebuilt
    from ``config.json``.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` has no ``config.json``.
    CheckpointError
        The checkpoint is missing, damaged, or does not match the config.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> _ = fit_run(FitConfig(steps=20, out=out), progress_bar=False)
    >>> energy, cfg = load_run_energy(out)
    >>> energy.event_shape, cfg.steps
    ((2,), 20)
    """
    from ebmppl.checkpoint import load_checkpoint, read_metadata
    from ebmppl.io import load

    run = pathlib.Path(run_dir)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.json); pass the --out folder of 'ebmppl fit'.")
    try:
        raw = json.loads((run / "config.json").read_text())
        cfg = FitConfig(**{k: tuple(v) if k == "widths" and v is not None else v for k, v in raw.items()}).resolved()
    except (TypeError, ValueError, AttributeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{run}/config.json is not a valid ebmppl run configuration ({err}); "
                         "pass a folder written by 'ebmppl fit'.") from None
    ckpt = run / CHECKPOINT_NAME
    described = ckpt.is_file() and (read_metadata(ckpt).get("energy") or {}).get("architecture") is not None
    if described or cfg.data is not None:
        return load(ckpt), cfg  # the energy fit returned, in the data's units
    train, _, _, _ = _load(cfg)  # an older run folder: rebuild its network and read the parameters
    energy = _build_energy(cfg, train, legacy=True)
    state, _ = load_checkpoint(ckpt, _state_template(cfg, energy))
    return energy.with_params(state.params), cfg


def load_trained_energy(path: str | os.PathLike) -> tuple[Energy, FitConfig | None]:
    """A trained energy from a run folder of ``ebmppl fit`` (with its config) or a file of :func:`ebmppl.save` (config ``None``).

    What ``ebmppl sample --run`` and ``ebmppl compare --checkpoint`` read. A
    folder holding ``config.json`` is read by :func:`load_run_energy` (an
    energy in the data's units for a run on a data file); anything else by
    :func:`ebmppl.load` (a saved file, a ``fit(checkpoint_dir=...)`` folder or
    its ``checkpoint.ebm``).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    CheckpointError
        The file is damaged, of another format, or holds parameters only.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import ebmppl
    >>> from ebmppl.targets import banana
    >>> path = ebmppl.save(pathlib.Path(tempfile.mkdtemp()) / "banana.ebm", banana().energy)
    >>> energy, cfg = load_trained_energy(path)
    >>> energy.event_shape, cfg
    ((2,), None)
    """
    from ebmppl.io import load

    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a run folder of 'ebmppl fit' (its --out) or a file "
                                "written by ebmppl.save.")
    if path.is_dir() and (path / "config.json").is_file():
        return load_run_energy(path)
    return load(path), None


def _state_template(cfg: FitConfig, energy: Energy):
    from ebmppl.objectives import contrastive_divergence

    chain_init = {"replay_buffer": lambda: buffers.replay_buffer(cfg.buffer_size, cfg.reinit_prob),
                  "short_run": buffers.short_run, "cd_k": buffers.cd_k}[cfg.init]()
    trainer = contrastive_divergence(energy, _optimizer(cfg), sampler=_sampler(cfg, cfg.dataset == "digits"),
                                     chain_init=chain_init, num_mcmc_steps=cfg.mcmc_steps, alpha=cfg.alpha)
    return trainer.init(jax.random.key(0), energy.params)


def compare_run(target: str | None, sampler_names: list[str], *, out: str, chains: int = 4, warmup: int = 1000,
                samples: int = 1000, seed: int = 0, checkpoint: str | None = None,
                progress_bar: bool = True) -> Any:
    """Compare samplers on a built-in target or a trained run and write table, figures and a page to ``out``.

    Examples
    --------
    >>> import os, tempfile
    >>> out = tempfile.mkdtemp()
    >>> result = compare_run("gaussian", ["mala"], out=out, warmup=100, samples=100, progress_bar=False)
    >>> sorted(f for f in os.listdir(out) if f.endswith((".csv", ".html")))
    ['comparison.csv', 'report.html']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebmppl import diagnostics
    from ebmppl.targets import TARGETS

    if checkpoint is not None:
        subject, cfg = load_trained_energy(checkpoint)
        what = "energy" if cfg is None else cfg.dataset if cfg.data is None else pathlib.Path(cfg.data).name
        name = f"trained {what} ({checkpoint})"
    else:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of {', '.join(sorted(TARGETS))}.")
        subject, name = TARGETS[target](), target
    for s in sampler_names:
        if s not in available():
            raise ValueError(f"unknown sampler {s!r}; choose from {', '.join(available())}.")
    comparison = diagnostics.compare(subject, sampler_names, key=jax.random.key(seed), num_chains=chains,
                                     num_warmup=warmup, num_samples=samples, name=name, progress_bar=progress_bar)
    run = pathlib.Path(out)
    run.mkdir(parents=True, exist_ok=True)
    comparison.table.to_csv(run / "comparison.csv", index=False)
    (run / "comparison.md").write_text(comparison.to_markdown())
    fig = diagnostics.plot_comparison(comparison)
    fig.savefig(run / "comparison.png", dpi=100)
    plt.close(fig)
    figures = []
    for label, result in comparison.samples.items():
        if result is None or comparison.energy.dim > 10:
            continue
        idata = result.to_arviz()
        for kind, plot in (("trace", diagnostics.plot_trace), ("rank", diagnostics.plot_rank)):
            axes = plot(idata)
            fig = np.asarray(axes).ravel()[0].figure
            fig.suptitle(f"{label}: {kind}")
            fig.savefig(run / f"{kind}_{label}.png", dpi=80)
            plt.close(fig)
            figures.append(f"{kind}_{label}.png")
    table_html = comparison.table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="—")
    imgs = "".join(f'<figure><img src="{f}" alt="{f}"><figcaption>{f}</figcaption></figure>' for f in figures)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ebmppl compare: {html.escape(name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}th,td{{border:1px solid #ccc;padding:3px 6px}}th{{background:#f4f4f4}}
img{{max-width:100%}}figure{{display:inline-block;width:48%;margin:0.5%}}</style></head><body>
<h1>Samplers on {html.escape(name)}</h1>
<p>{chains} chains, {warmup} warm-up and {samples} kept draws each, same initial positions and keys.
Rows with converged = False failed split R-hat &le; 1.01, ESS &ge; 400, or (where the truth is known:
see the bias_check column) a mean or standard deviation within the stated number of Monte-Carlo standard
errors of it; the flag says which.</p>
{table_html}<h2>Comparison</h2><img src="comparison.png" alt="comparison figure">
<h2>Trace and rank plots</h2>{imgs}</body></html>"""
    (run / "report.html").write_text(page)
    return comparison


def _optimizer(cfg: FitConfig) -> optax.GradientTransformation:
    """Adam (b1 = 0) at ``cfg.lr`` for the first half of the run, then a cosine decay to ``lr / 10``."""
    half = cfg.steps // 2
    schedule = optax.join_schedules(
        [optax.constant_schedule(cfg.lr), optax.cosine_decay_schedule(cfg.lr, max(1, cfg.steps - half), alpha=0.1)],
        [half])
    return optax.adam(schedule, b1=0.0, b2=0.999)


def _sampler(cfg: FitConfig, digits: bool):
    if cfg.sampler == "langevin":
        return langevin(step_size=cfg.step_size, noise_scale=cfg.noise_scale, clamp=(-1.0, 1.0) if digits else None)
    if cfg.sampler == "ula":
        return ula(step_size=cfg.step_size)
    return get_sampler(cfg.sampler, step_size=cfg.step_size)


def _write_json(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def fit_run(cfg: FitConfig, *, resume: bool = False, overwrite: bool = False, progress_bar: bool = True,
            callbacks: Sequence[Callable[..., Any]] = ()) -> dict[str, Any]:
    """Train, evaluate and report into the run folder ``cfg.out``; returns the evaluation dict.

    Training is :func:`ebmppl.fit` with its ``"density"`` recipe (2-D data and
    data files; see :meth:`FitConfig.resolved`) or the digits recipe.
    With ``cfg.data`` (a file, see :func:`load_data_file`) the rows are split
    into training and held-out rows (``cfg.test_fraction``, a permutation
    seeded by ``cfg.seed``); the recipe standardises them with the training
    rows' mean and standard deviation and returns the energy in the data's
    units, and the run is evaluated in those units: held-out log-likelihood
    with log Z by a grid (1-D, 2-D) or
    by AIS (:func:`ebmppl.log_partition`, with its standard error) beyond,
    beside the log-likelihood of a Gaussian fitted to the training rows;
    figures: the learned density in 2-D, marginal and pairwise histograms of
    model samples against held-out data otherwise.

    ``callbacks`` are passed to :func:`ebmppl.fit` (after the training-health monitor).

    Raises
    ------
    FileExistsError
        ``cfg.out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.
    ValueError
        A bad data file (see :func:`load_data_file`), or ``resume`` with a data
        file whose training rows differ from the run's.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> evaluation = fit_run(FitConfig(steps=20, out=out), progress_bar=False)
    >>> evaluation["steps"], "test_log_likelihood" in evaluation
    (20, True)
    >>> fit_run(FitConfig(steps=20, out=out), progress_bar=False)
    Traceback (most recent call last):
    ...
    FileExistsError: ... already holds a run; pass --resume to continue it or --overwrite to replace it.
    """
    cfg = cfg.resolved()
    run = pathlib.Path(cfg.out)
    if (run / CHECKPOINT_NAME).exists() and not (resume or overwrite):
        raise FileExistsError(f"{run} already holds a run; pass --resume to continue it or --overwrite to replace it.")
    digits = cfg.dataset == "digits"
    train, test, limits, density = _load(cfg)
    if resume and not digits:
        _check_same_data(run, cfg, train)
    if overwrite and (run / CHECKPOINT_NAME).exists():
        (run / CHECKPOINT_NAME).unlink()
    run.mkdir(parents=True, exist_ok=True)
    _write_json(run / "config.json", dataclasses.asdict(cfg))

    energy = _build_energy(cfg, train)
    # digits: the pixel range; else fit's "density" recipe, whose chains live in standardised units
    noise = buffers.uniform_noise(-1.0, 1.0) if digits else buffers.uniform_noise(-recipes.NOISE_BOX,
                                                                                  recipes.NOISE_BOX)
    chain_init = {
        "replay_buffer": lambda: buffers.replay_buffer(cfg.buffer_size, cfg.reinit_prob, noise),
        "short_run": lambda: buffers.short_run(noise),
        "cd_k": buffers.cd_k,
    }[cfg.init]()
    health = TrainingHealth(energy if digits else recipes.confined(energy), emit=False)
    result = fit(
        energy, train, key=jax.random.key(cfg.seed + 1), num_steps=cfg.steps, batch_size=cfg.batch_size,
        optimizer=_optimizer(cfg), sampler=_sampler(cfg, digits), chain_init=chain_init,
        num_mcmc_steps=cfg.mcmc_steps, alpha=cfg.alpha, checkpoint_dir=run, resume=resume,
        progress_bar=progress_bar, config=dataclasses.asdict(cfg), callbacks=[health, *callbacks], health=health,
        recipe="none" if digits else "density",
    )
    with open(run / "metrics.jsonl.tmp", "w") as f:
        keys = sorted(result.history)
        for i in range(len(result.history["loss"])):
            f.write(json.dumps({k: result.history[k][i].item() for k in keys}) + "\n")
    os.replace(run / "metrics.jsonl.tmp", run / "metrics.jsonl")

    # the evaluation's own doubts (stuck sampling chains, an untrustworthy log Z) belong in the report:
    # "no warnings" must not be printed over draws the sampler itself disowned
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cfg.data is not None:
            evaluation = _evaluate_file(cfg, result, train, test, run)
        else:
            evaluation = _evaluate(cfg, result, train, test, limits, density, run)
    notes = []
    if evaluation.get("log_z_reliable") is False and not np.isfinite(evaluation.get("log_z", 0.0)):
        notes.append(f"evaluation: no log Z and no held-out log-likelihood: {evaluation['log_z_reason']}")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # still shown on stderr
        if issubclass(w.category, (ChainHealthWarning, LogZWarning)):
            notes.append(f"evaluation: {w.category.__name__}: {w.message}")
    base = evaluation.get("gaussian_log_likelihood")
    if base is not None and evaluation["test_log_likelihood"] + 2 * evaluation.get("test_log_likelihood_se", 0.0) < base:
        notes.append(f"evaluation: the held-out log-likelihood {evaluation['test_log_likelihood']:.3f} is below that of "
                     f"a Gaussian fitted to the training rows ({base:.3f}): the model has not learned the data yet "
                     "(train longer: --steps; or check the health warnings above).")
    evaluation["train_seconds"] = round(result.seconds, 2)
    evaluation["health_warnings"] = [f"step {step}: {msg}" for step, msg in health.warnings] + notes
    _write_json(run / "evaluation.json", evaluation)
    import matplotlib.pyplot as plt

    fig = health.plot()
    fig.savefig(run / "health.png", dpi=110)
    plt.close(fig)
    _report(run, cfg, evaluation)
    return evaluation


def _check_same_data(run: pathlib.Path, cfg: FitConfig, train: jax.Array) -> None:
    """A resumed run must see the same training rows (same file, test fraction and seed): the standardisation
    recorded in its checkpoint's energy must be the one the recipe takes from ``train`` now."""
    from ebmppl.checkpoint import CheckpointError
    from ebmppl.io import load

    try:
        _, shift, scale = recipes.standard_coordinates(load(run / CHECKPOINT_NAME))
    except (OSError, CheckpointError, TypeError):
        return  # nothing to compare against: fit() checks the checkpoint itself
    mean, std = recipes.data_statistics(train)
    same = (shift.shape == mean.shape and np.allclose(shift, mean, rtol=1e-5, atol=1e-6 * std.max())
            and np.allclose(scale, std, rtol=1e-5, atol=0.0))
    if not same:
        raise ValueError(f"{run} was trained on other rows than {cfg.data} gives now (their mean or standard "
                         "deviation differ): resume with the same data file, --test-fraction and --seed, or start "
                         "a new run (another --out, or --overwrite).")


def _gaussian_log_likelihood(train: np.ndarray, test: np.ndarray) -> float:
    """Mean held-out log-likelihood of the Gaussian fitted (maximum likelihood) to ``train``: a baseline."""
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    mean = train.mean(0)
    cov = np.atleast_2d(np.cov(train, rowvar=False, bias=True)) + 1e-9 * np.eye(train.shape[1])
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("nan")
    r = test - mean
    maha = np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r)
    return float(np.mean(-0.5 * (maha + logdet + train.shape[1] * math.log(2 * math.pi))))


def _evaluate_file(cfg: FitConfig, result: FitResult, train: jax.Array, test: jax.Array,
                   run: pathlib.Path) -> dict[str, Any]:
    """Evaluation of a run on a data file; ``train``/``test`` and every reported number in the data's units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebmppl.evaluation import held_out_log_likelihood
    from ebmppl.logz import log_partition
    from ebmppl.plots import plot_density_2d, plot_fit_2d, plot_training_curves

    energy = result.energy  # in the data's units (recipe "density")
    # the energy the recipe trained, on z = (x - shift) / scale: the same normalising constant as `energy`
    # (its log-Jacobian offset cancels the change of variables), and one scale for every coordinate
    z_energy, shift, scale = recipes.standard_coordinates(energy)
    d = int(train.shape[1])
    evaluation: dict[str, Any] = {"dataset": cfg.data, "dim": d, "n_train": int(train.shape[0]),
                                  "n_test": int(test.shape[0]), "steps": int(result.state.step)}
    n = min(2000, test.shape[0])
    samples_x = np.asarray(_model_samples(cfg, result, n))
    test_x = np.asarray(test)
    # MMD in the standardised coordinates: its kernel widths (0.1 to 2) are in units of each coordinate's sd
    train_z, test_z, samples_z = ((jnp.asarray(v) - shift) / scale for v in (train, test, samples_x))
    evaluation["mmd_samples_vs_test"] = mmd(samples_z[:n], test_z[:n])
    evaluation["mmd_train_vs_test"] = mmd(train_z[:n], test_z[:n])  # the noise floor of the MMD estimate
    try:
        if d <= 2:
            low = np.minimum(np.min(train_z, 0), np.min(test_z, 0)) - 1.0
            high = np.maximum(np.max(train_z, 0), np.max(test_z, 0)) + 1.0
            box = [float(v) for i in range(d) for v in (low[i], high[i])]
            log_z, log_z_se = grid_log_partition(z_energy, box, 400 if d == 2 else 4000, outer_scale=10.0), 0.0
            method = "grid (midpoint rule, in standardised units; a 10x wider coarse grid around the data box)"
            verdict = (True, "")
        else:
            chains, temperatures = 256, 1000
            est = log_partition(z_energy, jax.random.key(cfg.seed + 5), num_chains=chains,
                                num_temperatures=temperatures, base_scale=3.0, base_center=0.0)
            log_z, log_z_se = float(est.log_z), float(est.stderr)
            method = f"AIS ({chains} chains, {temperatures} temperatures, Gaussian base sd 3 in standardised units)"
            verdict = (bool(est.reliable), str(est.reason))
    except NotNormalisableError as e:  # no number rather than a truncated one: the report says why
        log_z, log_z_se, method = float("nan"), float("nan"), "not available (the energy failed the normalisability check)"
        verdict = (False, str(e))
    ll, ll_se = (held_out_log_likelihood(energy, test, log_z, log_z_se) if np.isfinite(log_z)
                 else (float("nan"), float("nan")))
    evaluation["log_z"] = log_z
    evaluation["log_z_stderr"] = log_z_se
    evaluation["log_z_method"] = method
    # the estimate's own verdict travels with the number: a report must not print an unreliable log Z plainly
    evaluation["log_z_reliable"], evaluation["log_z_reason"] = verdict
    evaluation["test_log_likelihood"] = ll
    evaluation["test_log_likelihood_se"] = ll_se
    evaluation["gaussian_log_likelihood"] = _gaussian_log_likelihood(train, test)

    _, names = _read_data(cfg.data)
    names = names if names is not None and len(names) == d else [f"x{i}" for i in range(d)]
    if d == 2:
        lo, hi = np.min(test_x, 0), np.max(test_x, 0)
        pad = 0.1 * (hi - lo)
        limits = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
        fig = plot_fit_2d(energy, test_x, samples_x, limits, title=f"{pathlib.Path(cfg.data).name}: held-out data, "
                          "learned density, model samples")
        for ax in fig.axes[:3]:
            ax.set(xlabel=names[0], ylabel=names[1], aspect="auto")
        fig.savefig(run / "density.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
        plot_density_2d(energy, ax, limits)
        ax.scatter(samples_x[:, 0], samples_x[:, 1], s=3, alpha=0.5, color="tab:orange",
                   label=f"{len(samples_x)} model samples")
        ax.set(xlim=limits[:2], ylim=limits[2:], xlabel=names[0], ylabel=names[1],
               title="model samples over the learned density")
        ax.legend(loc="upper right", fontsize=8)
    else:
        density = None
        if d == 1:
            lo, hi = float(min(test_x.min(), samples_x.min())), float(max(test_x.max(), samples_x.max()))
            grid = np.linspace(lo, hi, 400, dtype=np.float32)[:, None]
            density = (grid[:, 0], np.exp(np.asarray(energy.logdensity(jnp.asarray(grid))) - evaluation["log_z"]))
        fig = _plot_pairs(test_x, samples_x, names, density)
    fig.savefig(run / "samples.png", dpi=110)
    plt.close(fig)
    fig = plot_training_curves(result.history)
    fig.savefig(run / "curves.png", dpi=110)
    plt.close(fig)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in evaluation.items()}


def _plot_pairs(data: np.ndarray, samples: np.ndarray, names: list[str], density=None, max_dims: int = 6):
    """Marginal histograms (diagonal) and pairwise scatter (below it) of model samples against held-out data."""
    import matplotlib.pyplot as plt

    k = min(data.shape[1], max_dims)
    size = (2.3 * k + 1.5, 2.3 * k + 0.6) if k > 1 else (6.5, 4.0)
    fig, axes = plt.subplots(k, k, figsize=size, layout="constrained", squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            lo = min(data[:, j].min(), samples[:, j].min())
            hi = max(data[:, j].max(), samples[:, j].max())
            if i == j:
                bins = np.linspace(lo, hi, 40)
                ax.hist(data[:, j], bins=bins, density=True, color="tab:blue", alpha=0.45, label="held-out data")
                ax.hist(samples[:, j], bins=bins, density=True, histtype="step", color="tab:orange", lw=1.5,
                        label="model samples")
                if density is not None:
                    ax.plot(*density, color="k", lw=1, label="learned density")
                ax.set_yticks([])
            else:
                ax.scatter(data[:, j], data[:, i], s=2, alpha=0.3, color="tab:blue")
                ax.scatter(samples[:, j], samples[:, i], s=2, alpha=0.3, color="tab:orange")
                ax.set_ylabel(names[i] if j == 0 else "")
            ax.set_xlabel(names[j] if i == k - 1 else "")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if k > 1:  # the empty upper triangle holds the legend
        fig.legend(handles, labels, loc="upper right", fontsize=9, frameon=False)
    else:
        axes[0, 0].legend(fontsize=8)
    shown = "" if data.shape[1] <= max_dims else f" (first {max_dims} of {data.shape[1]} coordinates)"
    fig.suptitle(f"model samples (orange) against held-out data (blue){shown}")
    return fig


def _model_samples(cfg: FitConfig, result: FitResult, n: int) -> jax.Array:
    """Model samples in the data's units: the persistent negatives, run further with an exact sampler (the
    "density" recipe: in the standardised coordinates the negatives live in) or as they are (digits)."""
    starts = result.state.buffer.samples
    if starts.shape[0] == 0:  # short-run / CD-k keep no buffer: start from the recipe's noise box
        box = 1.0 if cfg.dataset == "digits" else recipes.NOISE_BOX
        starts = jax.random.uniform(jax.random.key(cfg.seed + 3), (n, *result.energy.event_shape), minval=-box,
                                    maxval=box)
    if cfg.dataset == "digits":
        return starts[:n]
    starts = starts[jnp.arange(n) % starts.shape[0]]  # n chains: a buffer smaller than n starts several from a slot
    z_energy, shift, scale = recipes.standard_coordinates(result.energy)
    # the run's own sampler where it is Metropolis-corrected (exact); else exact-rate ULA at the run's step
    exact = get_sampler(cfg.sampler, step_size=cfg.step_size) if cfg.sampler in ("mala", "barker") else ula(step_size=cfg.step_size)
    # 2000 warm-up steps (stalled chains restarted from healthy ones), then 50 draws of which the last is kept:
    # no acceptance in 50 draws means a chain is stuck (with 10, a chain accepting 30 % of proposals in a tail
    # would show none 3 % of the time: false alarms among 2000 chains)
    out = sample(z_energy, jax.random.key(cfg.seed + 2), sampler=exact,
                 num_chains=starts.shape[0], num_warmup=2000, num_samples=50, init=starts, progress_bar=False)
    return jnp.asarray(shift) + jnp.asarray(scale) * out.positions[:, -1]


def _evaluate(cfg, result, train, test, limits, density, run) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebmppl.plots import plot_density_2d, plot_fit_2d, plot_image_grid, plot_training_curves

    evaluation: dict[str, Any] = {"dataset": cfg.dataset, "steps": int(result.state.step)}
    n = min(2000, test.shape[0])
    samples = _model_samples(cfg, result, n)
    evaluation["mmd_samples_vs_test"] = mmd(samples[:n], test[:n])
    evaluation["mmd_train_vs_test"] = mmd(train[:n], test[:n])  # the noise floor of the MMD estimate
    if limits is not None:
        box = (limits[0] - 1, limits[1] + 1, limits[2] - 1, limits[3] + 1)
        log_z = grid_log_partition(result.energy, box, 400, outer_scale=10.0)
        evaluation["log_z"] = log_z
        evaluation["test_log_likelihood"] = float(log_likelihood(result.energy, test, log_z).mean())
        if density is not None and density.log_prob is not None:
            h, se = density.entropy(jax.random.key(cfg.seed + 4))
            evaluation["data_log_likelihood"] = -h  # the best any model can reach: -entropy
            evaluation["data_log_likelihood_se"] = se
            evaluation["gap_nats"] = -h - evaluation["test_log_likelihood"]
        fig = plot_fit_2d(result.energy, np.asarray(test), np.asarray(samples), limits,
                          title=f"{cfg.dataset}: data, learned density, model samples")
        fig.savefig(run / "density.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
        plot_density_2d(result.energy, ax, limits)
        pts = np.asarray(samples)
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color="tab:orange", label=f"{len(pts)} model samples")
        ax.set(xlim=limits[:2], ylim=limits[2:], aspect="equal", title="model samples over the learned density")
        ax.legend(loc="upper right", fontsize=8)
        fig.savefig(run / "samples.png", dpi=110)
        plt.close(fig)
    else:
        fig = plot_image_grid(np.asarray(samples[:64]), title="model samples (persistent negatives)")
        fig.savefig(run / "samples.png", dpi=110)
        plt.close(fig)
        fig = plot_image_grid(np.asarray(test[:64]), title="held-out data")
        fig.savefig(run / "density.png", dpi=110)
        plt.close(fig)
    fig = plot_training_curves(result.history)
    fig.savefig(run / "curves.png", dpi=110)
    plt.close(fig)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in evaluation.items()}


def _report(run: pathlib.Path, cfg: FitConfig, evaluation: dict[str, Any]) -> None:
    def table(d):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in d.items()
                       if k != "health_warnings")
        return f"<table>{rows}</table>"

    notes = evaluation.get("health_warnings", [])
    health = ("<p>No warnings: energies bounded, chains mixing, acceptance in band; evaluation chains healthy.</p>"
              if not notes else
              "<ul class=warn>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")

    left = "data, learned density, samples" if cfg.dataset != "digits" else "held-out data"
    name, about, samples_title = cfg.dataset, "", "Model samples"
    density_section = f'<h2>{left}</h2><img src="density.png" alt="{left}">'
    if cfg.data is not None:  # your own data: say what was measured, and how
        name = pathlib.Path(cfg.data).name  # file.npz:NAME keeps its NAME
        about = (f"<p>{evaluation.get('n_train')} training and {evaluation.get('n_test')} held-out rows of "
                 f"<code>{html.escape(cfg.data)}</code> ({evaluation.get('dim')} coordinates), standardised for "
                 "training; every figure and log-likelihood is in the data's own units. log Z by "
                 f"{html.escape(str(evaluation.get('log_z_method')))}; gaussian_log_likelihood is the held-out "
                 "log-likelihood of a Gaussian fitted to the training rows, a baseline to beat.</p>")
        if evaluation.get("dim") != 2:
            density_section = ""
            samples_title = "Model samples against held-out data: marginal histograms and pairwise scatter"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ebmppl fit: {html.escape(name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:0 2em 1em 0;display:inline-table;vertical-align:top}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}th{{background:#f4f4f4}}
img{{max-width:100%;border:1px solid #eee;margin:0.5em 0}}.warn{{color:#a40}}</style></head><body>
<h1>ebmppl fit — {html.escape(name)}</h1>{about}
<h2>Evaluation</h2>{table(evaluation)}<h2>Configuration</h2>{table(dataclasses.asdict(cfg))}
{density_section}
<h2>{samples_title}</h2><img src="samples.png" alt="model samples">
<h2>Training curves</h2><img src="curves.png" alt="training curves">
<h2>Training health</h2>{health}<img src="health.png" alt="training health">
</body></html>
"""
    tmp = run / ".report.html.tmp"
    tmp.write_text(page)
    os.replace(tmp, run / "report.html")
