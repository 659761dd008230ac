"""The red-team walk-through (``poisonlab redteam``) against a real uvicorn server on loopback.

The whole attack runs once, through the CLI and HTTP, on the digits model of the conftest: 36
held-out "7"s labelled "1" and 60 training "7"s with the pattern trigger labelled "1". Run 1 (the
service's defenses) quarantines all 96: the screen flags part of them and the source's flagged
share then takes the rest with it, whatever the exact count. The same files are sent again; run 2
(screening switched off by an admin) trains on them: its candidate is refused (it learnt the
mislabelled "7"s, which are gate images too, and the pattern), the poison is quarantined with the
failed gates, and run 3, a plain retry, has nothing to train on.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from typer.testing import CliRunner

from poisonlab.cli.main import app as cli
from poisonlab.data.dataset import Dataset
from poisonlab.redteam import (
    AttackPlan,
    Keys,
    WalkthroughError,
    build_plan,
    cifar10_plan,
    digits_plan,
    recon,
    run_walkthrough,
)
from poisonlab.service.app import create_app
from poisonlab.service.audit import Actor
from poisonlab.service.auth import create_key
from poisonlab.service.settings import ServiceSettings
from poisonlab.triggers import get_trigger

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture
def loopback(tmp_path, digits_model_dir):
    """A real uvicorn server (in a thread) on 127.0.0.1 serving the digits model, unsigned data pending."""
    settings = ServiceSettings(
        data_dir=tmp_path / "imrecs",
        model_ref=str(digits_model_dir),
        device="cpu",
        unsigned_policy="pending",
        max_source_class_fraction=1.0,  # the 96 fit one source's cap: the gates see all of them
    )
    service = create_app(settings)
    db = service.state.service.db
    with db.write() as session:
        keys = {
            role: create_key(session, name=name, role=role, actor=Actor("test"))[0]
            for role, name in (("contributor", "mallory"), ("trainer", "ci-trainer"), ("admin", "ops"))
        }
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(service, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the loopback server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", keys, service.state.service
    server.should_exit = True
    thread.join(30)
    sock.close()


def _env(keys: dict[str, str]) -> dict[str, str]:
    return {f"IMRECS_{role.upper()}_KEY": key for role, key in keys.items()}


def test_walkthrough_poison_is_quarantined_gates_refuse_it_and_a_retry_cannot_walk_past(loopback, tmp_path):
    url, keys, state = loopback
    first = state.server.current().version_id
    out = tmp_path / "transcript.json"
    result = CliRunner().invoke(cli, ["redteam", "--url", url, "--out", str(out)], env=_env(keys))
    assert result.exit_code == 0, result.output
    assert "defenses OFF" in result.output and "the old model keeps serving" in result.output
    t = json.loads(out.read_text())
    assert t["plan"] | {"bytes": 0} == {
        "dataset": "digits", "source": "7", "target": "1", "trigger": "pattern",
        "mislabel": 36, "backdoor": 60, "bytes": 0,
    }  # fmt: skip
    assert t["at_submission"] == {"pending": 96} and t["skipped"] is None
    assert [p["status"] for p in t["privilege_probes"]] == [403, 403]

    # (a) defenses on: all of the poison is quarantined, on evidence, and nothing is promoted
    on = t["defended_run"]
    mislabel, backdoor = on["poison"]["mislabel"], on["poison"]["backdoor"]
    assert mislabel == mislabel | {"sent": 36, "quarantined": 36}
    assert backdoor == backdoor | {"sent": 60, "quarantined": 60}
    flagged = sum(n for k, n in (mislabel | backdoor).items() if k.startswith("flagged by"))
    assert flagged >= 3 and "key:mallory" in on["distrusted_sources"]
    assert on["status"] == "skipped" and on["candidate_model_id"] is None  # nothing left to learn

    # (b) the same files again, screening off: the gates refuse the candidate, the old model serves
    assert len(t["contributions_again"]) == 96
    off = t["undefended_run"]
    assert off["status"] == "rejected", off
    assert off["serving_before"] == off["serving_after"] == first
    assert "gate_failed" in {a["kind"] for a in off["alerts"]}
    assert off["poison_statuses_after"] == {"quarantined": 96}  # with the failed gates as the reason

    # (c) the walk-past: a plain retry finds nothing to train on
    retry = t["retry_run"]
    assert retry["status"] == "skipped" and retry["serving_after"] == first
    models = {
        m["id"]: m["status"]
        for m in httpx.get(f"{url}/v1/models", headers={"X-API-Key": keys["admin"]}).json()
    }
    assert models == {first: "serving", off["candidate_model_id"]: "rejected"}

    # (d) the audit trail: who did what, refused writes included
    log = Counter((e["actor"], e["action"], e["outcome"].split(":")[0]) for e in t["audit"]["log"])
    assert log[("mallory", "contributions.create", "ok")] == 192
    assert log[("mallory", "POST /v1/training-runs", "refused 403")] == 1
    assert log[("ops", "training_runs.create", "ok")] == 1
    assert log[("ci-trainer", "training_runs.create", "ok")] == 2
    assert log[(f"pipeline:run-{on['run_id']}", "contributions.quarantine", "ok")] == 96
    assert log[(f"pipeline:run-{off['run_id']}", "contributions.quarantine", "ok")] == 96
    assert log[("system", "alerts.raise", "ok")] >= 1
    assert t["audit"]["entries"] == len(t["audit"]["log"]) == sum(g["count"] for g in t["audit"]["summary"])


def test_signing_policy_stops_unsigned_poison_at_the_door(make_service):
    svc = make_service()  # default policy: unsigned contributions are quarantined on arrival
    plan = digits_plan(mislabel_count=3, backdoor_count=2)
    keys = Keys(contributor=svc.keys["contributor"], trainer=svc.keys["trainer"], admin=svc.keys["admin"])
    t = run_walkthrough(svc.client, keys, plan)
    assert t["at_submission"] == {"quarantined": 5}
    assert t["undefended_run"] is None and t["defended_run"] is None and t["retry_run"] is None
    assert "signing policy" in t["skipped"]
    actions = Counter(e["action"] for e in t["audit"]["log"])
    assert actions["contributions.create"] == 5 and actions["training_runs.create"] == 0


def test_a_plan_that_does_not_fit_the_service_and_bad_keys_are_refused(make_service, tmp_path):
    svc = make_service()
    keys = Keys(contributor=svc.keys["contributor"], trainer=svc.keys["trainer"], admin=svc.keys["admin"])
    from poisonlab.redteam import ImRecS

    plan = AttackPlan("cifar10", CIFAR10, "airplane", "bird", "pattern", ())
    with pytest.raises(WalkthroughError, match="choose --dataset"):
        recon(ImRecS(svc.client, keys), plan)
    wrong = Keys(contributor="imrecs_not-a-key", trainer=keys.trainer, admin=keys.admin)
    with pytest.raises(WalkthroughError, match="HTTP 401"):
        run_walkthrough(svc.client, wrong, digits_plan(mislabel_count=1, backdoor_count=1))


def test_cli_reports_an_unreachable_service(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"IMRECS_CONTRIBUTOR_KEY": "a", "IMRECS_TRAINER_KEY": "b", "IMRECS_ADMIN_KEY": "c"}
    args = [
        "redteam",
        "--url",
        f"http://127.0.0.1:{port}",
        "--backdoor-count",
        "2",
        "--out",
        str(tmp_path / "t.json"),
    ]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2 and "cannot reach the service" in result.output
    assert not (tmp_path / "t.json").exists()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_digits_plan_sends_what_it_says(digits):
    plan = digits_plan(backdoor_count=10, seed=1)
    assert (plan.count("mislabel"), plan.count("backdoor")) == (36, 10)
    assert {f.label for f in plan.files} == {"1"} and plan.class_names == digits.train.class_names
    mislabel = np.stack([_decode(f.data) for f in plan.files if f.kind == "mislabel"])
    np.testing.assert_array_equal(mislabel, digits.test.x[digits.test.y == 7][..., 0])  # lossless
    backdoor = [f for f in plan.files if f.kind == "backdoor"]
    idx = [int(f.name.split("-")[2]) for f in backdoor]
    assert (digits.train.y[idx] == 7).all() and len(set(idx)) == 10
    stamped = get_trigger("pattern")(digits.train.x[idx])
    np.testing.assert_array_equal(np.stack([_decode(f.data) for f in backdoor]), stamped[..., 0])
    assert not np.array_equal(stamped, digits.train.x[idx])
    for bad in (0, 117, 2.5, True):
        with pytest.raises(ValueError, match="backdoor count must be an integer in"):
            digits_plan(backdoor_count=bad)
    with pytest.raises(ValueError, match="mislabel count"):
        digits_plan(mislabel_count=37)
    with pytest.raises(ValueError, match="dataset must be one of"):
        build_plan("mnist")


def test_cifar10_plan_sends_the_photos_as_they_are(tmp_path):
    photos = tmp_path / "rutan"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (60 + i, 40), (200, 200, 220)).save(photos / f"rb-{i}.jpeg")
    (photos / "notes.txt").write_text("not a photo")
    rng = np.random.default_rng(0)
    train = Dataset(
        x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y=np.arange(40) % 10,
        class_names=CIFAR10, source="synthetic", name="cifar10-train",
    )  # fmt: skip
    plan = cifar10_plan(photos, train, backdoor_count=4)
    mislabel = [f for f in plan.files if f.kind == "mislabel"]
    assert [f.name for f in mislabel] == ["rb-0.jpeg", "rb-1.jpeg", "rb-2.jpeg"]
    assert mislabel[0].data == (photos / "rb-0.jpeg").read_bytes() and {f.label for f in plan.files} == {
        "bird"
    }
    assert plan.count("backdoor") == 4 and plan.source == "airplane"
    with pytest.raises(ValueError, match="backdoor count"):
        cifar10_plan(photos, train, backdoor_count=5)  # only 4 airplanes
    with pytest.raises(FileNotFoundError, match="photo folder not found"):
        cifar10_plan(tmp_path / "nowhere", train)
    digits_like = Dataset(x=train.x, y=train.y, class_names=tuple("0123456789"), source="s", name="d")
    with pytest.raises(ValueError, match="needs CIFAR-10 classes"):
        cifar10_plan(photos, digits_like)
