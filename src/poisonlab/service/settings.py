"""Configuration of the ImRecS service: one frozen, validated value built once per process.

Every knob an operator may turn lives here (storage locations, the serving model, input limits,
the data-signing policy, the training pipeline's defenses and gate thresholds, the prediction
shift monitor), so that :func:`poisonlab.service.app.create_app` is a pure function of it and the
tests can build as many independent services as they like.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from poisonlab.data.image_limits import MAX_IMAGE_PIXELS, ImageLimits
from poisonlab.models.store import poisonlab_home

#: Detectors whose flags act alone, beside the default screen (which votes with its own detectors;
#: a name that is part of the screen only votes there): duplicates with a conflicting label.
DEFAULT_DEFENSES = ("duplicates",)
MiB = 1 << 20
#: The screen's cap on the anchored detector's false-positive rate (see ``screen_max_fpr``)
SCREEN_MAX_FPR = 0.005

#: A share of something, in (0, 1]: the thresholds of the screen, the gates and the shift monitor.
Share = Annotated[float, Field(gt=0, le=1)]


def default_data_dir() -> Path:
    """``$POISONLAB_HOME/imrecs`` (``~/.cache/poisonlab/imrecs`` by default)."""
    return poisonlab_home() / "imrecs"


def sqlite_url(data_dir: str | Path) -> str:
    """The default database: ``imrecs.sqlite`` inside the data folder."""
    return f"sqlite:///{Path(data_dir).resolve() / 'imrecs.sqlite'}"


class ServiceSettings(BaseModel):
    """Everything :func:`~poisonlab.service.app.create_app` needs.

    Parameters
    ----------
    data_dir : Path
        Holds the content-addressed file store (``blobs/``), fine-tuned models (``models/``) and,
        by default, the SQLite database.
    db_url : str, optional
        SQLAlchemy URL; ``sqlite:///<data_dir>/imrecs.sqlite`` by default. A
        ``postgresql+psycopg://...`` URL works unchanged (the service issues no SQLite-only SQL).
    model_ref : str, optional
        The initial serving model (a model folder or a ``poisonlab models`` registry id), used when
        the database does not name a serving model yet; afterwards promotions and rollbacks decide.
    max_body_bytes : int
        Largest request body accepted; enforced while the body streams in (413 beyond it).
    body_idle_s : float
        Longest wait for the next part of a request body (408 beyond it): a client that announces
        a body and then sends nothing, or a byte now and then, cannot hold a connection open.
    max_pixels, max_image_side, max_image_bytes : int
        Largest image decoded: width x height and the square it is padded to (4096 x 4096 by
        default), each side, and the file's bytes; checked from the header before decoding.
    max_batch_pixels : int
        Largest total of padded pixels decoded for one batch request.
    max_json_depth : int
        Deepest nesting of arrays and objects in a JSON body, checked before it is parsed.
    max_batch : int
        Most images in one ``/v1/predict/batch`` request.
    decode_budget_bytes, decode_wait_s
        Bytes of pixel buffers all concurrent image decodes of the process may hold together
        (128 MiB; each decode reserves an upper bound of its cost from the image header), and how
        long a request waits for room before it is answered 503 ``decode_busy`` with
        ``Retry-After`` (:mod:`poisonlab.service.decode_budget`).
    unsigned_policy : {"quarantine", "pending", "reject"}
        What an unsigned contribution gets: quarantined for review (default), queued for the
        next training run like signed data, or refused with 422.
    unknown_source_policy : {"quarantine", "reject"}
        What a contribution naming an unregistered source gets (without a signature to check).
    defenses : tuple of str
        ``poisonlab.defenses`` registry names the training pipeline runs over each snapshot beside
        the screen; each one's flags quarantine on their own.
    screen : bool
        Run the default screen (:mod:`poisonlab.defenses.scan.screen`, trusted set: the base
        data's held-out validation and test splits) over the base data and every contribution on
        every run.
    screen_max_fpr : float or None
        Cap on the trusted-anchored k-NN's false-positive rate inside the screen (its ``max_fpr``:
        a split-conformal cut-off on the trusted set's own scores, never below the detector's
        robust-SD rule); None keeps the detection work's rule alone.
    source_flag_share, source_flag_min
        A source (signing source, else key) with at least ``source_flag_min`` contributions
        flagged, making at least ``source_flag_share`` of all it sent, is distrusted: the rest
        of its contributions are quarantined with the flagged ones.
    max_source_class_fraction, max_class_contribution_fraction
        Volume caps: one source's (a signing source, else the contributor's key) contributions of
        a class, and all contributions of a class, as a fraction of that class in the base
        training data; what goes beyond waits in review (quarantined with the reason).
    base_flag_alert_fraction
        A ``base_flagged`` alert is raised when the screen flags more than this share of one
        class of the trusted base data (flagged base samples are reported, never dropped).
    reverse_engineer_steps, reverse_engineer_gap
        The Neural Cleanse gate's search steps (0 turns it off) and how much more often a
        reverse-engineered trigger must work on the candidate than on the serving model to flag.
    behaviour_max_shift
        Share of a trusted class the candidate may move to one other class (or out of its own)
        compared with the serving model.
    inference_workers, inference_batch
        Threads running forward passes and the most images per pass; concurrent requests are
        batched together (:mod:`poisonlab.service.batching`).
    base_dataset, base_data_dir
        The trusted data the serving model was trained on (``digits`` or ``cifar10``); ``None``
        takes the serving model card's ``dataset_name``. Its train split is the fine-tuning base,
        its validation split the canary pool and shift reference, its test split the gate set.
    rate_limit_per_key, rate_limit_key_burst
        Requests per second (sustained) and burst of one API key; 429 with ``Retry-After`` beyond
        (:mod:`poisonlab.service.ratelimit`). ``0`` turns the limit off.
    rate_limit_anonymous, rate_limit_anonymous_burst
        The same for each client address's requests without an accepted key.
    anonymous_audit_window_s
        Refusals without a valid key are counted in metrics; the audit log gets at most one entry
        per client address per this many seconds.
    signature_max_skew_s
        How far a signature's timestamp may be from the service's clock; its nonce is remembered
        that long, so a signed upload is accepted once.
    max_queued_runs, max_queued_runs_per_key
        Most queued training runs in the service and per key (429 ``queue_full`` beyond).
    run_stale_after_s
        A running training run whose process sent no heartbeat for this long is taken back
        (requeued once, then failed; :mod:`poisonlab.service.run_claims`). The process beats every
        sixth of it and an idle worker looks for such runs every quarter.
    orphan_grace_s
        Blob files no row references are deleted at start-up once older than this.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    db_url: str | None = None
    model_ref: str | None = None
    max_body_bytes: int = Field(16 * MiB, ge=1024, le=1 << 31)
    body_idle_s: float = Field(30.0, gt=0, le=3600)
    max_pixels: int = Field(4096 * 4096, ge=64, le=MAX_IMAGE_PIXELS * 4)
    max_image_side: int = Field(4096, ge=8, le=65_535)
    max_image_bytes: int = Field(8 * MiB, ge=1024, le=1 << 31)
    max_batch_pixels: int = Field(1 << 26, ge=64, le=1 << 36)
    max_json_depth: int = Field(32, ge=8, le=200)
    max_batch: int = Field(1024, ge=1, le=100_000)
    decode_budget_bytes: int = Field(128 * MiB, ge=MiB, le=1 << 40)
    decode_wait_s: float = Field(5.0, ge=0, le=300)
    unsigned_policy: Literal["quarantine", "pending", "reject"] = "quarantine"
    unknown_source_policy: Literal["quarantine", "reject"] = "quarantine"
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    base_dataset: str | None = None
    base_data_dir: Path | None = None
    finetune_epochs: int = Field(3, ge=1, le=200)
    finetune_lr: float | None = Field(None, gt=0, le=10)
    max_accuracy_drop: float = Field(0.02, ge=0, le=1)
    canaries_per_class: int = Field(5, ge=1, le=1000)
    sensitivity_spike: Share = 0.5
    screen: bool = True
    screen_max_fpr: float | None = Field(SCREEN_MAX_FPR, gt=0, lt=1)
    source_flag_share: Share = 0.1
    source_flag_min: int = Field(3, ge=1, le=1_000_000)
    max_source_class_fraction: float = Field(0.5, gt=0, le=100)
    max_class_contribution_fraction: float = Field(1.0, gt=0, le=100)
    base_flag_alert_fraction: Share = 0.1
    reverse_engineer_steps: int = Field(40, ge=0, le=10_000)
    reverse_engineer_gap: Share = 0.25
    behaviour_max_shift: Share = 0.2
    shift_window: int = Field(500, ge=10, le=1_000_000)
    shift_min_count: int = Field(200, ge=10)
    shift_check_every: int = Field(50, ge=1)
    shift_tv_threshold: Share = 0.25
    shift_alpha: float = Field(1e-3, gt=0, lt=1)
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    #: fp32 unless asked: predictions and pipeline scores must not depend on the host's CPU
    precision: Literal["fp32", "bf16"] = "fp32"
    inference_workers: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)
    inference_batch: int = Field(64, ge=1, le=4096)
    seed: int = Field(0, ge=0)
    rate_limit_per_key: float = Field(50.0, ge=0, le=1_000_000)
    rate_limit_key_burst: int = Field(200, ge=1, le=1_000_000)
    rate_limit_anonymous: float = Field(5.0, ge=0, le=1_000_000)
    rate_limit_anonymous_burst: int = Field(60, ge=1, le=1_000_000)
    anonymous_audit_window_s: float = Field(60.0, ge=0, le=86_400)
    signature_max_skew_s: int = Field(300, ge=10, le=86_400)
    max_queued_runs: int = Field(8, ge=1, le=10_000)
    max_queued_runs_per_key: int = Field(2, ge=1, le=10_000)
    run_stale_after_s: float = Field(120.0, ge=1, le=86_400)
    orphan_grace_s: float = Field(60.0, ge=0, le=7 * 86_400)

    @field_validator("defenses")
    @classmethod
    def _known_defenses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from poisonlab.defenses import DEFENSES

        known = set(DEFENSES)  # iterating the names does not import the defense modules
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown defenses {unknown}; expected names from {sorted(DEFENSES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"each defense may be listed once, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSettings:
        if self.shift_min_count > self.shift_window:
            raise ValueError(
                f"shift_min_count ({self.shift_min_count}) cannot exceed shift_window ({self.shift_window})"
            )
        return self

    @property
    def image_limits(self) -> ImageLimits:
        """The decode-cost limits of one uploaded image."""
        return ImageLimits(
            max_bytes=self.max_image_bytes, max_pixels=self.max_pixels, max_side=self.max_image_side
        )

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.data_dir)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"
