"""The layout holds: imports go down the pipeline only, and production code pulls in no test support."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_imports_go_down_the_pipeline_without_cycles() -> None:
    # The contracts live in pyproject.toml; any upward or circular import breaks one.
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_production_entry_points_import_no_emulator_demo_or_test_module() -> None:
    script = (
        "import json, sys\n"
        "import reconcile, reconcile.commands, reconcile.cli\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    modules = json.loads(result.stdout)
    assert "reconcile.commands" in modules
    support = [
        name
        for name in modules
        if name.startswith(("reconcile.lago_emulator", "reconcile.demo", "reconcile.testing"))
        or name.split(".")[0] in {"pytest", "hypothesis", "conftest", "pgserver"}
    ]
    assert support == []
