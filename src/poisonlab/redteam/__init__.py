"""The red team: the chapter's attacker, poisoning a running ImRecS service through its public API.

A client of the service, not part of it: :mod:`~.plan` builds the poison (mislabelled pictures and
a backdoored batch), :mod:`~.walkthrough` plays it against any ``httpx.Client`` pointed at the
service and returns a JSON-ready transcript of what the defenses, gates and audit log made of it
(neither imports :mod:`poisonlab.service`). :mod:`~.campaign` plays seeds x attacks against
in-process services it hosts (:mod:`~.harness`, the one module here that imports the service; the
attacks still go through HTTP) and :mod:`~.summary` counts poisoned promotions and clean
contributions quarantined. The CLI is ``poisonlab redteam`` (``--campaign`` for the campaign).

Examples
--------
>>> import httpx
>>> from poisonlab.redteam import Keys, build_plan, run_walkthrough
>>> plan = build_plan("digits")  # doctest: +SKIP
>>> with httpx.Client(base_url="http://127.0.0.1:8000") as http:  # doctest: +SKIP
...     transcript = run_walkthrough(http, Keys("contrib-key", "trainer-key", "admin-key"), plan)
"""

from poisonlab.redteam.plan import AttackPlan, PoisonFile, build_plan, cifar10_plan, digits_plan
from poisonlab.redteam.walkthrough import ImRecS, Keys, WalkthroughError, recon, run_walkthrough

__all__ = [
    "AttackPlan",
    "ImRecS",
    "Keys",
    "PoisonFile",
    "WalkthroughError",
    "build_plan",
    "cifar10_plan",
    "digits_plan",
    "recon",
    "run_walkthrough",
]
