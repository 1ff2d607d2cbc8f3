"""Joint energy-based models (JEM; Grathwohl et al. 2020): a classifier is secretly an energy.

A classifier's logits ``f(x)`` define ``E(x, y) = -f(x)[y]`` and, by
marginalising ``y``, ``E(x) = -logsumexp_y f(x)[y]``; ``p(y | x)`` is the usual
softmax. Hybrid training maximises ``log p(y | x) + log p(x)``: cross-entropy
plus contrastive divergence on ``E(x)`` with negatives from SGLD and a replay
buffer. The same network then classifies, scores inputs by ``E(x)``, and
samples class-conditionally from ``E(x, y)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

from ebmppl.buffer import ChainInit, replay_buffer, uniform_noise
from ebmppl.energy import Energy
from ebmppl.objectives.base import Trainer, apply_gradients, buffer_spread, initial_state
from ebmppl.objectives.cd import cd_loss, kernel_parameters, sample_negatives
from ebmppl.samplers import Sampler, get_sampler

__all__ = ["JointEnergy", "joint_energy", "jem_hybrid", "cross_entropy", "expected_calibration_error"]


class JointEnergy(NamedTuple):
    """A classifier read as energies.

    Attributes
    ----------
    energy
        ``E(x) = -logsumexp_y f(x)[y]`` (an :class:`~ebmppl.Energy`; its params are the classifier's).
    logits
        ``logits(params, x) -> (num_classes,)`` for one example.
    num_classes
        Number of classes.

    Examples
    --------
    >>> import equinox as eqx
    >>> joint = joint_energy(eqx.nn.Linear(2, 3, key=jax.random.key(0)), event_shape=(2,))
    >>> joint.num_classes, joint.energy(jnp.zeros((5, 2))).shape
    (3, (5,))
    """

    energy: Energy
    logits: Any
    num_classes: int

    def predict(self, params: Any, x: jax.Array) -> jax.Array:
        """Class probabilities ``p(y | x)`` for a batch ``(n, *event_shape)``.

        Examples
        --------
        >>> import equinox as eqx
        >>> joint = joint_energy(eqx.nn.Linear(2, 3, key=jax.random.key(0)), event_shape=(2,))
        >>> probs = joint.predict(joint.energy.params, jnp.ones((4, 2)))
        >>> probs.shape, bool(jnp.allclose(probs.sum(-1), 1.0))
        ((4, 3), True)
        """
        return jax.nn.softmax(jax.vmap(lambda xi: self.logits(params, xi))(x), axis=-1)

    def conditional(self, params: Any, y: int) -> Energy:
        """The class-conditional energy ``E(x, y) = -f(x)[y]`` as an :class:`~ebmppl.Energy` over x.

        Examples
        --------
        >>> import equinox as eqx
        >>> joint = joint_energy(eqx.nn.Linear(2, 3, key=jax.random.key(0)), event_shape=(2,))
        >>> e1 = joint.conditional(joint.energy.params, 1)
        >>> x = jnp.ones((1, 2))
        >>> bool(jnp.allclose(e1.energy(x), -joint.logits(joint.energy.params, x[0])[1]))
        True
        """
        if not 0 <= int(y) < self.num_classes:
            raise ValueError(f"y must be in [0, {self.num_classes}), got {y!r}.")
        return Energy(_ClassEnergy(self.logits, int(y)), params, event_shape=self.energy.event_shape)


class _ClassEnergy:
    def __init__(self, logits, y):
        self.logits, self.y = logits, y

    def __call__(self, params, x):
        return -self.logits(params, x)[self.y]

    def __eq__(self, other):
        return isinstance(other, _ClassEnergy) and (self.logits, self.y) == (other.logits, other.y)

    def __hash__(self):
        return hash((self.logits, self.y))


class _Marginal:
    def __init__(self, logits):
        self.logits = logits

    def __call__(self, params, x):
        return -logsumexp(self.logits(params, x))

    def __eq__(self, other):
        return isinstance(other, _Marginal) and self.logits == other.logits

    def __hash__(self):
        return hash(self.logits)


class _EquinoxLogits(eqx.Module):
    static: Any = eqx.field(static=True)

    def __call__(self, params, x):
        return eqx.combine(params, self.static)(x)


def joint_energy(classifier: eqx.Module, *, event_shape: tuple[int, ...]) -> JointEnergy:
    """Read an Equinox classifier ``x -> logits`` as a joint energy.

    Examples
    --------
    >>> from ebmppl.nn import MLPEnergy
    >>> net = eqx.nn.MLP(4, 3, 16, 2, activation=jax.nn.silu, key=jax.random.key(0))
    >>> je = joint_energy(net, event_shape=(4,))
    >>> je.energy.energy(jnp.zeros((5, 4))).shape, je.num_classes
    ((5,), 3)
    """
    params, static = eqx.partition(classifier, eqx.is_inexact_array)
    logits = _EquinoxLogits(static)
    out = jax.eval_shape(logits, params, jnp.zeros(event_shape))
    if len(out.shape) != 1:
        raise ValueError(f"the classifier must return a vector of logits for one example, got shape {out.shape}.")
    return JointEnergy(Energy(_Marginal(logits), params, event_shape=event_shape), logits, int(out.shape[0]))


def cross_entropy(joint: JointEnergy, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean cross-entropy ``-log p(y | x)``.

    Examples
    --------
    >>> net = eqx.nn.MLP(2, 3, 8, 1, key=jax.random.key(0))
    >>> je = joint_energy(net, event_shape=(2,))
    >>> float(cross_entropy(je, je.energy.params, jnp.zeros((4, 2)), jnp.zeros(4, jnp.int32))) > 0
    True
    """
    logits = jax.vmap(lambda xi: joint.logits(params, xi))(x)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def jem_hybrid(
    joint: JointEnergy,
    optimizer: optax.GradientTransformation,
    *,
    sampler: str | Sampler | None = None,
    chain_init: ChainInit | None = None,
    num_mcmc_steps: int = 20,
    alpha: float = 0.1,
    generative_weight: float = 1.0,
    sampler_params: dict[str, Any] | None = None,
) -> Trainer:
    """JEM hybrid training: ``cross-entropy + generative_weight · CD(E(x))``; batches are ``(x, y)``.

    With ``generative_weight=0`` it is plain cross-entropy training of the
    same network (the baseline JEM is compared with). Defaults follow
    Grathwohl et al.: SGLD-style practical Langevin (step 1, noise 0.01),
    a replay buffer re-initialised 5 % from uniform noise, K = 20.

    Examples
    --------
    >>> net = eqx.nn.MLP(4, 3, 16, 1, activation=jax.nn.silu, key=jax.random.key(0))
    >>> je = joint_energy(net, event_shape=(4,))
    >>> t = jem_hybrid(je, optax.adam(1e-3), num_mcmc_steps=2)
    >>> s = t.init(jax.random.key(0), je.energy.params)
    >>> s, m = jax.jit(t.step)(s, (jnp.zeros((8, 4)), jnp.zeros(8, jnp.int32)))
    >>> sorted(m)[:3]
    ['acceptance_rate', 'accuracy', 'buffer_std']
    """
    from ebmppl.samplers import langevin

    if not float(generative_weight) >= 0:
        raise ValueError(f"generative_weight must be >= 0, got {generative_weight!r}.")
    energy = joint.energy
    sampler = langevin(step_size=1.0, noise_scale=0.01, clamp=(-1.0, 1.0)) if sampler is None else sampler
    sampler = get_sampler(sampler) if isinstance(sampler, str) else sampler
    chain_init = chain_init or replay_buffer(10_000, 0.05, uniform_noise(-1.0, 1.0))
    kernel_params = kernel_parameters(sampler, energy.dim, sampler_params)
    generative = float(generative_weight) > 0

    def init(key, params):
        return initial_state(key, params, optimizer, chain_init, energy.event_shape)

    def step(state, batch):
        x, y = batch
        key, k_start, k_chain = jax.random.split(state.key, 3)
        if generative:
            x0, aux = chain_init.start(k_start, state.buffer, x)
            x_neg, acceptance = sample_negatives(energy, sampler, kernel_params, num_mcmc_steps, k_chain,
                                                 state.params, x0)
        else:
            x_neg, acceptance, aux = x, jnp.nan, None

        def loss_fn(p):
            # the logits serve the cross-entropy and the accuracy metric: one forward pass
            logits = jax.vmap(lambda xi: joint.logits(p, xi))(x)
            ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
            accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
            if not generative:
                return ce, (ce, jnp.nan, jnp.nan, accuracy)
            gen, (e_pos, e_neg) = cd_loss(energy, p, x, x_neg, alpha)
            return ce + generative_weight * gen, (ce, e_pos, e_neg, accuracy)

        (loss, (ce, e_pos, e_neg, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        buffer = chain_init.finish(state.buffer, aux, x_neg) if generative else state.buffer
        guarded, ok = apply_gradients(state, grads, loss, optimizer, buffer, key)
        nan = jnp.asarray(jnp.nan, loss.dtype)
        metrics = {"loss": loss, "cross_entropy": ce, "accuracy": accuracy,
                   "cd_gap": e_pos - e_neg, "energy_pos": e_pos, "energy_neg": e_neg, "energy_noise": nan,
                   "grad_norm": optax.tree.norm(grads), "acceptance_rate": jnp.asarray(acceptance, loss.dtype),
                   "reinit_fraction": nan,
                   "buffer_std": buffer_spread(buffer, x_neg) if generative else nan,
                   "finite": ok}
        return guarded, metrics

    return Trainer("jem", init, step)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Expected calibration error: the bin-weighted gap between confidence and accuracy.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    >>> round(expected_calibration_error(p, np.array([0, 1, 1]), num_bins=10), 3)
    0.4
    """
    probs, labels = np.asarray(probs), np.asarray(labels)
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)
