"""The wheel: every SQL file inside, and the CLI working from an install, in and out of the repo.

The wheel is built offline from a copy of the sources (`--no-build-isolation`: the test extra
brings a setuptools that reads pyproject.toml). It is installed with `--no-deps` into a fresh
venv that borrows the dependencies of the project's venv through a .pth line: Python does not
run the .pth files of a directory added that way, so the project's editable install of
`reconcile` stays out of it, and the installed wheel is what `reconcile` means there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SQL_FILES = sorted(str(path.relative_to(ROOT / "sql")) for path in (ROOT / "sql").rglob("*.sql"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("reconcile", "sql"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-index",
         "--no-build-isolation", "-w", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    # setuptools warns of a data folder it would not ship as a package (issue 10, item 13).
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    (found,) = out.glob("reconcile-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    python = home / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)],
        check=True, timeout=120,
    )  # fmt: skip
    return home


def test_the_wheel_holds_every_sql_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in SQL_FILES if f"reconcile/sql/{name}" not in names]
    assert not missing
    # Alembic's environment and revisions of the ledger, found through importlib when installed
    assert "reconcile/ledger_migrations/env.py" in names
    revisions = [name for name in names if name.startswith("reconcile/ledger_migrations/versions/")]
    assert len([name for name in revisions if name.endswith("_runs_and_sent_events.py")]) == 1


@pytest.mark.parametrize("where", ["repository root", "elsewhere"])
def test_an_installed_cli_runs_from_anywhere(venv: Path, tmp_path: Path, where: str) -> None:
    # From the repository root, ./reconcile shadows the installed package and its SQL is in
    # ./sql; elsewhere the installed package data is used.
    cwd = ROOT if where == "repository root" else tmp_path
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    python = str(venv / "bin" / "python")
    help_text = subprocess.run(
        [python, "-m", "reconcile", "--help"], cwd=cwd, env=env, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert help_text.returncode == 0, help_text.stderr
    for command in ([python, "-m", "reconcile"], [str(venv / "bin" / "reconcile")]):
        printed = subprocess.run(
            [*command, "migrate", "--print-sql"], cwd=cwd, env=env, capture_output=True,
            text=True, check=False, timeout=60,
        )  # fmt: skip
        assert printed.returncode == 0, printed.stderr
        assert "alembic_version" in printed.stdout
        assert "-- Running upgrade 002_server_identity_and_coverage -> 003_interrupted_runs" in (
            printed.stdout
        )
    located = subprocess.run(
        [python, "-c", "from reconcile import queries; print(queries.sql_dir())"], cwd=cwd,
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    expected = ROOT / "sql" if where == "repository root" else Path(venv)
    assert located.startswith(str(expected)), located
