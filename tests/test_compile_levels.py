"""The suite's compile levels are applied (tests/conftest.py): an unmarked file compiles without most optimisations."""

import os
import subprocess
import sys

import jax
import pytest

HAS_OPTION = "jax_disable_most_optimizations" in jax.config.values


@pytest.mark.skipif(not HAS_OPTION, reason="this jax has no jax_disable_most_optimizations: one level for all")
def test_an_unmarked_file_compiles_without_most_optimizations_and_passes_it_on():
    assert jax.config.values["jax_disable_most_optimizations"] is True
    code = "import jax; print(jax.config.values['jax_disable_most_optimizations'])"
    child = subprocess.run([sys.executable, "-c", code], env={**os.environ, "JAX_PLATFORMS": "cpu"},
                           capture_output=True, text=True, timeout=300)
    assert child.stdout.strip().splitlines()[-1] == "True", child.stderr[-2000:]
