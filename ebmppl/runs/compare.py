"""The run pipeline of ``ebmppl compare``: samplers on a target or a trained energy → table, figures, report."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from ebmppl._deprecation import UNSET, renamed
from ebmppl.compare import Comparison, compare
from ebmppl.distributed import is_primary, on_primary
from ebmppl.runs.folders import load_trained_energy
from ebmppl.runs.report import compare_report, write_text
from ebmppl.samplers import available

__all__ = ["compare_run"]


def compare_run(target: str | None, sampler_names: list[str], *, out: str, num_chains: int = UNSET,
                num_warmup: int = UNSET, num_samples: int = UNSET, seed: int = 0, checkpoint: str | None = None,
                progress_bar: bool = True, chains: int = UNSET, warmup: int = UNSET,
                samples: int = UNSET) -> Comparison:
    """Compare samplers on a built-in target or a trained run and write table, figures and a page to ``out``.

    Parameters
    ----------
    target
        A name of :data:`ebmppl.targets.TARGETS`; ignored when ``checkpoint`` is given.
    sampler_names
        Names of :func:`ebmppl.samplers.available` samplers.
    out
        The output folder: ``comparison.csv``, ``comparison.md``,
        ``comparison.png``, trace and rank plots (up to 10 dimensions) and
        ``report.html``.
    num_chains, num_warmup, num_samples
        Chains per sampler (default 4), warm-up steps (default 1000) and kept
        draws (default 1000) per chain. ``chains=``, ``warmup=`` and
        ``samples=`` are their deprecated names.
    seed
        Seed of the initial positions and the chains (the same for every sampler).
    checkpoint
        A trained energy to compare on instead of ``target``: a run folder of
        ``ebmppl fit`` or a file of :func:`ebmppl.save`.
    progress_bar
        Show progress bars.

    Returns
    -------
    Comparison
        What :func:`ebmppl.compare` returned.

    Raises
    ------
    ValueError
        An unknown target or sampler name.

    Examples
    --------
    >>> import os, tempfile
    >>> out = tempfile.mkdtemp()
    >>> result = compare_run("gaussian", ["mala"], out=out, num_warmup=100, num_samples=100, progress_bar=False)
    >>> sorted(f for f in os.listdir(out) if f.endswith((".csv", ".html")))
    ['comparison.csv', 'report.html']
    """
    num_chains = renamed("compare_run", "chains", chains, "num_chains", num_chains, default=4)
    num_warmup = renamed("compare_run", "warmup", warmup, "num_warmup", num_warmup, default=1000)
    num_samples = renamed("compare_run", "samples", samples, "num_samples", num_samples, default=1000)
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
    comparison = compare(subject, jax.random.key(seed), sampler_names, num_chains=num_chains, num_warmup=num_warmup,
                         num_samples=num_samples, name=name, progress_bar=progress_bar)
    run = pathlib.Path(out)
    primary = is_primary()  # under jax.distributed every process compares, process 0 alone writes
    on_primary(run.mkdir, parents=True, exist_ok=True)
    if primary:
        comparison.table.to_csv(run / "comparison.csv", index=False)
    write_text(run / "comparison.md", comparison.to_markdown())
    fig = diagnostics.plot_comparison(comparison)
    if primary:
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
            if primary:
                fig.savefig(run / f"{kind}_{label}.png", dpi=80)
            plt.close(fig)
            figures.append(f"{kind}_{label}.png")
    write_text(run / "report.html", compare_report(name, comparison, figures, num_chains=num_chains,
                                                   num_warmup=num_warmup, num_samples=num_samples))
    return comparison
