"""The pip path (pyproject.toml) and the conda path (environment.yml) pin the same packages,
and the running environment is the pinned one."""
from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)$")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for d in deps:
        m = PIN.match(d)
        assert m, f"pyproject.toml: {d!r} is not an exact pin (name==version)"
        pins[_canon(m[1])] = m[2]
    return pins


def environment_pins() -> dict[str, str]:
    pins, in_pip = {}, False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line.strip() == "- pip:":
            in_pip = True
            continue
        if in_pip and line.strip().startswith("- "):
            item = line.strip()[2:].strip()
            if item.startswith("-e"):
                continue
            m = PIN.match(item)
            assert m, f"environment.yml: {item!r} is not an exact pin"
            pins[_canon(m[1])] = m[2]
    return pins


def test_environment_yml_matches_pyproject():
    assert environment_pins() == pyproject_pins()


def test_environment_yml_python_is_311():
    assert "  - python=3.11" in (ROOT / "environment.yml").read_text().splitlines()


def test_installed_versions_are_the_pinned_ones():
    wrong = {}
    for name, pinned in pyproject_pins().items():
        have = version(name)
        if have.split("+")[0] != pinned.split("+")[0]:
            wrong[name] = (have, pinned)
    assert not wrong, f"installed != pinned (run `make setup`): {wrong}"
