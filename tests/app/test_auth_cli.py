"""`hapvr keys create|list|revoke` against the catalog of a running service."""

from __future__ import annotations

import re

import pytest

from app.cli import main
from tests.app.authtools import bearer


def test_create_list_revoke_round_trip(service_factory, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    service = service_factory(auth="required")
    data_dir = str(service.backend.settings.data_dir)
    capsys.readouterr()

    assert main(["keys", "create", "--scope", "write", "--name", "ingest robot", "--data-dir", data_dir]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[-1]  # alone on the last line
    assert re.fullmatch(r"hapvr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key), lines
    assert key not in "\n".join(lines[:-1])
    key_id = int(re.search(r"API key (\d+)", lines[0]).group(1))  # type: ignore[union-attr]

    # The running service takes the new key at once; it is a write key, so it may not delete.
    assert service.client.get("/videos", headers=bearer(key)).status_code == 200
    assert service.client.delete("/videos/1", headers=bearer(key)).status_code == 403

    assert main(["keys", "list", "--data-dir", data_dir]) == 0
    listing = capsys.readouterr().out
    assert key not in listing and key.split("_", 2)[2] not in listing
    row = next(line for line in listing.splitlines() if line.split()[0] == str(key_id))
    assert row.split()[1:4] == ["write", "active", key.split("_")[1]] and row.endswith("ingest robot")

    assert main(["keys", "revoke", str(key_id), "--data-dir", data_dir]) == 0
    assert f"revoked API key {key_id}" in capsys.readouterr().out
    refused = service.client.get("/videos", headers=bearer(key))  # remembered by the service, still refused
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert main(["keys", "list", "--data-dir", data_dir]) == 0
    assert re.search(rf"^\s*{key_id}\s+write\s+revoked\s", capsys.readouterr().out, re.MULTILINE)

    assert main(["keys", "revoke", "999", "--data-dir", data_dir]) == 1
    assert "no API key 999" in capsys.readouterr().err


def test_keys_on_a_fresh_catalog_by_database_url(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"
    assert main(["keys", "list", "--database-url", url]) == 0
    assert capsys.readouterr().out.strip() == "no API keys"
    assert main(["keys", "create", "--scope", "admin", "--database-url", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("hapvr_")
    assert main(["keys", "create", "--scope", "read", "--name", "bad\x07name", "--database-url", url]) == 2
    assert "--name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["keys", "create", "--scope", "root", "--database-url", url])
