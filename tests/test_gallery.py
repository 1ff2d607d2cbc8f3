"""Every gallery example runs to the end in fast mode and draws a figure.

Each example runs in its own process (as a user runs it: ``EBMPPL_FAST=1 python examples/plot_x.py``),
one test per example, so the suite's workers share them out and a failure or a hang names its example.
The documentation build (tests/test_docs.py) renders the same examples' pages without running them again.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from conftest import SUITE_XLA_FLAGS

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))

# runs the script as __main__ and checks that a figure is left to show (what sphinx-gallery scrapes)
RUNNER = """
import runpy, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
runpy.run_path(sys.argv[1], run_name="__main__")
if not plt.get_fignums():
    sys.exit(f"{sys.argv[1]} drew no figure")
"""


# the examples whose fast mode runs long programs (training on the digits, thousands of steps) compile with XLA's
# optimisations; the others, mostly compiling, without most of them (tests/conftest.py: set_compile_level).
# Measured example by example in one full run at each level: e.g. plot_rbm_digits 22 s optimised vs 34 s not,
# plot_composition 65 s vs 37 s.
OPTIMIZED = {"plot_fit_two_moons", "plot_inpainting_digits", "plot_ising_learning", "plot_jem_digits",
             "plot_latent_ebm_prior_digits", "plot_rbm_digits", "plot_structured_hinge", "plot_tempered_negatives",
             "plot_training_schemes"}


def _group(path: pathlib.Path) -> str:
    # one group per example (tests/conftest.py: one group per file otherwise), so the workers share the
    # examples out one at a time, the longest first (tests/group_durations.json)
    return f"examples/{path.name}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "example", [pytest.param(p, id=p.stem, marks=pytest.mark.xdist_group(_group(p))) for p in EXAMPLES])
def test_example_runs_in_fast_mode(example, tmp_path):
    env = {**os.environ, "EBMPPL_FAST": "1", "MPLBACKEND": "Agg", "EBMPPL_FIGURE": str(tmp_path / "figure.png")}
    env["XLA_FLAGS"] = SUITE_XLA_FLAGS  # no forced device count; the suite's compile flags
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "0" if example.stem in OPTIMIZED else "1"
    # EBMPPL_CPU_DEVICES=1 (tests/conftest.py) is kept: with two devices every fit and sample of an example
    # would shard while the suite's other worker holds the other core (oversubscribed devices wait on each
    # other); tests/test_sharding.py checks the sharded paths. The run's compilation cache is inherited.
    run = subprocess.run([sys.executable, "-c", RUNNER, str(example)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


def test_every_example_is_in_the_gallery():
    assert len(EXAMPLES) >= 20
    assert OPTIMIZED <= {p.stem for p in EXAMPLES}, "an example in OPTIMIZED was renamed or removed"
    for path in EXAMPLES:  # sphinx-gallery needs the title block: a module docstring whose first line is the title
        source = path.read_text()
        assert source.startswith('"""'), f"{path.name}: no docstring title block"
