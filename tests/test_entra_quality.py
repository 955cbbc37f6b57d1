"""The labelled month rendered as Entra records (bench/entra.py): every record maps to what it
renders, and detection over the Entra rendering finds every attack Entra logs, without false
alerts."""

from __future__ import annotations

from collections import Counter

from bench import entra
from bench import labelled as month
from shared.entra.audits import type_of
from shared.entra.pull import MAPPERS


def test_every_rendered_record_maps_to_the_kind_it_renders() -> None:
    t, _ = month.scenario()
    records, skipped = entra.render(t)
    assert set(skipped) == {"FILE_DOWNLOADED", "FILE_UPLOADED", "SEND_ON_BEHALF"}
    assert all(type_of(name) != "other" for name in entra.AUDIT_NAMES.values())
    kinds = Counter(MAPPERS[log](rec, entra.TENANT, at).type for at, log, rec in records)
    sign_ins = Counter(v["event"] for _, _, v in t.changes if v["event"] in entra.SIGN_INS)
    assert kinds["login"] == sign_ins["LOGIN"] and kinds["login_failed"] == sign_ins["LOGIN_FAILED"]
    assert "other" not in kinds


def test_detection_on_the_entra_rendering_finds_every_attack_entra_logs() -> None:
    result = entra.replay(geolocate=True)
    assert result["incidents_not_rendered"] == {"vigil.unusual_impersonation": 3}
    assert result["incidents"] == 21
    assert result["recall"] == dict.fromkeys(result["recall"], 1.0)
    assert len(result["recall"]) == 7
    assert result["false_alerts"] == []
    assert result["alerts_per_incident"] <= 1.1
