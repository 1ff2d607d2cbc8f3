"""The options of a run (:class:`FitConfig`), the built-in datasets and their measured defaults."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any

from ebmppl import buffer as buffers
from ebmppl import recipes
from ebmppl._deprecation import UNSET, renamed
from ebmppl.data import TOY_DENSITIES
from ebmppl.samplers import available

__all__ = ["FitConfig", "DATASETS", "FILE_DATASET", "TOY_STEPS", "TOY_BUFFER", "TOY_ALPHA", "TOY_STEP",
           "TOY_MCMC_STEPS", "read_config"]

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
FILE_DATASET = "file"
"""``FitConfig.dataset`` of a run on a data file (``FitConfig.data``)."""


@dataclasses.dataclass
class FitConfig:
    """Options of a training run; ``None`` means the dataset's default (see :func:`FitConfig.resolved`).

    ``num_mcmc_steps`` is the number of sampler steps per training step,
    ``init_strategy`` where the negative chains start (one of
    :data:`ebmppl.buffer.STRATEGIES`) and ``sampler_params`` a dict of the
    sampler's kernel parameters overriding its defaults (e.g.
    ``{"step_size": 0.05}``; it wins over ``step_size``). ``mcmc_steps=``
    and ``init=`` are their deprecated names (keyword-only), still read from
    the ``config.json`` of older run folders, with a warning.

    Examples
    --------
    >>> cfg = FitConfig(dataset="eight_gaussians", steps=100).resolved()
    >>> cfg.dataset, cfg.steps, cfg.widths, cfg.num_mcmc_steps
    ('eight_gaussians', 100, (128, 128, 128), 16)
    """

    dataset: str = "two_moons"
    widths: tuple[int, ...] | None = None
    sampler: str | None = None
    init_strategy: str = "replay_buffer"
    steps: int | None = None
    batch_size: int = 128
    num_mcmc_steps: int | None = None
    step_size: float | None = None
    noise_scale: float | None = None
    lr: float = 1e-3
    alpha: float | None = None
    buffer_size: int | None = None
    reinit_prob: float = 0.05
    seed: int = 0
    out: str = "runs/fit"
    # your own data: a file (see ebmppl.runs.load_data_file); ``dataset`` then reads "file"
    data: str | None = None
    test_fraction: float = 0.2
    # the sampler's kernel parameters (last: the fields before keep their positions)
    sampler_params: dict[str, Any] | None = None
    _: dataclasses.KW_ONLY
    # deprecated names, for one release (also read from the config.json of older run folders)
    mcmc_steps: dataclasses.InitVar[int | None] = UNSET
    init: dataclasses.InitVar[str] = UNSET

    def __post_init__(self, mcmc_steps: Any = UNSET, init: Any = UNSET):
        # the new names' defaults (None; "replay_buffer") stand for "not given": only another value counts as both
        new = UNSET if self.num_mcmc_steps is None else self.num_mcmc_steps
        self.num_mcmc_steps = renamed("FitConfig", "mcmc_steps", mcmc_steps, "num_mcmc_steps", new, stacklevel=4)
        new = UNSET if self.init_strategy == "replay_buffer" else self.init_strategy
        self.init_strategy = renamed("FitConfig", "init", init, "init_strategy", new, default="replay_buffer",
                                     stacklevel=4)
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

        Raises
        ------
        ValueError
            An unknown dataset, sampler or ``init_strategy``; a count below 1;
            a step size, noise scale or learning rate not > 0; ``reinit_prob``
            outside [0, 1]. The message names the option.

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
        if self.init_strategy not in buffers.STRATEGIES:
            raise ValueError(f"unknown init_strategy {self.init_strategy!r}; choose one of "
                             f"{', '.join(sorted(buffers.STRATEGIES))}.")
        digits, toy = self.dataset == "digits", self.data is None and self.dataset != "digits"
        defaults = {
            "widths": (256, 256) if digits else (128, 128, 128),
            "steps": 2000 if digits else TOY_STEPS if toy else 5000,
            "num_mcmc_steps": TOY_MCMC_STEPS if toy else 20,
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
        for name in ("steps", "batch_size", "num_mcmc_steps", "buffer_size"):
            if getattr(out, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(out, name)}.")
        for name in ("step_size", "noise_scale", "lr"):
            if not getattr(out, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(out, name)}.")
        if out.sampler_params is not None and not (isinstance(out.sampler_params, dict)
                                                   and all(isinstance(k, str) for k in out.sampler_params)):
            raise ValueError(f"sampler_params must be a dict of kernel parameters such as {{'step_size': 0.05}} or "
                             f"None, got {out.sampler_params!r}.")
        if not 0 <= out.reinit_prob <= 1:
            raise ValueError(f"reinit_prob must be in [0, 1], got {out.reinit_prob}.")
        out.widths = tuple(int(w) for w in out.widths)
        return out

    def to_json(self) -> dict[str, Any]:
        """The options as a JSON-ready dict: what a run folder's ``config.json`` holds.

        Examples
        --------
        >>> FitConfig(steps=10).to_json()["num_mcmc_steps"] is None
        True
        """
        return dataclasses.asdict(self)


def read_config(run: str | os.PathLike) -> FitConfig:
    """The resolved :class:`FitConfig` of a run folder, read from its ``config.json``.

    A ``config.json`` written before ``mcmc_steps`` and ``init`` were renamed
    ``num_mcmc_steps`` and ``init_strategy`` is read too, with a deprecation warning.

    Raises
    ------
    FileNotFoundError
        ``run`` has no ``config.json``.
    ValueError
        ``config.json`` is not JSON or not a valid configuration.

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (run / "config.json").write_text(json.dumps({"dataset": "two_moons", "steps": 10}))
    >>> read_config(run).num_mcmc_steps
    16
    """
    run = pathlib.Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.json); pass the --out folder of 'ebmppl fit'.")
    try:
        raw = json.loads((run / "config.json").read_text())
        return FitConfig(**{k: tuple(v) if k == "widths" and v is not None else v for k, v in raw.items()}).resolved()
    except (TypeError, ValueError, AttributeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{run}/config.json is not a valid ebmppl run configuration ({err}); "
                         "pass a folder written by 'ebmppl fit'.") from None
