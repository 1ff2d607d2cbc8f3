"""The data of a run: your own file (``ebmppl fit --data``), the built-in 2-D densities, digits; split and checked."""

from __future__ import annotations

import functools
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.data import load_digits, toy
from ebmppl.runs.config import FitConfig

__all__ = ["load_data_file", "read_data", "load_split", "DATA_SUFFIXES"]

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
    return read_data(spec)[0]


def read_data(spec: str | os.PathLike) -> tuple[np.ndarray, list[str] | None]:
    """What :func:`load_data_file` reads, with the column names of a CSV header (``None`` without one).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "points.csv"
    >>> _ = path.write_text("a,b\\n" + "1,2\\n" * 10)
    >>> x, names = read_data(path)
    >>> x.shape, names
    ((10, 2), ['a', 'b'])
    """
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


def load_split(cfg: FitConfig):
    """(train, test, limits or None, ToyDensity or None) of a run; a data file's rows in the data's own units.

    A data file (``cfg.data``) is split by a permutation seeded by ``cfg.seed``
    (``cfg.test_fraction`` held out); a built-in 2-D density gives 10 000
    training and 5 000 held-out draws; digits its train and test split.

    Raises
    ------
    ValueError
        A bad data file, a ``test_fraction`` outside (0, 1), or a column that is constant in the training rows.

    Examples
    --------
    >>> train, test, limits, density = load_split(FitConfig(dataset="two_moons"))
    >>> train.shape, test.shape, density is not None
    ((10000, 2), (5000, 2), True)
    """
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
