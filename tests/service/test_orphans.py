"""Orphan collection: blob files no database row references (a crash between the file write and
the commit) are deleted when the service starts, once older than the grace period; referenced
blobs, young files, foreign files and links are kept."""

from __future__ import annotations

import hashlib
import logging
import os
import time

from fastapi.testclient import TestClient

from poisonlab.service.app import create_app
from poisonlab.service.storage import BlobStore

HOUR = 3600.0


def _age(path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def _blob_path(store: BlobStore, data: bytes):
    return store.path(hashlib.sha256(data).hexdigest())


def test_collect_orphans_deletes_only_old_unreferenced_store_files(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    kept, orphan, young = (store.put(d) for d in (b"referenced", b"orphan", b"young"))
    tmp = store.path(orphan).parent / ".tmp-crashed"
    tmp.write_bytes(b"half a blob")
    foreign = store.path(orphan).parent / "notes.txt"
    foreign.write_text("not a blob")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / ("e" * 64)
    target.write_bytes(b"elsewhere")
    link = store.root / "ee" / ("e" * 64)
    link.parent.mkdir()
    link.symlink_to(target)
    for path in (store.path(kept), store.path(orphan), tmp, foreign, link):
        _age(path, HOUR)
    asked: list[str] = []

    def referenced(prefix: str) -> list[str]:
        asked.append(prefix)
        return [d for d in (kept,) if d.startswith(prefix)]

    deleted, still_young = store.collect_orphans(referenced, grace_s=60)
    assert (deleted, still_young) == (2, 1)  # the orphan and the temporary file; "young" waits
    assert sorted(store) == sorted([kept, young, "e" * 64])
    assert not tmp.exists() and foreign.exists() and link.is_symlink() and target.exists()
    assert "ee" not in asked  # a folder holding only a link needs no database query
    assert store.collect_orphans(referenced, grace_s=60, now=time.time() + HOUR) == (1, 0)
    assert young not in store and kept in store


def test_reusing_a_blob_refreshes_it(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"bytes")
    _age(store.path(digest), HOUR)
    store.put(b"bytes")  # an upload about to reference it: not an orphan any more
    assert time.time() - store.path(digest).stat().st_mtime < 60


def test_orphans_are_collected_when_the_service_starts(make_service, png, digits, caplog):
    svc = make_service(unsigned_policy="pending")
    image = png(digits.test.x[0])
    created = svc.client.post(
        "/v1/contributions",
        files={"file": ("d.png", image)},
        data={"label": "1"},
        headers=svc.headers("contributor"),
    )
    assert created.status_code == 201
    store = svc.state.store
    referenced = store.path(created.json()["sha256"])
    _age(referenced, HOUR)
    crashed = [b"crash-%d" % i for i in range(5)]
    for data in crashed:  # as a kill -9 between the file write and the commit leaves them
        store.put(data)
        _age(_blob_path(store, data), HOUR)
    in_flight = store.put(b"just written")  # younger than the grace period: kept
    with caplog.at_level(logging.INFO, logger="poisonlab.service"):
        restarted = create_app(svc.settings)
        with TestClient(restarted):
            state = restarted.state.service
            assert referenced.exists() and in_flight in store
            assert not any(_blob_path(store, d).exists() for d in crashed)
            assert "deleted 5 blob files" in caplog.text
            assert state.metrics.registry.get_sample_value("imrecs_orphan_blobs_collected_total") == 5
            assert state._orphan_timer is not None  # a second pass once "just written" is old enough
            assert state.collect_orphans(now=time.time() + HOUR) == (1, 0)
            assert in_flight not in store and referenced.exists()
