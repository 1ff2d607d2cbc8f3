"""The 8x8 handwritten digits that ship with scikit-learn (no download)."""

from __future__ import annotations

import numpy as np

__all__ = ["load_digits"]


def load_digits(split: str = "all", test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scikit-learn digits as images ``(n, 1, 8, 8)`` scaled to ``[-1, 1]``, with labels.

    Parameters
    ----------
    split
        ``"all"``, ``"train"`` or ``"test"`` (a fixed, stratified-by-shuffle split).
    test_fraction
        Fraction held out for ``"test"``.
    seed
        Seed of the split's permutation.

    Raises
    ------
    ImportError
        scikit-learn is missing: ``pip install "ebmppl[test]"`` or ``pip install scikit-learn``.

    Examples
    --------
    >>> x, y = load_digits("train")
    >>> x.shape[1:], float(x.min()), float(x.max())
    ((1, 8, 8), -1.0, 1.0)
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    try:
        from sklearn.datasets import load_digits as _sk_load
    except ImportError as err:  # optional dependency
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn") from err
    bunch = _sk_load()
    images = (bunch.images.astype(np.float32) / 8.0 - 1.0)[:, None]  # [0, 16] -> [-1, 1]
    labels = bunch.target.astype(np.int32)
    if split == "all":
        return images, labels
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    idx = order[:n_test] if split == "test" else order[n_test:]
    return images[idx], labels[idx]
