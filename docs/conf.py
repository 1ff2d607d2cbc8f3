"""Sphinx configuration for the ebmppl documentation.

Build (from the repository root)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

``EBMPPL_FAST=1`` runs every gallery example with a small budget (what the
test suite does, one example per test: tests/test_gallery.py); without it the
examples run their full recipes (about 15 minutes on 2 CPU cores).
``-D plot_gallery=0`` builds the pages without running the examples.
"""

import os
import pathlib
import sys
import tempfile
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
# Two CPU devices even on a one-core builder, so that the sharding example shows sharding (read by
# `import ebmppl`, which must come first: ebmppl.sharding.configure_cpu_devices). A value set by the caller wins
# (the test suite runs the examples with one device: its other worker holds the other core).
os.environ.setdefault("EBMPPL_CPU_DEVICES", "2")
# The examples also save their figure to a file for people running them by hand; keep that out of the tree.
os.environ.setdefault("EBMPPL_FIGURE", os.path.join(tempfile.mkdtemp(prefix="ebmppl-docs-"), "figure.png"))
# ArviZ 0.23 announces its 1.x refactor on import; that notice is not a problem with our docs.
warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
warnings.filterwarnings("ignore", message=".*arviz.*", category=FutureWarning)

import ebmppl  # noqa: E402

project = "ebmppl"
author = "ebmppl developers"
copyright = "2026, ebmppl developers"
release = ebmppl.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served with the site: math renders offline too
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_old_index.md", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.json"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # NamedTuple fields are documented by autodoc already
napoleon_custom_sections = [("Notes", "notes_style")]
suppress_warnings = ["config.cache"]
nitpicky = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 5,
}

html_theme = "pydata_sphinx_theme"
html_title = "ebmppl"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
# An empty default makes the theme's script log "invalid theme mode" before the first toggle.
html_context = {"default_mode": "auto"}
html_show_sourcelink = False
