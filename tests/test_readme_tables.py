"""README's model tables equal the JSON the measurements wrote (benchmarks/readme_tables.py):
a number typed into README, or a measurement not carried into it, fails here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tables():
    spec = importlib.util.spec_from_file_location("readme_tables",
                                                  ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_equal_their_json():
    tables = _tables()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in tables.TABLES:
        assert tables.BEGIN.format(name=name) in readme, f"README lacks the {name} table"
    assert tables.render(readme) == readme, \
        "README's generated tables differ from the JSON: run python benchmarks/readme_tables.py"


def test_a_typed_number_is_caught():
    tables = _tables()
    readme = tables.render((ROOT / "README.md").read_text(encoding="utf-8"))
    begin = tables.BEGIN.format(name="cards")
    edited = readme.replace(begin + "\n", begin + "\n| typed | by | hand | here |\n", 1)
    assert tables.render(edited) != edited
