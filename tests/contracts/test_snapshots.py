"""The gate on the real contracts: every published version against its committed snapshot, and the command that
writes the snapshots (never by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.contracts import EVENT_TYPES, RouteCalculated, compat
from apps.contracts.compat import gate


def test_every_published_version_keeps_its_snapshot_under_full_compatibility() -> None:
    verdicts = gate()

    broken = [str(breach) for verdict in verdicts for breach in verdict.breaches]
    assert not broken, "the compatibility gate refuses:\n" + "\n".join(broken)
    stale = [f"{verdict.event}: {verdict.status}" for verdict in verdicts if verdict.status != "same"]
    assert not stale, (
        "snapshots are not current (new: a version without one; compatible: a change to record; retired: a "
        "snapshot without a version). Run `manage.py contracts snapshot` and commit apps/contracts/snapshots/:\n"
        + "\n".join(stale)
    )
    assert {verdict.event for verdict in verdicts} == set(EVENT_TYPES)


@pytest.fixture
def snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The command works on a copy of the committed snapshots."""
    for path in compat.SNAPSHOTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(compat, "SNAPSHOTS", tmp_path)
    return tmp_path


def edit(path: Path, change: dict[str, object]) -> None:
    published = json.loads(path.read_text())
    published["schema"]["properties"].update(change)
    path.write_text(json.dumps(published))


def test_the_snapshot_command_writes_a_new_version_and_a_compatible_change(
    snapshots: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    route = snapshots / f"{RouteCalculated.ce_type()}.json"
    before = route.read_text()
    (snapshots / "logiflow.routing.CustomerUpserted.v1.json").unlink()
    published = json.loads(before)  # as if the docstring had changed since (an annotation: compatible)
    published["schema"]["description"] = "A route was calculated."
    route.write_text(json.dumps(published))

    call_command("contracts", "snapshot")

    assert route.read_text() == before
    assert (snapshots / "logiflow.routing.CustomerUpserted.v1.json").exists()
    out = capsys.readouterr().out
    assert "logiflow.routing.RouteCalculated.v1: snapshot written" in out
    assert "logiflow.invoicing.InvoiceGenerated.v1: matches its snapshot" in out


def test_the_snapshot_command_refuses_a_breaking_change_and_writes_nothing(
    snapshots: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    route = snapshots / f"{RouteCalculated.ce_type()}.json"
    edit(route, {"co2_kg": {"type": "number"}})  # a field the current version no longer has
    (snapshots / "logiflow.routing.CustomerUpserted.v1.json").unlink()
    edited = route.read_text()

    with pytest.raises(CommandError, match=r"RouteCalculated.v1: field co2_kg: field-removed .* publish "
                                           r"logiflow.routing.RouteCalculated.v2 beside"):
        call_command("contracts", "snapshot")

    assert route.read_text() == edited
    assert "snapshot written" not in capsys.readouterr().out
    assert not (snapshots / "logiflow.routing.CustomerUpserted.v1.json").exists()


def test_the_check_fails_on_a_snapshot_whose_version_is_no_longer_published(snapshots: Path) -> None:
    (snapshots / "logiflow.routing.RouteCalculated.v0.json").write_text("{}")

    with pytest.raises(CommandError, match="not current"):
        call_command("contracts", "check")
