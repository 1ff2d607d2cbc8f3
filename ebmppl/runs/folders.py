"""Reading run folders back: the trained energy and configuration of ``ebmppl fit``'s ``--out`` folder."""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np

from ebmppl import recipes
from ebmppl.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, read_metadata
from ebmppl.energy import Energy
from ebmppl.io import load
from ebmppl.runs.config import FitConfig, read_config
from ebmppl.runs.data import load_split
from ebmppl.runs.training import build_energy, state_template

__all__ = ["load_run_energy", "load_trained_energy", "check_same_data"]


def load_run_energy(run_dir: str | os.PathLike) -> tuple[Energy, FitConfig]:
    """The trained energy of a run folder written by :func:`~ebmppl.runs.fit_run` (``ebmppl fit``), and its config.

    The energy is the one :func:`ebmppl.fit` returned, read from the
    checkpoint's energy description: for 2-D data and data files (``ebmppl
    fit --data``) a :class:`ebmppl.recipes.Standardized` energy in the data's
    own units (standardisation, confinement and log-Jacobian included), so its
    samples are in the units of the file and no data file is read. Run
    folders written before checkpoints described their energy are rebuilt
    from ``config.json`` (which :func:`ebmppl.load` does not do: it points
    here). A ``config.json`` with the old key ``mcmc_steps`` is read with a
    deprecation warning.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` has no ``config.json``.
    ValueError
        ``config.json`` is not a valid run configuration.
    CheckpointError
        The checkpoint is missing, damaged, or does not match the config.

    Examples
    --------
    A (very short) run on a one-column data file; the energy comes back in the file's units:

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from ebmppl.runs import FitConfig, fit_run
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> rows = np.random.default_rng(0).normal(170.0, 8.0, 300).round(1)
    >>> _ = (run / "heights.csv").write_text("height\\n" + "\\n".join(map(str, rows)))
    >>> cfg = FitConfig(data=str(run / "heights.csv"), steps=5, widths=(8,), out=str(run))
    >>> _ = fit_run(cfg, progress_bar=False)
    >>> energy, cfg = load_run_energy(run)
    >>> energy.event_shape, cfg.steps, cfg.dataset
    ((1,), 5, 'file')
    >>> center, spread = energy.typical_region()   # the training rows' mean and sd, in cm
    >>> bool(165 < center[0] < 175 and 5 < spread[0] < 11)
    True
    """
    run = pathlib.Path(run_dir)
    cfg = read_config(run)
    ckpt = run / CHECKPOINT_NAME
    described = ckpt.is_file() and (read_metadata(ckpt).get("energy") or {}).get("architecture") is not None
    if described or cfg.data is not None:
        return load(ckpt), cfg  # the energy fit returned, in the data's units
    train, _, _, _ = load_split(cfg)  # an older run folder: rebuild its network and read the parameters
    energy = build_energy(cfg, train, legacy=True)
    state, _ = load_checkpoint(ckpt, state_template(cfg, energy))
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
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a run folder of 'ebmppl fit' (its --out) or a file "
                                "written by ebmppl.save.")
    if path.is_dir() and (path / "config.json").is_file():
        return load_run_energy(path)
    return load(path), None


def check_same_data(run: pathlib.Path, cfg: FitConfig, train: jax.Array) -> None:
    """Refuse to resume ``run`` on other training rows than it was trained on.

    A resumed run must see the same training rows (same file, test fraction
    and seed): the standardisation recorded in its checkpoint's energy must be
    the one the ``"density"`` recipe takes from ``train`` now. Nothing to
    compare against (no or an older checkpoint): :func:`ebmppl.fit` checks
    the checkpoint itself.

    Raises
    ------
    ValueError
        The checkpoint's standardisation differs from ``train``'s mean or standard deviation.

    Examples
    --------
    >>> import pathlib, tempfile, jax.numpy as jnp
    >>> check_same_data(pathlib.Path(tempfile.mkdtemp()), FitConfig(), jnp.zeros((10, 2)))  # no checkpoint: passes
    """
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
