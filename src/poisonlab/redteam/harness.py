"""An in-process ImRecS for the red-team campaign, played through its HTTP API.

:class:`Service` starts the real application (:func:`poisonlab.service.app.create_app`, its
training worker included) on a folder of its own and talks to it with an in-process HTTP client,
exactly as a remote client would: contributions are multipart uploads with a contributor key,
signed with a registered source's Ed25519 key when the scenario says so, training runs are
started with a trainer (or admin) key and polled. Only the set-up reaches into the process: the
operator's keys are created in the database (the CLI does the same), and the service's trusted
base data is the campaign world's (the digits train split minus the outsiders' pool) instead of
the whole train split. Unlike :mod:`poisonlab.redteam.walkthrough`, this module imports the
service: it hosts it.
"""

from __future__ import annotations

import gc
import io
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from PIL import Image

from poisonlab.data.dataset import Splits
from poisonlab.service.app import create_app
from poisonlab.service.audit import Actor
from poisonlab.service.auth import create_key
from poisonlab.service.settings import ServiceSettings
from poisonlab.service.signing import sign_contribution

__all__ = ["HarnessError", "Service", "png_bytes"]

FINISHED = ("promoted", "rejected", "skipped", "failed")


class HarnessError(RuntimeError):
    """The in-process service refused a step the campaign needs, or a run did not finish."""


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 1|3) -> lossless PNG bytes (the service decodes the same pixels)."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


class Service:
    """One in-process service serving ``model_dir`` with ``splits`` as its trusted base data.

    Parameters
    ----------
    folder : Path
        Its data folder (database, blobs, models); should not exist yet.
    model_dir : Path
        The initial serving model.
    splits : Splits
        The trusted base data (its train split is the fine-tuning base).
    contributors : sequence of str
        Contributor key names to create.
    **overrides
        :class:`~poisonlab.service.settings.ServiceSettings` fields (the campaign turns the rate
        limits off: it uploads hundreds of images a second, which is not what it measures).
    """

    def __init__(self, folder: Path, model_dir: Path, splits: Splits, contributors, **overrides) -> None:
        params = {"data_dir": folder, "model_ref": str(model_dir), "device": "cpu", "base_dataset": "digits"}
        params.update({"rate_limit_per_key": 0, "rate_limit_anonymous": 0, **overrides})
        self.settings = ServiceSettings(**params)
        self.app = create_app(self.settings)
        self.state = self.app.state.service
        # the world's base data replaces the catalog's digits train split (read before the start)
        self.state._splits["digits"] = splits
        self.client = TestClient(self.app)
        self.client.__enter__()
        with self.state.db.write() as session:
            roles = {"admin": "admin", "trainer": "trainer", **{c: "contributor" for c in contributors}}
            self.keys = {
                n: create_key(session, name=n, role=r, actor=Actor("campaign"))[0] for n, r in roles.items()
            }
        self.signers: dict[str, Ed25519PrivateKey] = {}

    def close(self) -> None:
        """Stop the service; unfreeze what its start froze so that the next one can be collected."""
        self.client.__exit__(None, None, None)
        gc.unfreeze()
        gc.collect()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, who: str, *, expect=(200,), **kwargs):
        r = self.client.request(method, path, headers={"X-API-Key": self.keys[who]}, **kwargs)
        if r.status_code not in expect:
            raise HarnessError(f"{method} {path} as {who}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def add_source(self, name: str) -> None:
        """Register source ``name`` (admin key) with a fresh Ed25519 key the campaign keeps."""
        key = Ed25519PrivateKey.generate()
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.call(
            "POST", "/v1/sources", "admin", expect=(201,), json={"name": name, "public_key_pem": pem.decode()}
        )
        self.signers[name] = key

    def contribute(self, who: str, images: np.ndarray, labels, *, source: str | None = None) -> list[dict]:
        """Upload each image with its label as ``who``; signed by ``source`` when given."""
        names = self.state.server.current().class_names
        out = []
        for image, label in zip(images, labels, strict=True):
            data, name = png_bytes(image), names[int(label)]
            form = {"label": name}
            if source is not None:
                form |= {"source": source, "signature": sign_contribution(self.signers[source], data, name)}
            row = self.call(
                "POST", "/v1/contributions", who, expect=(201,), files={"file": ("x.png", data)}, data=form
            )
            out.append({"id": row["id"], "status": row["status"], "reason": row["reason"]})
        return out

    def train(self, who: str = "trainer", body: dict | None = None, timeout: float = 900.0) -> dict:
        """Start a training run as ``who`` and wait for its end; returns the run."""
        run = self.call("POST", "/v1/training-runs", who, expect=(202,), json=body or {})
        deadline = time.monotonic() + timeout
        while run["status"] not in FINISHED:
            if time.monotonic() > deadline:
                raise HarnessError(f"training run {run['id']} still {run['status']} after {timeout:.0f} s")
            time.sleep(0.05)
            run = self.call("GET", f"/v1/training-runs/{run['id']}", "trainer")
        return run

    def statuses(self) -> dict[int, dict]:
        """Status and reason of every contribution (trainer key, newest first, paged)."""
        out: dict[int, dict] = {}
        params: dict = {"limit": 1000}
        while True:
            page = self.call("GET", "/v1/contributions", "trainer", params=params)
            out.update({row["id"]: {"status": row["status"], "reason": row["reason"]} for row in page})
            if len(page) < 1000:
                return out
            params["before_id"] = page[-1]["id"]

    def serving(self):
        """The serving model's id and the model itself (for measuring attack success)."""
        loaded = self.state.server.current()
        return loaded.version_id, loaded.model
