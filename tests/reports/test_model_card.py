"""The model card quotes the committed reports: every table line ``reports/lumos/model_card_tables.py``
prints from them is in ``plugins/lumos_ops/models/MODEL_CARD.md``."""

import importlib.util
import io
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "reports" / "lumos" / "model_card_tables.py"
CARD = ROOT / "plugins" / "lumos_ops" / "models" / "MODEL_CARD.md"


def _tables() -> str:
    spec = importlib.util.spec_from_file_location("model_card_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with redirect_stdout(out):
        assert module.main(["model_card_tables.py", str(ROOT / "reports" / "lumos")]) == 0
    return out.getvalue()


def test_every_printed_table_row_is_in_the_model_card():
    card = set(CARD.read_text().splitlines())
    rows = [line for line in _tables().splitlines() if line.startswith("|")]
    assert len(rows) > 100
    missing = [line for line in rows if line not in card]
    assert not missing, f"{len(missing)} rows differ from the committed reports, first: {missing[:3]}; rerun the " \
                        f"script and paste its tables into the card"


def test_the_summary_marks_every_missed_real_frame_target():
    import json

    summary = _tables().split("\n\n")[1].splitlines()
    assert summary[0].startswith("| target |")
    cells = [line.split(" | ")[3:6] for line in summary[2:]]  # the real frames' Sérsic, knots and blends
    missed = sum("**missed**" in cell for row in cells for cell in row)
    report = json.loads((ROOT / "reports" / "lumos" / "injection" / "injection_report.json").read_text())
    assert missed == sum(not t["met"] for t in report["targets"]) > 0


def test_the_readme_quotes_the_same_summary_and_counts():
    readme = set((ROOT / "README.md").read_text().splitlines())
    summary_and_counts = "\n".join(_tables().split("\n\n")[:4])
    rows = [line for line in summary_and_counts.splitlines() if line.startswith("|")]
    assert rows and [line for line in rows if line not in readme] == []
