"""The HTML pages of run folders, from the templates in ``ebmppl/runs/templates``, every value escaped.

A template is an HTML file with ``$name`` placeholders (:class:`string.Template`).
:func:`render` fills them; every value is escaped with :func:`html.escape`
(run names, file paths, configuration values and warnings are the user's
text) unless it is :class:`Html`: a fragment this module built from escaped
parts (a table, a list).
"""

from __future__ import annotations

import dataclasses
import html
import importlib.resources
import json
import os
import pathlib
import string
from collections.abc import Iterable, Mapping
from typing import Any

from ebmppl.distributed import is_primary

__all__ = ["Html", "escape", "render", "table", "fit_report", "compare_report", "write_text", "write_json"]


class Html(str):
    """Markup that is already safe: :func:`render` and :func:`escape` insert it as it is.

    Examples
    --------
    >>> escape("<b>"), escape(Html("<b>"))
    ('&lt;b&gt;', '<b>')
    """


def escape(value: Any) -> Html:
    """``value`` as text safe to put into HTML (an element's content or a quoted attribute); :class:`Html` unchanged.

    Examples
    --------
    >>> escape('<script>alert("x")</script>')
    '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
    """
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def _template(name: str) -> string.Template:
    text = importlib.resources.files("ebmppl.runs").joinpath("templates", name).read_text(encoding="utf-8")
    return string.Template(text)


def render(template: str, **values: Any) -> str:
    """The page ``ebmppl/runs/templates/<template>`` with its ``$placeholders`` filled by ``values``, escaped.

    Raises
    ------
    ValueError
        ``values`` misses a placeholder of the template or names one it does not have.

    Examples
    --------
    >>> page = render("compare_report.html", name="<i>x</i>", num_chains=4, num_warmup=10, num_samples=10,
    ...               table=Html("<table></table>"), figures="")
    >>> "<h1>Samplers on &lt;i&gt;x&lt;/i&gt;</h1>" in page, "<table></table>" in page
    (True, True)
    """
    tmpl = _template(template)
    wanted = set(tmpl.get_identifiers())
    if wanted != set(values):
        missing, extra = sorted(wanted - set(values)), sorted(set(values) - wanted)
        raise ValueError(f"render({template!r}): missing values {missing}, unknown values {extra}; pass exactly the "
                         f"template's placeholders {sorted(wanted)}.")
    return tmpl.substitute({k: escape(v) for k, v in values.items()})


def table(rows: Mapping[str, Any], skip: Iterable[str] = ()) -> Html:
    """A two-column HTML table of ``rows`` (name, value), escaped; keys in ``skip`` left out.

    Examples
    --------
    >>> table({"a": 1, "<b>": "x&y"})
    '<table><tr><th>a</th><td>1</td></tr><tr><th>&lt;b&gt;</th><td>x&amp;y</td></tr></table>'
    """
    skip = set(skip)
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows.items() if k not in skip)
    return Html(f"<table>{cells}</table>")


def fit_report(cfg: Any, evaluation: Mapping[str, Any]) -> str:
    """The ``report.html`` of a run of :func:`ebmppl.runs.fit_run`: evaluation, configuration, figures, health.

    ``cfg`` is the run's :class:`~ebmppl.runs.FitConfig`; ``evaluation`` its
    ``evaluation.json`` (with ``health_warnings``, a list of strings).

    Examples
    --------
    >>> from ebmppl.runs import FitConfig
    >>> page = fit_report(FitConfig(out="<script>alert(1)</script>"), {"steps": 3, "health_warnings": ["a < b"]})
    >>> "<script>" in page, "&lt;script&gt;alert(1)&lt;/script&gt;" in page, "<li>a &lt; b</li>" in page
    (False, True, True)
    """
    notes = evaluation.get("health_warnings", [])
    if notes:
        health = Html("<ul class=warn>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    else:
        health = Html("<p>No warnings: energies bounded, chains mixing, acceptance in band; evaluation chains "
                      "healthy.</p>")
    left = "data, learned density, samples" if cfg.dataset != "digits" else "held-out data"
    name, about, samples_title = cfg.dataset, Html(""), "Model samples"
    density_section = Html(f'<h2>{escape(left)}</h2><img src="density.png" alt="{escape(left)}">')
    if cfg.data is not None:  # your own data: say what was measured, and how
        name = pathlib.Path(cfg.data).name  # file.npz:NAME keeps its NAME
        about = Html(
            f"<p>{escape(evaluation.get('n_train'))} training and {escape(evaluation.get('n_test'))} held-out rows of "
            f"<code>{escape(cfg.data)}</code> ({escape(evaluation.get('dim'))} coordinates), standardised for "
            f"training; every figure and log-likelihood is in the data's own units. log Z by "
            f"{escape(evaluation.get('log_z_method'))}; gaussian_log_likelihood is the held-out log-likelihood of a "
            "Gaussian fitted to the training rows, a baseline to beat.</p>")
        if evaluation.get("dim") != 2:
            density_section = Html("")
            samples_title = "Model samples against held-out data: marginal histograms and pairwise scatter"
    return render("fit_report.html", name=name, about=about, evaluation=table(evaluation, skip=["health_warnings"]),
                  config=table(dataclasses.asdict(cfg)), density_section=density_section,
                  samples_title=samples_title, health=health)


def compare_report(name: str, comparison: Any, figures: Iterable[str], *, num_chains: int, num_warmup: int,
                   num_samples: int) -> str:
    """The ``report.html`` of :func:`ebmppl.runs.compare_run`: the comparison table and its figures.

    ``comparison`` is a :class:`~ebmppl.diagnostics.Comparison` (its
    ``table``, a pandas DataFrame, is rendered escaped); ``figures`` the
    image files beside the page.

    Examples
    --------
    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> c = SimpleNamespace(table=pd.DataFrame({"sampler": ["<mala>"], "ess": [412.0]}))
    >>> page = compare_report("banana", c, ["trace_mala.png"], num_chains=4, num_warmup=10, num_samples=10)
    >>> "&lt;mala&gt;" in page, '<img src="trace_mala.png"' in page
    (True, True)
    """
    table_html = Html(comparison.table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="—",
                                               escape=True))
    images = Html("".join(f'<figure><img src="{escape(f)}" alt="{escape(f)}"><figcaption>{escape(f)}</figcaption>'
                          "</figure>" for f in figures))
    return render("compare_report.html", name=name, num_chains=num_chains, num_warmup=num_warmup,
                  num_samples=num_samples, table=table_html, figures=images)


def write_text(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename): never half a file.

    Under ``jax.distributed`` only process 0 writes (the others return at once).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "page.html"
    >>> write_text(path, "<p>hi</p>"); path.read_text()
    '<p>hi</p>'
    """
    if not is_primary():
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: pathlib.Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path``, atomically (see :func:`write_text`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.json"
    >>> write_json(path, {"a": 1}); json.loads(path.read_text())
    {'a': 1}
    """
    write_text(path, json.dumps(obj, indent=2))
