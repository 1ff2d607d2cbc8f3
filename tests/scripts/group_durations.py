"""Refresh tests/group_durations.json from a full run's JUnit XML: seconds per xdist group, longest first.

tests/conftest.py starts the groups of the suite (one per test file, one per gallery example) in the order of
these seconds, so the two workers finish together. Run the whole suite with ``--junitxml``, then::

    python -m pytest --junitxml=junit.xml
    python tests/scripts/group_durations.py junit.xml

Under pytest-xdist's ``--dist loadgroup`` every test name ends in ``@<group>``; a name without it (a run without
xdist) is counted under its file, as conftest groups it. Groups the XML does not hold (a partial run) keep the
seconds already in the file; a file that cannot be read, or holds no test, changes nothing.
"""

from __future__ import annotations

import json
import pathlib
import sys
import xml.etree.ElementTree as ET

OUT = pathlib.Path(__file__).resolve().parents[1] / "group_durations.json"


def group_seconds(junit_xml: str) -> dict[str, float]:
    """Seconds (setup + call + teardown, as the XML reports them) summed per group."""
    seconds: dict[str, float] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        name, classname = case.get("name", ""), case.get("classname", "")
        if "@" in name:
            group = name.rsplit("@", 1)[1]
        else:  # tests.test_x -> tests/test_x.py; ebmppl.runs.evaluate -> ebmppl/runs/evaluate.py
            group = classname.replace(".", "/") + ".py"
        seconds[group] = seconds.get(group, 0.0) + float(case.get("time", 0.0))
    return seconds


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python tests/scripts/group_durations.py junit.xml")
    try:
        seconds = group_seconds(argv[0])
    except (OSError, ET.ParseError) as err:
        sys.exit(f"group_durations: cannot read {argv[0]} as JUnit XML ({err}); {OUT.name} is unchanged.")
    if not seconds:  # a wrong file or an empty run: keep the measured order rather than wipe it
        sys.exit(f"group_durations: {argv[0]} holds no test cases; {OUT.name} is unchanged.")
    try:  # a partial run (-k, one file) updates its groups and keeps the others' measured seconds
        kept = json.loads(OUT.read_text())["seconds"]
    except (OSError, ValueError, KeyError):
        kept = {}
    merged = {**kept, **{g: round(s, 1) for g, s in seconds.items()}}
    ordered = dict(sorted(merged.items(), key=lambda kv: -kv[1]))
    text = json.dumps({"source": "seconds per xdist group in one full run (2 workers, 2 cores); "
                                 "refreshed by tests/scripts/group_durations.py", "seconds": ordered}, indent=1)
    tmp = OUT.with_suffix(".json.tmp")  # written whole, then renamed: never a half-written file
    tmp.write_text(text + "\n")
    tmp.replace(OUT)
    print(f"{OUT}: {len(seconds)} groups measured in this run, {len(ordered)} in all, {sum(ordered.values()):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
