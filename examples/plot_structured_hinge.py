"""
Structured prediction with the hinge loss
=========================================

An energy over inputs *and* outputs, ``E_θ(x, y)``, predicts by minimisation,
``ŷ = argmin_y E_θ(x, y)``, and learns by making the correct answer's energy
lower than the others' (LeCun et al. 2006). Here ``y`` is a binary sequence of
length 8 (256 possible answers) whose bits come in runs, and ``x`` is a noisy
reading of it. The energy has a unary term (a learned filter over the
readings) and a pairwise term that rewards neighbouring bits agreeing:

.. math::

    E_θ(x, y) = -\\sum_i s_i\\,(w \\ast x)_i \\; - \\; J \\sum_i s_i s_{i+1},
    \\qquad s = 2y - 1 .

Inference is exhaustive (``argmin_discrete`` over the 256 candidates). We
train with the hinge loss against the most offending incorrect answer,
``max(0, m + E(x, y*) - min_{y ≠ y*} E(x, y))``, compare with the perceptron
and log losses, with the same energy without the pairwise term, and show the
energy loss collapsing: with nothing pushing wrong answers up, it lowers every
energy without bound. Set ``EBMPPL_FAST=1`` for a quick run.
"""

import itertools
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl.structured import (
    argmin_discrete,
    candidate_energies,
    energy_loss,
    hinge_loss,
    log_loss,
    perceptron_loss,
)

FAST = os.environ.get("EBMPPL_FAST") == "1"
STEPS = 100 if FAST else 600
L, NOISE = 8, 1.1

# %%
# Data: bits that stay the same with probability 0.85, read with Gaussian noise.
rng = np.random.default_rng(0)


def make(n):
    flips = rng.random((n, L)) > 0.85
    flips[:, 0] = rng.random(n) > 0.5
    y = np.cumsum(flips, axis=1) % 2
    x = (2 * y - 1) + NOISE * rng.normal(size=(n, L))
    return jnp.asarray(x, jnp.float32), jnp.asarray(y)


x_train, y_train = make(2000)
x_test, y_test = make(2000)
candidates = jnp.asarray(list(itertools.product([0, 1], repeat=L)))  # (256, L)
labels_train = jnp.asarray((y_train[:, None, :] == candidates[None]).all(-1).argmax(1))  # index of y* among them


def energy(params, x, y):
    s = 2.0 * y - 1.0
    unary = jnp.convolve(x, params["w"], mode="same") + params["b"]
    return -jnp.sum(s * unary) - params["J"] * jnp.sum(s[1:] * s[:-1])


def train(loss_fn, pairwise=True):
    params = {"w": jnp.array([0.0, 0.1, 0.0]), "b": jnp.zeros(()), "J": jnp.zeros(())}  # zero is degenerate
    opt = optax.adam(0.05)

    def objective(p):
        p = p if pairwise else {**p, "J": jnp.zeros(())}
        return loss_fn(candidate_energies(energy, p, x_train, candidates), labels_train)

    @jax.jit
    def step(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(objective)(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=STEPS)
    return (params if pairwise else {**params, "J": jnp.zeros(())}), np.asarray(losses)


# %%
# Train with each loss; measure bit accuracy and whole-sequence accuracy on held-out data.
runs = {
    "hinge (m = 1)": train(lambda e, y: hinge_loss(e, y, margin=1.0)),
    "perceptron": train(perceptron_loss),
    "log loss": train(log_loss),
    "hinge, no pairwise term": train(lambda e, y: hinge_loss(e, y, margin=1.0), pairwise=False),
    "energy loss": train(energy_loss),
}
scores = {}
for name, (params, losses) in runs.items():
    idx, _ = argmin_discrete(energy, params, x_test, candidates)
    pred = candidates[idx]
    scores[name] = (float(jnp.mean(pred == y_test)), float(jnp.mean((pred == y_test).all(-1))))
    print(f"{name:24s} bits {scores[name][0]:.3f}   sequences {scores[name][1]:.3f}   J = {float(params['J']):.2f}")
print(f"{'thresholding x':24s} bits {float(jnp.mean((x_test > 0) == y_test)):.3f}")

# %%
# Loss curves (the energy loss runs off to -∞), accuracies, and a few test predictions.
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
for name, (_, losses) in runs.items():
    axes[0].plot(losses, label=name)
axes[0].set(xlabel="Adam step", ylabel="training loss", yscale="symlog", title="training")
axes[0].legend(fontsize=8)
names = list(scores)
pos = np.arange(len(names))
axes[1].barh(pos + 0.2, [scores[n][0] for n in names], 0.4, label="bits")
axes[1].barh(pos - 0.2, [scores[n][1] for n in names], 0.4, label="whole sequences")
axes[1].set(yticks=pos, yticklabels=names, xlim=(0, 1), xlabel="held-out accuracy", title="argmin inference")
axes[1].invert_yaxis()
axes[1].legend(loc="lower right", fontsize=8)
params = runs["hinge (m = 1)"][0]
idx, _ = argmin_discrete(energy, params, x_test[:12], candidates)
panel = np.concatenate([np.asarray(y_test[:12]), np.asarray(x_test[:12] > 0), np.asarray(candidates[idx])], axis=1)
axes[2].imshow(panel, cmap="Greys", aspect="auto")
axes[2].axvline(L - 0.5, c="tab:red")
axes[2].axvline(2 * L - 0.5, c="tab:red")
axes[2].set(xticks=[L / 2 - 0.5, 1.5 * L - 0.5, 2.5 * L - 0.5], xticklabels=["truth", "x > 0", "hinge argmin"],
            yticks=[], title="12 test sequences")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "structured_hinge.png"), dpi=100)
