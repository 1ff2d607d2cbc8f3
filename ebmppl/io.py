"""Save and load trained energies: one checksummed file, no code executed on load.

:func:`save` writes an :class:`~ebmppl.Energy` to one file: a JSON header
(event shape, temperature, the names and shapes of the parameters and, where
ebmppl can describe it, the *architecture*) and an ``.npz`` payload with the
parameters, in the atomic, checksummed container of :mod:`ebmppl.checkpoint`.
:func:`load` reads it back in a fresh process::

    ebmppl.save("moons.ebm", result.energy)     # after ebmppl.fit(...)
    energy = ebmppl.load("moons.ebm")           # anywhere: nothing to rebuild

The architecture is recorded for

* the built-in networks of :mod:`ebmppl.nn` (``MLPEnergy``, ``ConvEnergy``)
  wrapped by :meth:`Energy.from_equinox <ebmppl.Energy.from_equinox>`
  (their constructor arguments, as JSON);
* compositions of :mod:`ebmppl.compose` (``product``, ``weighted_sum``,
  ``mixture``, ``negation``, ``condition``) whose parts are describable;
* the analytic targets of :mod:`ebmppl.targets`;
* the standardised energies :func:`ebmppl.fit` returns under its ``"density"``
  recipe (:class:`ebmppl.recipes.Standardized`) around any of the above;
* noise-conditional energies built by :func:`ebmppl.noise.noise_conditional_mlp`
  (all levels: the ladder and the network, loaded back as a
  :class:`~ebmppl.noise.NoiseConditionalEnergy`) and their single levels
  (:meth:`~ebmppl.noise.NoiseConditionalEnergy.at_noise`).

The settings of the sampler that trained the energy
(:attr:`Energy.sampler_settings <ebmppl.Energy>`, recorded by :func:`ebmppl.fit`)
are saved and restored with it, also through checkpoints and ``like=``.

Any other energy (your own function, a Flax module, your own Equinox module)
is saved too, parameters only: load it with ``load(path, like=energy)``, where
``like`` is an energy of the same structure (e.g. the freshly initialised
network); the parameters are checked leaf by leaf against it.

Loading never executes code from the file: the header is JSON, the arrays are
read with ``allow_pickle=False``, and architectures are rebuilt only from a
fixed table of ebmppl's own classes and functions.

:func:`load` also reads a training checkpoint (``checkpoint.ebm``, or the
folder holding it) written by :func:`ebmppl.fit` with ``checkpoint_dir`` and a
run folder written by ``ebmppl fit``.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._validation import check_energy
from ebmppl.checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint, save_checkpoint
from ebmppl.energy import Energy, SamplerSettings, _EquinoxApply
from ebmppl.support import REAL, Binary, Categorical, Support

__all__ = ["save", "load", "describe", "ENERGY_FORMAT"]

ENERGY_FORMAT = 1
"""Version of the energy description inside the file (the container has its own, see :mod:`ebmppl.checkpoint`)."""

CONTENT = "ebmppl-energy"


class _NotDescribable(Exception):
    """Raised while describing an energy whose architecture ebmppl cannot write as JSON (the reason)."""


# --------------------------------------------------------------------------- activations of MLPEnergy
def _activations() -> dict[str, Callable]:
    return {
        "silu": jax.nn.silu, "relu": jax.nn.relu, "gelu": jax.nn.gelu, "softplus": jax.nn.softplus,
        "tanh": jnp.tanh, "elu": jax.nn.elu, "celu": jax.nn.celu, "selu": jax.nn.selu,
        "sigmoid": jax.nn.sigmoid, "leaky_relu": jax.nn.leaky_relu, "mish": jax.nn.mish,
    }


def _activation_name(fn: Callable) -> str:
    for name, ref in _activations().items():
        if fn is ref:
            return name
    raise _NotDescribable(f"its activation {getattr(fn, '__name__', fn)!r} is not one of {sorted(_activations())}")


# --------------------------------------------------------------------------- parameter trees as JSON
def _tree_json(tree: Any) -> Any:
    """A JSON description of a tree of dicts (str keys), tuples, lists and None around array leaves."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            raise _NotDescribable("its parameters are a dict with non-string keys")
        return {"dict": {k: _tree_json(tree[k]) for k in sorted(tree)}}
    if isinstance(tree, (tuple, list)) and not hasattr(tree, "_fields"):
        return {type(tree).__name__: [_tree_json(t) for t in tree]}
    if isinstance(tree, (jax.Array, np.ndarray, np.generic, float, int)) and not isinstance(tree, bool):
        return "array"
    raise _NotDescribable(f"its parameters hold a {type(tree).__name__}, which is not a dict, tuple, list or array")


def _tree_build(desc: Any, arrays: _Arrays) -> Any:
    if desc is None:
        return None
    if desc == "array":
        return arrays.take_any()
    if not isinstance(desc, dict) or len(desc) != 1:
        raise CheckpointError(f"{arrays.path}: malformed parameter description {desc!r}.")
    (kind, body), = desc.items()
    if kind == "dict":
        return {k: _tree_build(body[k], arrays) for k in sorted(body)}
    if kind in ("tuple", "list"):
        parts = [_tree_build(d, arrays) for d in body]
        return tuple(parts) if kind == "tuple" else parts
    raise CheckpointError(f"{arrays.path}: malformed parameter description {desc!r}.")


class _Arrays:
    """The stored parameter arrays, consumed in leaf order by the builders."""

    def __init__(self, arrays: list[np.ndarray], path: pathlib.Path, names: list[str] | None):
        self.arrays, self.path, self.names, self.pos = arrays, path, names, 0

    def _next(self) -> tuple[int, np.ndarray]:
        if self.pos >= len(self.arrays):
            raise CheckpointError(f"{self.path} holds {len(self.arrays)} arrays, fewer than its architecture needs.")
        self.pos += 1
        return self.pos - 1, self.arrays[self.pos - 1]

    def take_any(self) -> jax.Array:
        return jnp.asarray(self._next()[1])

    def take_like(self, template: Any, what: str) -> Any:
        """Arrays for the leaves of ``template``, checked for shape and dtype."""
        leaves, treedef = jax.tree.flatten(template)
        out = []
        for ref in leaves:
            i, arr = self._next()
            _check_leaf(self.path, i, arr, ref, self.names, what)
            out.append(jnp.asarray(arr))
        return jax.tree.unflatten(treedef, out)

    def finish(self) -> None:
        if self.pos != len(self.arrays):
            raise CheckpointError(f"{self.path} holds {len(self.arrays)} arrays but the energy uses {self.pos}: "
                                  "the file does not match its architecture.")


def _check_leaf(path, i: int, arr: np.ndarray, ref: Any, names: list[str] | None, what: str) -> None:
    ref_shape, ref_dtype = tuple(np.shape(ref)), np.dtype(jnp.result_type(ref))
    if arr.shape != ref_shape or arr.dtype != ref_dtype:
        name = f" ({names[i]})" if names and i < len(names) else ""
        raise CheckpointError(
            f"{path}: parameter {i}{name} is {arr.dtype}{list(arr.shape)} but {what} expects "
            f"{ref_dtype}{list(ref_shape)}: the file holds a differently shaped model."
        )


# --------------------------------------------------------------------------- architecture table
# Each entry: describe(fn, params) -> JSON (or raise _NotDescribable); build(spec, event_shape, arrays) -> (fn, params).
def _describe_fn(fn: Any, params: Any) -> dict[str, Any]:
    from ebmppl import compose, targets

    if isinstance(fn, _EquinoxApply):
        return _describe_equinox(fn, params)
    from ebmppl import noise

    if isinstance(fn, noise._AtSigma):  # one level of a noise-conditional energy (NoiseConditionalEnergy.at_noise)
        return {"type": "at_noise", "sigma": float(fn.sigma), "inner": _describe_noise_fn(fn.noise_energy_fn, params)}
    if isinstance(fn, compose._Weighted):
        if not isinstance(params, tuple) or len(params) != len(fn.fns):
            raise _NotDescribable("its composed parameters do not match its parts")
        return {"type": "weighted", "combine": fn.combine, "temperatures": list(fn.temps), "weights": list(fn.weights),
                "parts": [_describe_fn(f, p) for f, p in zip(fn.fns, params, strict=True)]}
    from ebmppl import recipes

    if isinstance(fn, recipes.Standardized):  # fit's "density" recipe: the trained energy on the data's scale
        return {"type": "standardized", "inner": _describe_fn(fn.inner, params),
                "shift": None if fn.shift is None else list(fn.shift),
                "scale": None if fn.scale is None else list(fn.scale),
                "weight": float(fn.weight), "offset": float(fn.offset)}
    if isinstance(fn, compose._Conditioned):
        inner, observed = params
        return {"type": "conditioned", "event_shape": list(fn.event_shape),
                "free_index": [int(i) for i in np.asarray(fn.free_index)],
                "inner": _describe_fn(fn.fn, inner), "observed": _tree_json(observed)}
    if isinstance(fn, targets._WithRegion):  # an analytic target that declares its typical region
        return {"type": "with_region", "inner": _describe_fn(fn.fn, params),
                "center": fn.center.reshape(-1).tolist(), "scale": fn.scale.reshape(-1).tolist()}
    if getattr(fn, "__module__", None) == targets.__name__ and getattr(fn, "__qualname__", None) in _TARGET_FUNCTIONS:
        return {"type": "target", "function": fn.__qualname__, "params": _tree_json(params)}
    name = getattr(fn, "__qualname__", type(fn).__name__)
    raise _NotDescribable(f"its energy_fn {name!r} is not a built-in network, composition or target")


def _build_fn(spec: Any, event_shape: tuple[int, ...], arrays: _Arrays) -> tuple[Any, Any]:
    from ebmppl import compose

    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "equinox":
        return _build_equinox(spec, arrays)
    if kind == "weighted":
        parts = [_build_fn(p, event_shape, arrays) for p in spec["parts"]]
        fn = compose._Weighted([f for f, _ in parts], [float(t) for t in spec["temperatures"]],
                               [float(w) for w in spec["weights"]], str(spec["combine"]))
        if fn.combine not in ("sum", "logsumexp"):
            raise CheckpointError(f"{arrays.path}: unknown composition {fn.combine!r}.")
        return fn, tuple(p for _, p in parts)
    if kind == "standardized":
        from ebmppl.recipes import Standardized

        inner_fn, params = _build_fn(spec["inner"], event_shape, arrays)
        floats = lambda v: None if v is None else tuple(float(a) for a in v)  # noqa: E731
        fn = Standardized(inner_fn, floats(spec.get("shift")), floats(spec.get("scale")), float(spec["weight"]),
                          float(spec["offset"]))
        return fn, params
    if kind == "conditioned":
        inner_shape = tuple(int(s) for s in spec["event_shape"])
        inner_fn, inner_params = _build_fn(spec["inner"], inner_shape, arrays)
        observed = _tree_build(spec["observed"], arrays)
        fn = compose._Conditioned(inner_fn, np.asarray(spec["free_index"], dtype=np.int64), inner_shape)
        return fn, (inner_params, observed)
    if kind == "with_region":
        from ebmppl.targets import _WithRegion

        inner_fn, params = _build_fn(spec["inner"], event_shape, arrays)
        return _WithRegion(inner_fn, np.asarray(spec["center"], np.float64), np.asarray(spec["scale"], np.float64)), params
    if kind == "at_noise":
        from ebmppl.noise import _AtSigma

        inner_fn, params = _build_noise_fn(spec["inner"], arrays)
        return _AtSigma(inner_fn, float(spec["sigma"])), params
    if kind == "target":
        name = spec.get("function")
        if name not in _TARGET_FUNCTIONS:
            raise CheckpointError(f"{arrays.path}: unknown target function {name!r}.")
        return _TARGET_FUNCTIONS[name](event_shape), _tree_build(spec["params"], arrays)
    raise CheckpointError(f"{arrays.path}: unknown architecture type {kind!r}; it was written by a newer ebmppl?")


def _target_fn(builder: str, sized: bool) -> Callable[[tuple[int, ...]], Any]:
    def get(event_shape):
        from ebmppl import targets

        make = getattr(targets, builder)
        return (make(event_shape[0]) if sized else make()).energy.energy_fn

    return get


def _module_fn(name: str) -> Callable[[tuple[int, ...]], Any]:
    def get(event_shape):
        from ebmppl import targets

        return getattr(targets, name)

    return get


_TARGET_FUNCTIONS: dict[str, Callable[[tuple[int, ...]], Any]] = {
    "_gaussian_energy": _module_fn("_gaussian_energy"),
    "_mixture_energy": _module_fn("_mixture_energy"),
    "double_well.<locals>.fn": _target_fn("double_well", sized=True),
    "banana.<locals>.fn": _target_fn("banana", sized=False),
    "neals_funnel.<locals>.fn": _target_fn("neals_funnel", sized=True),
    "ring.<locals>.fn": _target_fn("ring", sized=False),
}


def _equinox_args(module: Any) -> tuple[str, dict[str, Any]]:
    from ebmppl import nn

    if type(module) is nn.MLPEnergy:
        return "MLPEnergy", {
            "in_size": int(module.layers[0].in_features),
            "widths": [int(layer.out_features) for layer in module.layers[:-1]],
            "activation": _activation_name(module.activation),
            # the file keeps the keys of earlier releases, so both releases read each other's files
            "base_scale": module.confinement_scale,
            "base_center": None if module.confinement_center is None else list(module.confinement_center),
        }
    if type(module) is nn.ConvEnergy:
        return "ConvEnergy", {"in_channels": int(module.convs[0].in_channels), "width": int(module.convs[0].out_channels),
                              "spectral_norm": bool(module.spectral_norm), "conv_impl": str(module.conv_impl)}
    raise _NotDescribable(f"its Equinox module {type(module).__name__} is not one of ebmppl.nn's networks")


def _make_module(name: str, args: dict[str, Any]) -> Any:
    from ebmppl import nn

    key = jax.random.key(0)  # any key: every parameter is overwritten by the stored ones
    if name == "MLPEnergy":
        acts = _activations()
        if args.get("activation") not in acts:
            raise ValueError(f"unknown activation {args.get('activation')!r}")
        return nn.MLPEnergy(int(args["in_size"]), tuple(int(w) for w in args["widths"]),
                            activation=acts[args["activation"]],
                            confinement_scale=args.get("base_scale"), confinement_center=args.get("base_center"), key=key)
    if name == "ConvEnergy":
        return nn.ConvEnergy(int(args["in_channels"]), width=int(args["width"]),
                             spectral_norm=bool(args["spectral_norm"]), conv_impl=str(args["conv_impl"]), key=key)
    raise ValueError(f"unknown network {name!r}")


def _describe_equinox(fn: _EquinoxApply, params: Any) -> dict[str, Any]:
    name, args = _equinox_args(fn.static)
    # rebuild it here and compare: a module edited after construction (eqx.tree_at) is not described wrongly
    try:
        ref_params, ref_static = eqx.partition(_make_module(name, args), eqx.is_inexact_array)
    except (TypeError, ValueError) as err:
        raise _NotDescribable(f"its {name} cannot be rebuilt from its arguments ({err})") from None
    same_static = eqx.tree_equal(ref_static, fn.static) is True
    same_shapes = jax.tree.structure(ref_params) == jax.tree.structure(params) and all(
        np.shape(a) == np.shape(b) for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params), strict=True))
    if not (same_static and same_shapes):
        raise _NotDescribable(f"its {name} differs from one built from its constructor arguments")
    return {"type": "equinox", "module": name, "args": args}


def _build_equinox(spec: dict[str, Any], arrays: _Arrays) -> tuple[Any, Any]:
    try:
        module = _make_module(spec.get("module"), dict(spec.get("args", {})))
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{arrays.path}: cannot rebuild the network {spec.get('module')!r} ({err}).") from None
    template, static = eqx.partition(module, eqx.is_inexact_array)
    return _EquinoxApply(static), arrays.take_like(template, f"the {spec['module']} it describes")


def _noise_mlp_args(net: Any) -> dict[str, Any]:
    return {"in_size": int(net.layers[0].in_features), "sigmas": list(net.sigmas),
            "widths": [int(layer.out_features) for layer in net.layers[:-1]],
            "activation": _activation_name(net.activation), "scale_by_sigma": bool(net.scale_by_sigma),
            "confinement_scale": net.confinement_scale,
            "confinement_center": None if net.confinement_center is None else list(net.confinement_center),
            "num_frequencies": int(net.num_frequencies)}


def _make_noise_mlp(args: dict[str, Any]) -> Any:
    from ebmppl.noise import NoiseConditionalMLP

    acts = _activations()
    if args.get("activation") not in acts:
        raise ValueError(f"unknown activation {args.get('activation')!r}")
    return NoiseConditionalMLP(int(args["in_size"]), tuple(float(s) for s in args["sigmas"]),
                               tuple(int(w) for w in args["widths"]), scale_by_sigma=bool(args["scale_by_sigma"]),
                               confinement_scale=args.get("confinement_scale"),
                               confinement_center=args.get("confinement_center"), activation=acts[args["activation"]],
                               num_frequencies=int(args["num_frequencies"]), key=jax.random.key(0))


def _describe_noise_fn(fn: Any, params: Any) -> dict[str, Any]:
    """A noise-conditional ``noise_energy_fn(params, x, sigma)`` as JSON: ebmppl's NoiseConditionalMLP only."""
    from ebmppl.noise import NoiseConditionalMLP, _NoiseEquinoxApply

    if not (isinstance(fn, _NoiseEquinoxApply) and type(fn.static) is NoiseConditionalMLP):
        name = getattr(fn, "__qualname__", type(fn).__name__)
        raise _NotDescribable(f"its noise_energy_fn {name!r} is not ebmppl.noise's NoiseConditionalMLP")
    args = _noise_mlp_args(fn.static)
    try:  # rebuild and compare, as for ebmppl.nn's networks
        ref_params, ref_static = eqx.partition(_make_noise_mlp(args), eqx.is_inexact_array)
    except (TypeError, ValueError) as err:
        raise _NotDescribable(f"its NoiseConditionalMLP cannot be rebuilt from its arguments ({err})") from None
    same_shapes = jax.tree.structure(ref_params) == jax.tree.structure(params) and all(
        np.shape(a) == np.shape(b) for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params), strict=True))
    if not (eqx.tree_equal(ref_static, fn.static) is True and same_shapes):
        raise _NotDescribable("its NoiseConditionalMLP differs from one built from its constructor arguments")
    return {"type": "noise_equinox", "module": "NoiseConditionalMLP", "args": args}


def _build_noise_fn(spec: Any, arrays: _Arrays) -> tuple[Any, Any]:
    from ebmppl.noise import _NoiseEquinoxApply

    if not (isinstance(spec, dict) and spec.get("type") == "noise_equinox"
            and spec.get("module") == "NoiseConditionalMLP"):
        raise CheckpointError(f"{arrays.path}: unknown noise-conditional network {spec!r}; written by a newer ebmppl?")
    try:
        module = _make_noise_mlp(dict(spec.get("args", {})))
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{arrays.path}: cannot rebuild the network NoiseConditionalMLP ({err}).") from None
    template, static = eqx.partition(module, eqx.is_inexact_array)
    return _NoiseEquinoxApply(static), arrays.take_like(template, "the NoiseConditionalMLP it describes")


# --------------------------------------------------------------------------- public API
def describe(energy: Energy) -> dict[str, Any] | None:
    """The JSON architecture :func:`save` records for ``energy``, or ``None`` if ebmppl cannot describe it.

    ``None`` means the file will hold the parameters only, and loading it
    needs ``load(path, like=...)``.

    Examples
    --------
    >>> import jax
    >>> from ebmppl import Energy
    >>> from ebmppl.nn import MLPEnergy
    >>> net = Energy.from_equinox(MLPEnergy(2, (8, 8), key=jax.random.key(0)), event_shape=(2,))
    >>> describe(net)["args"]["widths"]
    [8, 8]
    >>> describe(Energy(lambda p, x: (x**2).sum() * p, 1.0, event_shape=(2,))) is None
    True
    """
    return _describe(energy)[0]


def _describe(energy: Energy) -> tuple[dict[str, Any] | None, str]:
    from ebmppl.noise import NoiseConditionalEnergy

    try:
        if isinstance(energy, NoiseConditionalEnergy):  # all its levels: the ladder and E(x, σ)
            return {"type": "noise_conditional", "ladder": list(energy.ladder.sigmas),
                    "inner": _describe_noise_fn(energy.noise_energy_fn, energy.params)}, ""
        return _describe_fn(energy.energy_fn, energy.params), ""
    except _NotDescribable as why:
        return None, str(why)


def _support_to_json(support: Support) -> dict[str, Any] | None:
    """The support as JSON (``None`` for the real line, which files of older ebmppl imply)."""
    if isinstance(support, Binary):
        return {"type": "binary", "low": float(support.low), "high": float(support.high)}
    if isinstance(support, Categorical):
        return {"type": "categorical", "num_categories": int(support.num_categories)}
    if not support.is_discrete:
        return None
    raise TypeError(f"save: the support {support!r} has no file format; ebmppl stores REAL, Binary and Categorical.")


def _support_from_json(spec: Any, path: pathlib.Path) -> Support:
    try:
        if spec is None:
            return REAL
        if spec["type"] == "binary":
            return Binary(float(spec["low"]), float(spec["high"]))
        if spec["type"] == "categorical":
            return Categorical(int(spec["num_categories"]))
    except (KeyError, TypeError, ValueError):
        pass
    raise CheckpointError(f"{path}: its support description {spec!r} is malformed.")


def _concrete_temperature(energy: Energy) -> float:
    if isinstance(energy.temperature, jax.core.Tracer):
        raise TypeError("save a concrete energy, outside jit: its temperature is a traced value.")
    return float(energy.temperature)


def energy_metadata(energy: Energy) -> dict[str, Any]:
    """The JSON header :func:`save` writes for ``energy`` (also stored in :func:`ebmppl.fit`'s checkpoints).

    Examples
    --------
    >>> from ebmppl.targets import banana
    >>> meta = energy_metadata(banana().energy)
    >>> meta["event_shape"], meta["architecture"]["function"], meta["parameters"]
    ([2], 'banana.<locals>.fn', ['[0]', '[1]'])
    """
    from ebmppl._version import __version__

    architecture, why = _describe(energy)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(energy.params)[0]]
    settings = energy.sampler_settings
    return {"content": CONTENT, "energy_format": ENERGY_FORMAT, "ebmppl_version": __version__,
            "event_shape": list(energy.event_shape), "temperature": _concrete_temperature(energy),
            "architecture": architecture, "not_described": why, "parameters": paths,
            "sampler_settings": None if settings is None else settings.to_json(),
            "support": _support_to_json(energy.support)}


def save(path: str | os.PathLike, energy: Any) -> pathlib.Path:
    """Write ``energy`` (its parameters and, where ebmppl can describe it, its architecture) to one file.

    The file is checksummed and written atomically (a temporary file, flushed,
    read back and verified, then renamed): an interruption never leaves a
    half-written file in place of a good one. Read it with :func:`load`.

    Parameters
    ----------
    path
        The file to write (parent folders are created), e.g. ``"model.ebm"``.
    energy
        An :class:`~ebmppl.Energy`; a :class:`~ebmppl.FitResult` (its trained
        energy) or a :class:`~ebmppl.targets.Target` are accepted too.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        ``energy`` is not an energy (a plain function: wrap it in
        ``ebmppl.Energy(fn, params, event_shape=...)``).

    Examples
    --------
    >>> import tempfile, pathlib, jax
    >>> import ebmppl
    >>> from ebmppl.nn import MLPEnergy
    >>> energy = ebmppl.Energy.from_equinox(MLPEnergy(2, (16, 16), key=jax.random.key(0)), event_shape=(2,))
    >>> path = ebmppl.save(pathlib.Path(tempfile.mkdtemp()) / "mlp.ebm", energy)
    >>> loaded = ebmppl.load(path)          # no network to rebuild
    >>> x = jax.numpy.ones((3, 2))
    >>> bool((loaded.energy(x) == energy.energy(x)).all())
    True
    """
    if isinstance(energy, (str, os.PathLike)) and not isinstance(path, (str, os.PathLike)):
        raise TypeError("save(path, energy): the file comes first, then the energy; got them the other way round "
                        f"(energy={energy!r}).")
    energy = _as_energy(energy, "energy")
    return save_checkpoint(path, energy.params, energy_metadata(energy))


def _as_energy(energy: Any, name: str) -> Energy:
    # a FitResult or a Target carries its energy (duck-typed: io sits below fit, which imports it)
    if not isinstance(energy, Energy) and isinstance(getattr(energy, "energy", None), Energy):
        energy = energy.energy
    return check_energy(energy, name)


def load(path: str | os.PathLike, like: Energy | None = None) -> Energy:
    """Load an energy written by :func:`save`, by :func:`ebmppl.fit` (``checkpoint_dir``) or by ``ebmppl fit``.

    Parameters
    ----------
    path
        One of

        * a file written by :func:`save`;
        * a training checkpoint ``checkpoint.ebm`` written by
          ``fit(..., checkpoint_dir=d)``, or the folder ``d`` holding it (the
          energy's parameters are taken from the training state);
        * a run folder written by ``ebmppl fit`` (the ``--out`` folder); one
          written before checkpoints described their energy is read by
          :func:`ebmppl.runs.load_run_energy` instead.
    like
        An energy of the same structure (same function, parameter shapes and
        dtypes), needed when the file holds parameters only: energies that
        are not built-in networks, compositions or targets (your own
        function, a Flax module, your own Equinox module). The parameters are
        loaded into its structure and checked leaf by leaf. When given, it is
        used even if the file records an architecture.

    Returns
    -------
    Energy
        The energy with the stored parameters, event shape and temperature.

    Raises
    ------
    CheckpointError
        The file is missing, truncated, corrupted or of another format; it
        holds parameters only and ``like`` was not given; or its parameters do
        not match ``like`` (the message names the parameter and both shapes);
        or it is a run folder of an older ebmppl (the message points to
        :func:`ebmppl.runs.load_run_energy`).
    FileNotFoundError
        ``path`` is a folder that holds neither ``checkpoint.ebm`` nor a run.

    Notes
    -----
    Nothing in the file is executed: the header is JSON, the arrays are read
    without pickle, and architectures are rebuilt only from ebmppl's own
    classes (a fixed table), never from names or code in the file.

    Examples
    --------
    A custom function cannot be described, so its file loads with ``like=``:

    >>> import tempfile, pathlib, jax.numpy as jnp
    >>> import ebmppl
    >>> fn = lambda p, x: 0.5 * jnp.sum(((x - p["m"]) / p["s"]) ** 2)
    >>> energy = ebmppl.Energy(fn, {"m": jnp.ones(2), "s": jnp.full(2, 2.0)}, event_shape=(2,))
    >>> path = ebmppl.save(pathlib.Path(tempfile.mkdtemp()) / "custom.ebm", energy)
    >>> template = ebmppl.Energy(fn, {"m": jnp.zeros(2), "s": jnp.ones(2)}, event_shape=(2,))
    >>> ebmppl.load(path, like=template).params["s"].tolist()
    [2.0, 2.0]
    >>> ebmppl.load(path)
    Traceback (most recent call last):
    ...
    ebmppl.checkpoint.CheckpointError: ... holds parameters only ...; pass like=...
    """
    if like is not None:
        like = _as_energy(like, "like")
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: {path} does not exist; pass a file written by ebmppl.save, a checkpoint_dir "
                                "of ebmppl.fit or a run folder of 'ebmppl fit'.")
    if path.is_dir():
        ckpt = path / CHECKPOINT_NAME
        if (path / "config.json").is_file() and like is None and ckpt.is_file() and _undescribed(ckpt):
            # a run folder of an ebmppl whose checkpoints did not yet record the energy: its network is rebuilt
            # from config.json by the run pipeline (the workflow above this module), not here
            raise CheckpointError(f"{path} is a run folder of an older ebmppl whose checkpoint does not describe its "
                                  "energy; load it with ebmppl.runs.load_run_energy(path), which rebuilds the network "
                                  "from its config.json.")
        if not ckpt.is_file():
            raise FileNotFoundError(f"{path} holds no {CHECKPOINT_NAME}: pass a file written by ebmppl.save, "
                                    "a checkpoint_dir of ebmppl.fit or a run folder of 'ebmppl fit'.")
        path = ckpt
    header, arrays, _extras = read_checkpoint(path)
    meta = header.get("metadata", {})
    is_key = header.get("is_key", [False] * len(arrays))
    if (meta.get("content") == CONTENT or "energy" in meta) and "metadata_sha256" not in header:
        raise CheckpointError(f"{path} is corrupted: its header lost the checksum of its metadata.")
    if meta.get("content") == CONTENT:  # a file written by save()
        return _energy_from(path, meta, arrays, is_key, like)
    if isinstance(meta.get("energy"), dict):  # a training checkpoint of fit(): pick the energy's leaves
        info = meta["energy"]
        idx = info.get("leaf_indices")
        if not isinstance(idx, list) or not all(isinstance(i, int) and 0 <= i < len(arrays) for i in idx):
            raise CheckpointError(f"{path}: its energy description does not match its arrays.")
        return _energy_from(path, info, [arrays[i] for i in idx], [is_key[i] for i in idx], like)
    if like is not None:  # an older training checkpoint: the energy's parameters are the state's first leaves
        n = len(jax.tree.leaves(like.params))
        return _energy_from(path, {"event_shape": list(like.event_shape), "temperature": None, "architecture": None},
                            arrays[:n], is_key[:n], like)
    raise CheckpointError(f"{path} is a checkpoint without an energy description; pass like=<an energy of the same "
                          "structure> to load its parameters.")


def _undescribed(ckpt: pathlib.Path) -> bool:
    """A readable checkpoint whose metadata does not describe the energy's architecture (an older ebmppl's);
    a damaged one is not: reading it reports the damage."""
    try:
        meta = read_checkpoint(ckpt)[0].get("metadata", {})
    except CheckpointError:
        return False
    return not (isinstance(meta.get("energy"), dict) and meta["energy"].get("architecture") is not None)


def _energy_from(path: pathlib.Path, meta: dict[str, Any], arrays: list[np.ndarray], is_key: list[bool],
                 like: Energy | None) -> Energy:
    if any(is_key):
        arrays = [jax.random.wrap_key_data(a) if k else a for a, k in zip(arrays, is_key, strict=True)]
    try:
        event_shape = tuple(int(s) for s in meta["event_shape"])
        temperature = meta.get("temperature")
        temperature = None if temperature is None else float(temperature)
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: its energy description is malformed.") from None
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise CheckpointError(f"{path}: its temperature {temperature!r} is not a finite number > 0.")
    settings = None
    if meta.get("sampler_settings") is not None:  # the training run's sampler (files of older ebmppl have none)
        try:
            settings = SamplerSettings.from_json(meta["sampler_settings"])
        except ValueError as err:
            raise CheckpointError(f"{path}: its sampler settings are malformed ({err}).") from None
    names = meta.get("parameters") if isinstance(meta.get("parameters"), list) else None
    stored = _Arrays(arrays, path, names)
    # files of older ebmppl record no support; a like= energy then keeps its own
    support = _support_from_json(meta.get("support"), path) if "support" in meta else None
    if like is not None:
        if like.event_shape != event_shape:
            raise CheckpointError(f"{path} holds an energy of event_shape {event_shape} but like= has "
                                  f"event_shape {like.event_shape}.")
        if support is not None and like.support != support:
            raise CheckpointError(f"{path} holds an energy on the support {support!r} but like= is on "
                                  f"{like.support!r}; pass like= an energy built with support={support!r}.")
        n = len(jax.tree.leaves(like.params))
        if n != len(arrays):
            raise CheckpointError(f"{path} holds {len(arrays)} parameter arrays but like= has {n}: it was written "
                                  "for another model (pass like= an energy of the same structure).")
        params = stored.take_like(like.params, "like=")
        out = like.with_params(params)
        if settings is not None:
            out = out.with_sampler_settings(settings)
        return out if temperature is None else out.with_temperature(temperature)
    spec = meta.get("architecture")
    if spec is None:
        why = meta.get("not_described") or "its architecture is not recorded"
        raise CheckpointError(
            f"{path} holds parameters only ({why}); pass like=<an energy of the same structure>, e.g. "
            "ebmppl.load(path, like=ebmppl.Energy(energy_fn, initial_params, event_shape=...))."
        )
    if isinstance(spec, dict) and spec.get("type") == "noise_conditional":  # a NoiseConditionalEnergy, all levels
        from ebmppl.noise import NoiseConditionalEnergy, NoiseLadder

        noise_fn, params = _build_noise_fn(spec.get("inner"), stored)
        stored.finish()
        try:
            ladder = NoiseLadder(tuple(float(v) for v in spec["ladder"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: its noise ladder is malformed ({err}).") from None
        return NoiseConditionalEnergy(noise_fn, params, event_shape=event_shape, ladder=ladder,
                                      temperature=1.0 if temperature is None else temperature, validate=False,
                                      sampler_settings=settings, support=REAL if support is None else support)
    fn, params = _build_fn(spec, event_shape, stored)
    stored.finish()
    return Energy(fn, params, event_shape=event_shape, temperature=1.0 if temperature is None else temperature,
                  validate=False, sampler_settings=settings, support=REAL if support is None else support)
