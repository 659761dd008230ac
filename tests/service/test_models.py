"""The model registry: versions with lineage, promotion, rollback, tamper refusal, bootstrap."""

from __future__ import annotations

import torch
from fastapi.testclient import TestClient

from poisonlab.models.checkpoint import load_model, save_model
from poisonlab.service.app import create_app
from poisonlab.service.audit import Actor
from poisonlab.service.registry import get_version, register_version


def _child(svc, name: str, status: str = "candidate", scale: float = 1.0):
    """Save a copy of the serving model with perturbed weights as a new version (parent: serving)."""
    serving = svc.state.server.current()
    with svc.state.db.read() as session:
        model, card = load_model(get_version(session, serving.version_id).path)
    with torch.no_grad():
        list(model.parameters())[-1].add_(scale * 0.01)  # the output layer's bias
    folder = svc.settings.models_dir / name
    save_model(
        model,
        folder,
        class_names=card.class_names,
        parent_id=serving.version_id,
        dataset_name=card.dataset_name,
    )
    with svc.state.db.write() as session:
        return register_version(session, folder, actor=Actor("test"), status=status, metrics={"note": name})


def test_bootstrap_registers_the_initial_model(service, digits_model_dir):
    viewer = service.headers("viewer")
    models = service.client.get("/v1/models", headers=viewer).json()
    assert len(models) == 1 and models[0]["status"] == "serving"
    detail = service.client.get(f"/v1/models/{models[0]['id']}", headers=viewer).json()
    assert detail["lineage"] == [models[0]["id"]] and detail["class_names"] == [str(d) for d in range(10)]
    assert detail["input_shape"] == [8, 8, 1] and len(detail["data_snapshot_hash"]) == 64
    ref = detail["reference_distribution"]["predicted"]
    assert len(ref) == 10 and abs(sum(ref) - 1) < 1e-4 and min(ref) > 0.05  # digits are balanced
    assert service.client.get("/v1/models/nope", headers=viewer).status_code == 404


def test_promote_and_rollback(service, png, digits):
    admin, viewer = service.headers("admin"), service.headers("viewer")
    first = service.state.server.current().version_id
    child = _child(service, "child")
    detail = service.client.get(f"/v1/models/{child.id}", headers=viewer).json()
    assert detail["status"] == "candidate" and detail["lineage"] == [child.id, first]
    promoted = service.client.post(f"/v1/models/{child.id}/promote", headers=admin)
    assert promoted.status_code == 200 and promoted.json()["status"] == "serving"
    prediction = service.client.post(
        "/v1/predict", files={"file": ("d.png", png(digits.test.x[0]))}, headers=viewer
    )
    assert prediction.json()["model_version"] == child.id
    statuses = {m["id"]: m["status"] for m in service.client.get("/v1/models", headers=viewer).json()}
    assert statuses == {first: "retired", child.id: "serving"}
    back = service.client.post("/v1/models/rollback", headers=admin)
    assert back.status_code == 200 and back.json()["id"] == first
    prediction = service.client.post(
        "/v1/predict", files={"file": ("d.png", png(digits.test.x[0]))}, headers=viewer
    )
    assert prediction.json()["model_version"] == first
    actions = [(e["action"], e["target"]) for e in service.client.get("/v1/audit", headers=admin).json()]
    assert ("models.rollback", f"model:{first}") in actions and (
        "models.promote",
        f"model:{child.id}",
    ) in actions


def test_rollback_without_history_is_a_conflict(service):
    response = service.client.post("/v1/models/rollback", headers=service.headers("admin"))
    assert response.status_code == 409 and "no previously served model" in response.json()["detail"]


def test_rejected_model_needs_force_and_tampered_weights_are_refused(service):
    admin = service.headers("admin")
    bad = _child(service, "gate-failed", status="rejected")
    refused = service.client.post(f"/v1/models/{bad.id}/promote", headers=admin)
    assert refused.status_code == 409 and "force=true" in refused.json()["detail"]
    tampered = _child(service, "tampered", scale=2.0)
    weights = service.settings.models_dir / "tampered" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    refused = service.client.post(f"/v1/models/{tampered.id}/promote", headers=admin)
    assert refused.status_code == 409 and "modified after it was saved" in refused.json()["detail"]
    assert service.state.server.current().version_id not in (bad.id, tampered.id)
    forced = service.client.post(f"/v1/models/{bad.id}/promote?force=true", headers=admin)
    assert forced.status_code == 200 and forced.json()["status"] == "serving"


def test_restart_keeps_the_promoted_model(make_service, tmp_path):
    svc = make_service(data_dir=tmp_path / "persist")
    child = _child(svc, "child")
    svc.client.post(f"/v1/models/{child.id}/promote", headers=svc.headers("admin"))
    svc.client.__exit__(None, None, None)  # stop the first service as a process exit would
    with TestClient(create_app(svc.settings)) as again:
        assert again.get("/v1/health").json() == {"status": "ok"}
        status = again.get("/v1/status", headers=svc.headers("viewer")).json()
        assert status["status"] == "ok" and status["model_version"] == child.id


def test_model_ids_with_control_characters_are_refused_before_the_database(service):
    """A NUL in an id is a 422 on every backend (PostgreSQL would raise on it: a 500)."""
    for method, path in (
        ("get", "/v1/models/a%00b"),
        ("post", "/v1/models/a%00b/promote"),
        ("get", "/v1/models/a%1Fb"),
    ):
        response = getattr(service.client, method)(path, headers=service.headers("admin"))
        assert response.status_code == 422, (path, response.status_code, response.text)
    assert service.client.get("/v1/models/no-such-model", headers=service.headers("admin")).status_code == 404
