"""
JEM: a digit classifier that is also an energy-based model
==========================================================

A classifier's logits ``f(x)`` define ``E(x, y) = -f(x)[y]`` and
``E(x) = -logsumexp_y f(x)[y]``. JEM (Grathwohl et al. 2020) trains the same
network on cross-entropy *plus* contrastive divergence on ``E(x)`` (SGLD
negatives, replay buffer). We compare it with the same network trained on
cross-entropy alone — accuracy and expected calibration error on held-out
digits — and draw class-conditional samples from ``E(x, y)`` with
``sample_conditional``, which keeps them in the data's range and checks them:
it warns if a sampler lets them leave it (the classifier would still label them
confidently) or if they pile on the clamp box far more often than the data's
pixels do (saturated samples: in the quick run, whose model is trained for only
200 steps, it says so for most digits). Set ``EBMPPL_FAST=1`` for a quick run.
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import fit
from ebmppl.data import load_digits
from ebmppl.jem import expected_calibration_error, jem_hybrid, joint_energy, sample_conditional

FAST = os.environ.get("EBMPPL_FAST") == "1"
STEPS = 200 if FAST else 3000

x, y = map(jnp.asarray, load_digits("train"))
x_test, y_test = load_digits("test")


class Classifier(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, key):
        self.mlp = eqx.nn.MLP(64, 10, 256, 2, activation=jax.nn.silu, key=key)

    def __call__(self, image):
        return self.mlp(image.reshape(-1))


# %%
# Train twice from the same initialisation: cross-entropy only, then JEM.
results = {}
for name, weight in (("cross-entropy", 0.0), ("JEM", 1.0)):
    joint = joint_energy(Classifier(jax.random.key(0)), event_shape=(1, 8, 8), data=x)  # records the data's range
    trainer = jem_hybrid(joint, optax.adam(1e-3, b1=0.0 if weight else 0.9), generative_weight=weight)
    fitted = fit(joint.energy, jax.random.key(1), (x, y), num_steps=STEPS, batch_size=128, objective=trainer,
                 progress_bar=False)
    probs = np.asarray(joint.predict(fitted.state.params, jnp.asarray(x_test)))
    results[name] = (joint, fitted, probs)
    print(f"{name:14s} test accuracy {(probs.argmax(1) == y_test).mean():.4f}   "
          f"ECE {expected_calibration_error(probs, y_test):.4f}")

# %%
# Class-conditional samples from E(x, y) = -f(x)[y]: practical Langevin (step 1, noise 0.01) from
# noise over the data's range, clamped to each pixel's range, 200 steps; checked against the data
# (range, and piles on the clamp box). jem_hybrid's negatives used the same box and scale, taken
# from the data recorded by joint_energy(..., data=x).
joint, fitted, _ = results["JEM"]
rows = []
for digit in range(10):
    drawn = sample_conditional(joint, jax.random.key(10 + digit), fitted.state.params, digit, num_samples=8,
                               num_mcmc_steps=200)
    rows.append(np.asarray(drawn[:, 0]))
fig, axes = plt.subplots(10, 8, figsize=(6, 7.5), layout="constrained")
for digit in range(10):
    for j in range(8):
        axes[digit, j].imshow(rows[digit][j], cmap="gray_r", vmin=-1, vmax=1)
        axes[digit, j].axis("off")
    axes[digit, 0].set_title(str(digit), fontsize=8, loc="left")
fig.suptitle("JEM: class-conditional samples, one row per digit")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "jem_digits.png"), dpi=100)
