"""The scheduling files of cron/: one Kubernetes kind per manifest, commands the CLI has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from reconcile.cli import cli

CRON = Path(__file__).resolve().parents[1] / "cron"
MANIFESTS = sorted(CRON.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return list(spec["template"]["spec"]["containers"])


def command_of(args: list[str]) -> click.Command:
    """The CLI command `args` run; fails the test when the CLI would not parse them."""
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, args[0])
        assert command is not None, f"`reconcile {args[0]}` is not a command"
        command.make_context(args[0], list(args[1:]), parent=ctx)
    return command


def envvars(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        found = getattr(param, "envvar", None)
        names.update([found] if isinstance(found, str) else found or [])
    return names


def by_name() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for path in MANIFESTS for doc in documents(path)}


def test_each_manifest_holds_one_kind() -> None:
    kinds: dict[str, list[str]] = {}
    for path in MANIFESTS:
        docs = documents(path)
        assert len(docs) == 1, f"{path.name} holds {len(docs)} documents: keep one kind per file"
        kinds.setdefault(docs[0]["kind"], []).append(path.name)
    assert set(kinds) == {"Secret", "ConfigMap", "Job", "CronJob"}
    # A Job's template is immutable: it must never share a file with the CronJob.
    assert len(kinds["Job"]) == 2 and not set(kinds["Job"]) & set(kinds["CronJob"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("reconcile", "run"), ("reconcile-migrate", "migrate"), ("reconcile-backfill", "backfill")],
)
def test_jobs_run_reconcile_commands_with_settings_the_cli_reads(name: str, expected: str) -> None:
    by_kind = {doc["kind"]: doc for path in MANIFESTS for doc in documents(path)}
    job = by_name()[name] if name != "reconcile" else by_kind["CronJob"]
    kind = f"{job['kind']} {name}"
    (container,) = containers(job)
    assert container["args"][0] == expected
    command = command_of(container["args"])
    given = {entry["name"] for entry in container.get("env", [])}
    if expected != "migrate":  # the ConfigMap holds the runs' settings (migrate needs fewer)
        given |= set(by_kind["ConfigMap"]["data"])
    # Every setting the pod gets is one the command reads (a typo would be silently ignored).
    unread = given - envvars(command)
    assert not unread, f"{kind} sets {sorted(unread)}, which `reconcile {expected}` never reads"
    secret = by_kind["Secret"]["stringData"]
    for entry in container.get("env", []):
        if "value" in entry:
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == by_kind["Secret"]["metadata"]["name"]
        assert ref["key"] in secret or ref.get("optional"), ref


def test_the_backfill_is_an_indexed_job_of_workers_sharing_parts() -> None:
    job = by_name()["reconcile-backfill"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["parallelism"] >= 2
    (container,) = containers(job)
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert env["RECONCILE_PART"]  # every pod cuts the window the same way: they join one run
    assert "RECONCILE_WORKERS" not in env  # a pod is one worker; the Job makes them many


def test_all_jobs_use_one_image() -> None:
    images = {
        container["image"]
        for path in MANIFESTS
        for doc in documents(path)
        if doc["kind"] in {"Job", "CronJob"}
        for container in containers(doc)
    }
    assert len(images) == 1, images


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("reconcile.crontab", r"\.venv/bin/reconcile (.*?) 2>>"),
        ("reconcile.service", r"^ExecStart=\S*/reconcile (.*)$"),
    ],
)
def test_cron_and_systemd_run_a_cli_command(name: str, pattern: str) -> None:
    found = re.search(pattern, (CRON / name).read_text(encoding="utf-8"), re.MULTILINE)
    assert found, f"{name} runs no reconcile command"
    assert command_of(shlex.split(found.group(1))).name == "run"


def test_readme_names_every_manifest_in_apply_order() -> None:
    readme = (CRON / "README.md").read_text(encoding="utf-8")
    assert "being built" not in readme
    applied = re.findall(r"kubectl apply .*", readme)
    order = [
        name for line in applied for name in re.findall(r"cron/(reconcile-[\w-]+\.yaml)", line)
    ]
    assert sorted(order) == [path.name for path in MANIFESTS]
    assert order.index("reconcile-migrate-job.yaml") < order.index("reconcile-cronjob.yaml")
