"""Built-in energy networks (Equinox modules: plain pytrees, free inside ``jit``).

Each network maps ONE example to a scalar energy. Wrap it with
:meth:`ebmppl.Energy.from_equinox` to sample or fit it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ebmppl._deprecation import UNSET, renamed

__all__ = ["MLPEnergy", "ConvEnergy", "conv2d", "spectral_normalise", "CONV_IMPLS"]

CONV_IMPLS = ("auto", "im2col", "lax")


class MLPEnergy(eqx.Module):
    """A multilayer perceptron ``R^d -> R`` with SiLU (Swish) activations.

    Smooth activations matter for EBMs: Langevin dynamics follows ``∇ₓE``,
    and ReLU networks give piecewise-constant gradients.

    Parameters
    ----------
    in_size
        Number of input entries ``d``; inputs of any shape with ``d`` entries
        (e.g. an image ``(1, 8, 8)`` for ``d = 64``) are flattened.
    widths
        Hidden widths, e.g. ``(128, 128, 128)``.
    activation
        Elementwise activation (default :func:`jax.nn.silu`).
    confinement_scale, confinement_center
        If ``confinement_scale`` ``s`` is given, add the fixed Gaussian
        confinement term ``‖x - c‖² / (2 s²)`` (``c``: ``confinement_center``,
        default 0). An MLP energy grows at most linearly far from the data,
        which can leave a large share of the mass of ``exp(-E)`` (or all of it)
        at infinity; the confinement makes the density normalisable whatever
        the network does. Use a scale a few times the data's spread (ebmppl's
        2-D runs use 3x the largest standard deviation).
    key
        PRNG key for the initialisation.
    base_scale, base_center
        Deprecated names of ``confinement_scale`` and ``confinement_center``
        (``base_scale`` now names only the base distribution of log Z
        estimators); they work for one more release, with a warning.

    Examples
    --------
    The confinement adds ``‖x‖² / (2 s²)``: 2 at ``x = (4, 0)`` with ``s = 2``.

    >>> import jax
    >>> from ebmppl.nn import MLPEnergy
    >>> free = MLPEnergy(2, widths=(32, 32), key=jax.random.key(0))
    >>> confined = MLPEnergy(2, widths=(32, 32), confinement_scale=2.0, key=jax.random.key(0))
    >>> x = jax.numpy.array([4.0, 0.0])
    >>> free(x).shape, float(confined(x) - free(x))
    ((), 2.0)
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)
    confinement_scale: float | None = eqx.field(static=True)
    confinement_center: tuple[float, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        widths: Sequence[int] = (128, 128, 128),
        *,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.silu,
        confinement_scale: float | None = None,
        confinement_center: Sequence[float] | None = None,
        key: jax.Array,
        base_scale: float | None = UNSET,
        base_center: Sequence[float] | None = UNSET,
    ):
        # stacklevel 5: the caller of an Equinox module's constructor is 2 frames above __init__
        confinement_scale = renamed("MLPEnergy", "base_scale", base_scale, "confinement_scale",
                                    UNSET if confinement_scale is None else confinement_scale, stacklevel=5)
        confinement_center = renamed("MLPEnergy", "base_center", base_center, "confinement_center",
                                     UNSET if confinement_center is None else confinement_center, stacklevel=5)
        if confinement_scale is not None and not float(confinement_scale) > 0:
            raise ValueError(f"confinement_scale must be > 0 (or None), got {confinement_scale!r}.")
        if confinement_center is not None and len(confinement_center) != int(in_size):
            raise ValueError(f"confinement_center must have in_size={in_size} entries, got {len(confinement_center)}.")
        self.confinement_scale = None if confinement_scale is None else float(confinement_scale)
        self.confinement_center = None if confinement_center is None else tuple(float(c) for c in confinement_center)
        if int(in_size) <= 0:
            raise ValueError(f"in_size must be a positive int, got {in_size!r}.")
        widths = tuple(int(w) for w in widths)
        if any(w <= 0 for w in widths):
            raise ValueError(f"widths must be positive ints, got {widths!r}.")
        sizes = (int(in_size), *widths, 1)
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(-1)  # an image (c, h, w) is read as its in_size pixels
        h = x
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        energy = self.layers[-1](h)[0]
        if self.confinement_scale is not None:
            centred = x if self.confinement_center is None else x - jnp.asarray(self.confinement_center, x.dtype)
            energy = energy + 0.5 * jnp.sum(centred**2) / self.confinement_scale**2
        return energy

    @property
    def base_scale(self) -> float | None:
        """Deprecated: use :attr:`confinement_scale`."""
        return renamed("MLPEnergy (attribute)", "base_scale", self.confinement_scale, "confinement_scale", UNSET,
                       stacklevel=4)

    @property
    def base_center(self) -> tuple[float, ...] | None:
        """Deprecated: use :attr:`confinement_center`."""
        return renamed("MLPEnergy (attribute)", "base_center", self.confinement_center, "confinement_center", UNSET,
                       stacklevel=4)


def spectral_normalise(weight: jax.Array, key: jax.Array, num_iterations: int = 3) -> jax.Array:
    """Divide ``weight`` by an estimate of its largest singular value.

    The weight is flattened to a matrix ``(out, -1)`` (Miyato et al., 2018) and
    its spectral norm estimated by power iteration from a fixed start vector;
    the vectors are held constant for the gradient, as in the original method.
    Stateless, so the network stays a plain pytree.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> w = jnp.diag(jnp.array([4.0, 1.0]))
    >>> w_sn = spectral_normalise(w, jax.random.key(0), num_iterations=10)
    >>> round(float(jnp.linalg.norm(w_sn, 2)), 3)
    1.0
    """
    mat = weight.reshape(weight.shape[0], -1)
    u = jax.random.normal(key, (mat.shape[0],), mat.dtype)
    for _ in range(num_iterations):
        v = mat.T @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = mat @ v
        u = u / (jnp.linalg.norm(u) + 1e-12)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    sigma = u @ mat @ v
    return weight / sigma


def conv2d(x: jax.Array, weight: jax.Array, bias: jax.Array | None = None, *, stride: int = 1, padding: int = 1,
           impl: str = "auto") -> jax.Array:
    """2-D convolution of ONE image ``(C, H, W)`` with ``weight (O, C, kh, kw)``: ``(O, H', W')``.

    Two formulations of the same arithmetic:

    * ``"lax"`` — ``lax.conv_general_dilated``: what accelerators (cuDNN,
      TPU) run best;
    * ``"im2col"`` — the ``kh·kw`` shifted views of the padded image, in
      channels-last layout, concatenated into a patch matrix
      ``(H'·W', kh·kw·C)`` and one matrix product with the reshaped kernel.
      Batched by ``vmap`` this is a single large GEMM, which XLA's CPU backend
      runs many times faster than its direct convolution for the small images
      and kernels of EBMs (the CD step of the 8x8 ConvNet benchmark: about
      12x; see ``docs/benchmarks/performance.md``), and its gradients (slices
      and GEMMs) are as cheap. :class:`ConvEnergy` keeps the whole network
      channels-last so no transposes run between layers.

    ``"auto"`` picks ``"im2col"`` on the CPU backend and ``"lax"`` elsewhere, so
    the accelerator path is unchanged. The two agree to float rounding (a test).

    Examples
    --------
    >>> x = jax.random.normal(jax.random.key(0), (3, 8, 8))
    >>> w = jax.random.normal(jax.random.key(1), (4, 3, 3, 3))
    >>> a = conv2d(x, w, stride=2, impl="lax")
    >>> b = conv2d(x, w, stride=2, impl="im2col")
    >>> a.shape, bool(jnp.allclose(a, b, atol=1e-5))
    ((4, 4, 4), True)
    """
    impl = _resolve_impl(impl)
    if impl == "lax":
        y = jax.lax.conv_general_dilated(x[None], weight, (stride, stride), ((padding, padding), (padding, padding)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))[0]
        return y if bias is None else y + bias.reshape(-1, 1, 1)
    return _conv2d_hwc(x.transpose(1, 2, 0), weight, bias, stride, padding).transpose(2, 0, 1)


def _resolve_impl(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise ValueError(f"impl must be one of {CONV_IMPLS}, got {impl!r}.")
    if impl == "auto":
        return "im2col" if jax.default_backend() == "cpu" else "lax"
    return impl


def _conv2d_hwc(x: jax.Array, weight: jax.Array, bias: jax.Array | None, stride: int, padding: int) -> jax.Array:
    """im2col convolution of one image in channels-last layout ``(H, W, C) -> (H', W', O)``.

    Channels-last makes the patch matrix a concatenation of shifted views
    along the channel axis and the GEMM's output already the next layer's
    input: no transposes between layers, forward or backward.
    """
    h, w, c = x.shape
    out_ch, _, kh, kw = weight.shape
    xp = jnp.pad(x, ((padding, padding), (padding, padding), (0, 0)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    patches = jnp.concatenate([xp[i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
                               for i in range(kh) for j in range(kw)], axis=-1)  # (H', W', kh·kw·C)
    kernel = weight.transpose(2, 3, 1, 0).reshape(kh * kw * c, out_ch)  # rows ordered as the patches' channels
    y = (patches.reshape(ho * wo, kh * kw * c) @ kernel).reshape(ho, wo, out_ch)
    return y if bias is None else y + bias.reshape(-1)


class ConvEnergy(eqx.Module):
    """A small ConvNet energy for images of shape ``(channels, height, width)``.

    Three 3x3 convolutions (the last two with stride 2) with SiLU, global
    average pooling and a linear read-out, as in short-run EBMs on small
    images. Optional spectral normalisation bounds each layer's Lipschitz
    constant, which stabilises contrastive-divergence training.

    Parameters
    ----------
    in_channels
        Image channels (1 for grey images).
    width
        Channels of the first convolution; later layers double it.
    spectral_norm
        Divide each convolution's kernel by its estimated spectral norm.
    conv_impl
        Convolution formulation (see :func:`conv2d`): ``"auto"`` (im2col GEMMs
        on CPU, XLA's convolution on accelerators), ``"im2col"`` or ``"lax"``.
        The parameters are the same whichever is used.
    key
        PRNG key for the initialisation.

    Examples
    --------
    >>> import jax
    >>> from ebmppl.nn import ConvEnergy
    >>> net = ConvEnergy(1, width=8, key=jax.random.key(0))
    >>> net(jax.numpy.zeros((1, 8, 8))).shape
    ()
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    head: eqx.nn.Linear
    spectral_norm: bool = eqx.field(static=True)
    conv_impl: str = eqx.field(static=True)

    def __init__(self, in_channels: int = 1, *, width: int = 32, spectral_norm: bool = False,
                 conv_impl: str = "auto", key: jax.Array):
        if int(in_channels) <= 0 or int(width) <= 0:
            raise ValueError(
                f"in_channels and width must be positive ints, got {in_channels!r} and {width!r}."
            )
        if conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}.")
        self.conv_impl = conv_impl
        k1, k2, k3, k4 = jax.random.split(key, 4)
        c = int(width)
        self.convs = (
            eqx.nn.Conv2d(in_channels, c, 3, padding=1, key=k1),
            eqx.nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, key=k2),
            eqx.nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1, key=k3),
        )
        self.head = eqx.nn.Linear(4 * c, 1, key=k4)
        self.spectral_norm = spectral_norm

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 3:
            raise ValueError(f"ConvEnergy expects one image (channels, height, width), got shape {x.shape}.")
        channels_last = _resolve_impl(self.conv_impl) == "im2col"
        if channels_last:  # the whole network in (H, W, C): one transpose in, none between layers
            x = x.transpose(1, 2, 0)
        for i, conv in enumerate(self.convs):
            w = spectral_normalise(conv.weight, jax.random.key(i)) if self.spectral_norm else conv.weight
            stride, padding = conv.stride[0], conv.padding[0][0]
            if channels_last:
                x = jax.nn.silu(_conv2d_hwc(x, w, conv.bias, stride, padding))
            else:
                x = jax.nn.silu(conv2d(x, w, conv.bias, stride=stride, padding=padding, impl="lax"))
        return self.head(jnp.mean(x, axis=(0, 1) if channels_last else (1, 2)))[0]
