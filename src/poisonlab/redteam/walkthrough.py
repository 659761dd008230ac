"""The chapter's attack on ImRecS, played through the public API: poison in, defenses, gates, audit.

The attacker holds a contributor key, the operator a trainer and an admin key. :func:`run_walkthrough`
drives a running service (any ``httpx.Client``: a real URL, or FastAPI's in-process ``TestClient``):

1. **recon**: the serving model's class names and input shape (``GET /v1/models/{id}``);
2. **attack** (contributor): every poison file is ``POST /v1/contributions`` with its wrong label;
   its status at submission is kept (a data-signing policy may quarantine unsigned data at the
   door). Two probes show least privilege: the contributor key may neither start a training run
   nor list which contributions were flagged (403, and the refused write is audited);
3. **defended run** (trainer): the service's screen and defenses quarantine the poison, each
   contribution with the detectors that flagged it (or its source's record) as the reason;
4. **the same poison again** (contributor), then an **undefended run** (admin):
   ``POST /v1/training-runs {"defenses": []}``, an operator switching the screening off; the
   promotion gates are the last line: the candidate is refused, the old model keeps serving,
   alerts are raised and the poison it was trained on is quarantined with the failed gates;
5. **retry** (trainer): the issue's walk-past, a plain second run after the rejection: nothing
   new to train on, nothing promoted;
6. **audit** (admin): ``GET /v1/audit``, every entry written since the walk-through began.

The poison is sent twice because every run that sees it quarantines it: a second upload of the
same files is the like-for-like comparison. :mod:`poisonlab.redteam.plan` builds the poison; the
CLI is ``poisonlab redteam``. Only HTTP connects this client to the service: it imports nothing of
:mod:`poisonlab.service`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from poisonlab.redteam.audit import audit_since, audit_summary
from poisonlab.redteam.evidence import gate_summary
from poisonlab.redteam.plan import AttackPlan

FINISHED = ("promoted", "rejected", "skipped", "failed")
SKIPPED = (
    "none of the poison is pending: the data-signing policy quarantined it at submission "
    "(start the service with --unsigned pending to let it reach training)"
)


class WalkthroughError(ValueError):
    """The service could not be reached, refused a step, or does not fit the attack plan."""


@dataclass(frozen=True)
class Keys:
    """One API key per role the walk-through plays."""

    contributor: str
    trainer: str
    admin: str


class ImRecS:
    """The service as the walk-through sees it: one HTTP client, one key per role."""

    def __init__(self, http: httpx.Client, keys: Keys) -> None:
        self.http, self.keys = http, keys

    def call(self, method: str, path: str, role: str | None = None, *, expect=(200,), **kwargs):
        """Send one request as ``role``; returns the response, or raises :class:`WalkthroughError`."""
        headers = {} if role is None else {"X-API-Key": getattr(self.keys, role)}
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise WalkthroughError(f"cannot reach the service at {self.http.base_url}: {exc}") from None
        if response.status_code not in expect:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text[:300]
            raise WalkthroughError(
                f"{method} {path} with the {role or 'no'} key: HTTP {response.status_code}: {detail}"
            )
        return response

    def get(self, path: str, role: str | None = None, **params):
        return self.call("GET", path, role, params=params or None).json()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def recon(api: ImRecS, plan: AttackPlan) -> dict:
    """The serving model (any key reads it; the key-less health check does not say); raises when the
    plan does not fit it."""
    serving = api.get("/v1/status", "contributor")["model_version"]
    if serving is None:
        raise WalkthroughError("the service serves no model yet (start it with --model)")
    model = api.get(f"/v1/models/{serving}", "contributor")
    names, shape = tuple(model["class_names"]), tuple(model["input_shape"])
    if names != plan.class_names:
        raise WalkthroughError(
            f"the {plan.dataset} attack needs classes {list(plan.class_names)}; the service's model "
            f"{serving} has {list(names)} (choose --dataset to match the service)"
        )
    return {"serving_model": serving, "class_names": list(names), "input_shape": list(shape)}


def contribute(api: ImRecS, plan: AttackPlan) -> list[dict]:
    """Step 2: send every poison file as the contributor; returns one record per contribution."""
    sent = []
    for item in plan.files:
        row = api.call(
            "POST",
            "/v1/contributions",
            "contributor",
            expect=(201,),
            files={"file": (item.name, item.data)},
            data={"label": item.label},
        ).json()
        sent.append(
            {
                "id": row["id"],
                "kind": item.kind,
                "file": item.name,
                "label": item.label,
                "status_at_submission": row["status"],
                "reason_at_submission": row["reason"],
            }
        )
    return sent


def probe_privileges(api: ImRecS) -> list[dict]:
    """What the contributor key may not do (both must answer 403)."""
    probes = [("POST", "/v1/training-runs", {"json": {}}), ("GET", "/v1/contributions", {})]
    out = []
    for method, path, kwargs in probes:
        r = api.call(method, path, "contributor", expect=(401, 403), **kwargs)
        out.append({"request": f"{method} {path}", "status": r.status_code, "detail": r.json()["detail"]})
    return out


def run_and_wait(api: ImRecS, role: str, body: dict, *, timeout: float, poll: float) -> dict:
    """Start a training run as ``role`` and poll it (trainer key) until it ends."""
    run = api.call("POST", "/v1/training-runs", role, expect=(202,), json=body).json()
    deadline = time.monotonic() + timeout
    while run["status"] not in FINISHED:
        if time.monotonic() > deadline:
            raise WalkthroughError(f"training run {run['id']} still {run['status']} after {timeout:.0f} s")
        time.sleep(poll)
        run = api.get(f"/v1/training-runs/{run['id']}", "trainer")
    return run


def _statuses(api: ImRecS, ids: list[int]) -> dict[int, dict]:
    """Current status and reason of our contributions (trainer key), paging the listing backwards."""
    wanted, found, before = set(ids), {}, max(ids) + 1
    while before > min(ids):
        rows = api.get("/v1/contributions", "trainer", limit=1000, before_id=before)
        found.update({r["id"]: r for r in rows if r["id"] in wanted})
        if len(rows) < 1000:
            break
        before = rows[-1]["id"]
    return {i: {"status": found[i]["status"], "reason": found[i]["reason"]} for i in ids if i in found}


def undefended_run(api: ImRecS, sent: list[dict], *, body: dict, timeout: float, poll: float) -> dict:
    """Step 4: defenses off (admin override); gates, serving model before and after, alerts."""
    before = api.get("/v1/status", "trainer")["model_version"]
    run = run_and_wait(api, "admin", {**body, "defenses": []}, timeout=timeout, poll=poll)
    after = api.get("/v1/status", "trainer")["model_version"]
    alerts = [
        a
        for a in api.get("/v1/alerts", "trainer", limit=1000)
        if (a["model_id"] is not None and a["model_id"] == run["candidate_model_id"])
        or a["details"].get("run_id") == run["id"]
    ]
    report = run.get("report", {})
    statuses = _statuses(api, [s["id"] for s in sent])
    return {
        "run_id": run["id"],
        "status": run["status"],
        "decision": report.get("decision", run.get("error")),
        "candidate_model_id": run["candidate_model_id"],
        "serving_before": before,
        "serving_after": after,
        "gates": gate_summary(report.get("gates", {})),
        "training": report.get("training"),
        "alerts": [{k: a[k] for k in ("id", "kind", "severity", "message")} for a in alerts],
        "poison_statuses_after": dict(Counter(s["status"] for s in statuses.values())),
    }


def _tally(reason: str) -> list[str]:
    """``flagged by <detector>`` for each detector a quarantine reason names, or ``<layer>``
    (``source``, ``review``, ...) for a reason that names none."""
    out = []
    for part in reason.split("; "):
        kind, _, names = part.partition(": ")
        if kind in ("screen", "defense"):
            out += [f"flagged by {name}" for name in names.split(", ")]
        elif part:
            out.append(f"by {kind.split(' ')[0]}")
    return out


def defended_run(api: ImRecS, sent: list[dict], *, body: dict, timeout: float, poll: float) -> dict:
    """Step 3: the service's own defenses (trainer key); which defense flagged how much of the poison."""
    run = run_and_wait(api, "trainer", body, timeout=timeout, poll=poll)
    report = run.get("report", {})
    statuses = _statuses(api, [s["id"] for s in sent])
    per_kind: dict[str, Counter] = {}
    for item in sent:
        state = statuses.get(item["id"], {"status": "missing", "reason": ""})
        tally = per_kind.setdefault(item["kind"], Counter())
        tally["sent"] += 1
        tally[state["status"]] += 1
        if state["status"] == "quarantined":
            tally.update(_tally(state["reason"]))
    methods = report.get("defenses", {}).get("methods", {})
    return {
        "run_id": run["id"],
        "status": run["status"],
        "decision": report.get("decision", run.get("error")),
        "candidate_model_id": run["candidate_model_id"],
        "defenses": {n: m["flagged_contributions"] for n, m in methods.items()},
        "flagged_in_base": {n: m["flagged_base"] for n, m in methods.items()},  # never acted on
        "quarantined_by_run": report.get("defenses", {}).get("quarantined"),
        "distrusted_sources": report.get("defenses", {}).get("distrusted_sources") or {},
        "poison": {kind: dict(tally) for kind, tally in per_kind.items()},
        "reasons": dict(Counter(s["reason"] for s in statuses.values()).most_common()),
        "gates": gate_summary(report.get("gates", {})),
    }


def retry_run(api: ImRecS, sent: list[dict], *, body: dict, timeout: float, poll: float) -> dict:
    """Step 5: a plain run after the rejection (trainer key); the serving model before and after."""
    before = api.get("/v1/status", "trainer")["model_version"]
    run = run_and_wait(api, "trainer", body, timeout=timeout, poll=poll)
    statuses = _statuses(api, [s["id"] for s in sent])
    return {
        "run_id": run["id"],
        "status": run["status"],
        "decision": (run.get("report") or {}).get("decision", run.get("error")),
        "serving_before": before,
        "serving_after": api.get("/v1/status", "trainer")["model_version"],
        "poison_statuses_after": dict(Counter(s["status"] for s in statuses.values())),
    }


def _runs(api: ImRecS, plan: AttackPlan, sent: list[dict], body: dict, timeout: float, poll: float, say):
    """Steps 3-5; returns (the second batch's records, defended, undefended, retry)."""
    say("run 1: the service's defenses (trainer key)")
    defended = defended_run(api, sent, body=body, timeout=timeout, poll=poll)
    say(f"attack again: the same {len(plan.files)} files")
    again = contribute(api, plan)
    say("run 2: defenses switched off (admin override), waiting for the gates")
    undefended = undefended_run(api, again, body=body, timeout=timeout, poll=poll)
    say("run 3: a plain retry (trainer key)")
    retry = retry_run(api, again, body=body, timeout=timeout, poll=poll)
    return again, defended, undefended, retry


def run_walkthrough(
    http: httpx.Client,
    keys: Keys,
    plan: AttackPlan,
    *,
    epochs: int | None = None,
    timeout: float = 3600.0,
    poll: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Play steps 1-6 against the service behind ``http``; returns the JSON-ready transcript.

    ``epochs`` overrides the service's fine-tuning epochs for every run; ``timeout`` bounds each
    run (seconds). When none of the poison is pending after submission (the signing policy
    quarantined it at the door), there is nothing for a training run to screen: the runs are
    skipped and the transcript says so.
    """
    say = progress or (lambda _msg: None)
    api, started, t0 = ImRecS(http, keys), _now(), time.perf_counter()
    say("recon: reading the serving model")
    target = recon(api, plan)
    last_audit = max((e["id"] for e in api.get("/v1/audit", "admin", limit=1)), default=0)
    say(f"attack: contributing {len(plan.files)} poisoned images with the contributor key")
    sent = contribute(api, plan)
    probes = probe_privileges(api)
    body = {} if epochs is None else {"epochs": epochs}
    pending = sum(s["status_at_submission"] == "pending" for s in sent)
    again, defended, undefended, retry = [], None, None, None
    if pending:
        again, defended, undefended, retry = _runs(api, plan, sent, body, timeout, poll, say)
    say("audit: reading the log (admin key)")
    audit = audit_since(api, last_audit)
    return {
        "started_at": started,
        "service": str(http.base_url),
        "target": target,
        "plan": plan.describe(),
        "contributions": sent,
        "contributions_again": again,
        "at_submission": dict(Counter(s["status_at_submission"] for s in sent)),
        "privilege_probes": probes,
        "defended_run": defended,
        "undefended_run": undefended,
        "retry_run": retry,
        "skipped": None if pending else SKIPPED,
        "audit": {"entries": len(audit), "summary": audit_summary(audit), "log": audit},
        "seconds": round(time.perf_counter() - t0, 1),
    }
