"""Old argument names that keep working for one release, with a warning that names the new one.

Every rename of the API-conventions table (``docs/guide/conventions.md``) goes
through :func:`renamed`, so the warning reads the same everywhere and the
list of old names to delete next release is ``grep renamed(``.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["EbmpplDeprecationWarning", "renamed", "moved", "UNSET"]


class EbmpplDeprecationWarning(DeprecationWarning):
    """An old ebmppl name was used; it works for one more release. The message names the new one.

    Examples
    --------
    >>> issubclass(EbmpplDeprecationWarning, DeprecationWarning)
    True
    """


class _Unset:
    """Marks an argument the caller did not pass (``None`` can be a meaningful value)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


def renamed(where: str, old: str, old_value: Any, new: str, new_value: Any, default: Any = None,
            *, stacklevel: int = 3) -> Any:
    """The value of argument ``new``, taking it from the deprecated ``old`` when only that was passed.

    Declare the old name as a keyword-only parameter defaulting to
    :data:`UNSET`; declare the new one with default :data:`UNSET` too when
    its real default must be told apart from "not passed" (then give the
    real default as ``default``).

    Raises
    ------
    TypeError
        Both names were passed.

    Examples
    --------
    >>> import warnings
    >>> def f(*, num_mcmc_steps=UNSET, num_steps=UNSET):
    ...     return renamed("f", "num_steps", num_steps, "num_mcmc_steps", num_mcmc_steps, default=20)
    >>> f(), f(num_mcmc_steps=5)
    (20, 5)
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     f(num_steps=7), str(w[0].message)
    (7, 'f: num_steps= is deprecated; use num_mcmc_steps= (same meaning). The old name will be removed in the next release.')
    >>> f(num_steps=1, num_mcmc_steps=2)
    Traceback (most recent call last):
    ...
    TypeError: f: pass num_mcmc_steps= only (num_steps= is its deprecated name), not both.
    """
    if old_value is UNSET:
        return default if new_value is UNSET else new_value
    if new_value is not UNSET:
        raise TypeError(f"{where}: pass {new}= only ({old}= is its deprecated name), not both.")
    warnings.warn(
        f"{where}: {old}= is deprecated; use {new}= (same meaning). The old name will be removed in the next release.",
        EbmpplDeprecationWarning, stacklevel=stacklevel,
    )
    return old_value


def moved(where: str, old_form: str, new_form: str, *, stacklevel: int = 3) -> None:
    """Warn that an old call form (an argument moved, e.g. the key to 2nd position) is deprecated.

    For renames use :func:`renamed`; this is for the argument ORDER of the
    API-conventions table (the random key is the 2nd positional argument of
    every random entry point): the caller detects the old form, calls
    :func:`moved`, and goes on with the arguments in their new places.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     moved("fit", "fit(energy, data, key=key)", "fit(energy, key, data)")
    >>> str(w[0].message)
    'fit: the call fit(energy, data, key=key) is deprecated; write fit(energy, key, data) (the random key is the 2nd positional argument of every random entry point). The old form will be removed in the next release.'
    """
    warnings.warn(
        f"{where}: the call {old_form} is deprecated; write {new_form} (the random key is the 2nd positional argument "
        "of every random entry point). The old form will be removed in the next release.",
        EbmpplDeprecationWarning, stacklevel=stacklevel,
    )
