"""The schema of a training config: :class:`TrainConfig` and its parts (model, augmentation,
Lookahead); :mod:`poisonlab.training.config` re-exports them beside the recipes.

Fields added after the first recipes are left out of ``model_dump()`` while they hold their
defaults (``_omit_at_default``), so the dump of an older config, and every hash of it (the
experiment cache keys of :mod:`poisonlab.experiments.common.cache`), does not change.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from poisonlab.inference import TestTimeAugmentation

__all__ = ["AugmentConfig", "LookaheadConfig", "ModelConfig", "TrainConfig"]


#: the largest seed: numpy's legacy generators and many seeding helpers take 32-bit seeds, and a
#: larger one reached torch as an "Overflow when unpacking long long" that named no option
SEED_MAX = 2**32 - 1
#: a seed field of any config: 0 to :data:`SEED_MAX`
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class _Frozen(BaseModel):
    # allow_inf_nan: "lr: nan" would otherwise be refused as "less than or equal to 10"
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    #: fields written by ``model_dump`` only when they differ from their default (see the module
    #: docstring: dumps and their hashes of older configs stay the same)
    _omit_at_default: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict:
        data = handler(self)
        fields = type(self).model_fields
        for name in self._omit_at_default:
            if name in data and getattr(self, name) == fields[name].default:
                del data[name]
        return data


class ModelConfig(_Frozen):
    """Architecture to build when training from scratch.

    ``dropout`` applies to ``simple-cifar10`` only: four rates (after block 1, 2, 3 and after the
    dense layer); ``None`` keeps the chapter's (0.3, 0.5, 0.5, 0.5). ``width`` applies to
    ``preact-resnet18``, ``widths`` to ``airbench`` (``None``: its default 64/128/128).
    """

    _omit_at_default = ("widths",)

    arch: Literal["simple-cifar10", "preact-resnet18", "airbench"] = "simple-cifar10"
    dropout: tuple[float, float, float, float] | None = None
    width: int = Field(64, ge=4, description="preact-resnet18 first-stage width")
    widths: tuple[int, int, int] | None = Field(None, description="airbench block widths, each >= 4")

    @model_validator(mode="after")
    def _check_widths(self) -> ModelConfig:
        if self.widths is not None and min(self.widths) < 4:
            raise ValueError(f"widths must be 3 channel counts >= 4, got {self.widths}")
        return self

    def spec(self, input_shape: tuple[int, int, int], num_classes: int) -> dict:
        spec: dict = {"arch": self.arch, "input_shape": list(input_shape), "num_classes": num_classes}
        if self.arch == "simple-cifar10" and self.dropout is not None:
            spec["dropout"] = list(self.dropout)
        if self.arch == "preact-resnet18":
            spec["width"] = self.width
        if self.arch == "airbench" and self.widths is not None:
            spec["widths"] = list(self.widths)
        return spec


class AugmentConfig(_Frozen):
    """Batched tensor augmentation: random crop after padding, horizontal flip.

    ``padding_mode`` ``reflect`` mirrors the border instead of adding zeros (airbench's
    translation). ``flip_mode`` ``alternating`` is airbench's derandomised flip (Jordan 2024,
    section 3.6): each image gets one random flip for the odd epochs and the opposite one for the
    even epochs, so every image is seen both ways in any two consecutive epochs.
    """

    _omit_at_default = ("flip_mode", "padding_mode")

    crop_padding: int = Field(4, ge=0, le=16)
    flip: bool = True
    flip_mode: Literal["random", "alternating"] = "random"
    padding_mode: Literal["zeros", "reflect"] = "zeros"


class LookaheadConfig(_Frozen):
    """Lookahead on the weights (Zhang et al. 2019, arXiv:1907.08610), as airbench schedules it.

    From epoch ``start_epoch`` on, every ``every`` steps the slow copy of the weights (and of the
    BatchNorm statistics) moves towards the trained ones, ``slow = d * slow + (1 - d) * fast``,
    and the trained weights are reset to it; ``d = decay * (step / total_steps) ** power`` grows
    from 0 to ``decay`` at the end (fast early, strong averaging late). After every epoch the
    network is the slow copy.
    """

    every: int = Field(5, ge=1)
    decay: float = Field(0.95**5, gt=0, lt=1)
    power: float = Field(3.0, ge=0)
    start_epoch: int = Field(4, ge=1, description="first epoch (1-based) that updates the slow copy")


class TrainConfig(_Frozen):
    """Everything :func:`poisonlab.training.train` needs besides the data and the model.

    ``onecycle`` rises linearly from ``lr_start_factor * lr`` to ``lr`` over the warm-up share
    of the steps and falls linearly to ``lr_end_factor * lr`` at the last step (airbench's
    triangular schedule is this shape with 0.2, 0.23 and 0.07).
    """

    _omit_at_default = (
        "lr_start_factor",
        "lr_end_factor",
        "bn_bias_lr_scale",
        "decay_biases",
        "whitening_bias_epochs",
        "lookahead",
        "drop_last",
    )

    epochs: int = Field(12, ge=1, le=1000)
    batch_size: int = Field(256, ge=2, le=65536, description="BatchNorm needs >= 2 samples per batch")
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.4, gt=0, le=10, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0, le=1)
    schedule: Literal["onecycle", "constant", "cosine"] = "onecycle"
    warmup_fraction: float = Field(0.2, ge=0, lt=1, description="onecycle: share of steps rising to lr")
    lr_start_factor: float = Field(0.1, gt=0, le=1, description="onecycle: lr at the first step / lr")
    lr_end_factor: float = Field(0.01, ge=0, le=1, description="onecycle: lr at the last step / lr")
    bn_bias_lr_scale: float = Field(
        1.0, gt=0, le=1000, description="BatchNorm biases train at this multiple of the lr (airbench: 64)"
    )
    decay_biases: bool = Field(
        False,
        description="weight decay on biases and BatchNorm parameters too, with the per-step shrinkage "
        "(lr x decay) of the weights whatever their lr (airbench); default: weights only",
    )
    whitening_bias_epochs: int | None = Field(
        None,
        ge=0,
        description="a patch-whitening layer's bias trains for this many epochs, then "
        "freezes (airbench: 3); None: it trains throughout; models without one ignore it",
    )
    label_smoothing: float = Field(0.2, ge=0, lt=1)
    drop_last: bool = Field(
        False,
        description="skip each epoch's last, partial batch (airbench's loader does): with a mean loss "
        "its few samples make a full-size, noisy step and weigh as much as a full batch in the "
        "BatchNorm statistics; default keeps it unless it has fewer than 8 samples",
    )
    augment: AugmentConfig | None = AugmentConfig()
    ema_decay: float | None = Field(None, gt=0, lt=1, description="evaluate an EMA of the weights")
    lookahead: LookaheadConfig | None = None
    recalibrate_bn: bool | None = Field(
        None,
        description="re-estimate BatchNorm statistics for the final weights with one pass over the "
        "training images (poisonlab.training.batchnorm); None: when training from scratch, not when "
        "fine-tuning (a handful of fine-tune images would become the statistics of every class)",
    )
    model: ModelConfig = ModelConfig(dropout=(0.0, 0.0, 0.0, 0.0))
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    channels_last: bool = True
    seed: Seed = Field(0, description="numpy's and torch's seeds; 0 to 2**32 - 1")
    eval_batch_size: int = Field(1000, ge=1)
    validate_every: int = Field(1, ge=0, description="epochs between validations; 0 = only at the end")
    val_samples: int | None = Field(
        2000, ge=1, description="validate on the first N validation samples between epochs (all at the end)"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self

    def test_time_augmentation(self) -> TestTimeAugmentation | None:
        """The test-time augmentation that matches this recipe's training augmentation.

        Mirror views only when the model was trained on flipped images (a flipped digit is
        another glyph), 1-pixel translations only when it was trained on translated ones; None
        when it saw neither.
        """
        aug = self.augment
        if aug is None or not (aug.flip or aug.crop_padding > 0):
            return None
        return TestTimeAugmentation(flip=aug.flip, translate=1 if aug.crop_padding > 0 else 0)
