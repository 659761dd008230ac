"""A rich progress bar for training that shows running loss/accuracy and per-epoch validation."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TrainProgress:
    """Context manager; a no-op when ``enabled`` is False (tests, library use)."""

    def __init__(self, epochs: int, steps_per_epoch: int, *, enabled: bool = True) -> None:
        self.epochs, self.steps = epochs, steps_per_epoch
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None
        self._epoch = 1

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.steps, epoch=1, epochs=self.epochs, loss=0.0, acc=0.0
            )
        return self

    def step(self, loss: float, acc: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=loss, acc=acc)

    def end_epoch(self, stats) -> None:
        if self._progress is None:
            return
        val = "" if stats.val_accuracy is None else f" val_acc {stats.val_accuracy:.4f}"
        self._progress.console.print(
            f"epoch {stats.epoch}/{self.epochs}: loss {stats.train_loss:.4f} "
            f"acc {stats.train_accuracy:.4f}{val} ({stats.seconds:.1f}s)"
        )
        self._epoch = stats.epoch + 1
        if self._epoch <= self.epochs:
            self._progress.reset(
                self._task, total=self.steps, epoch=self._epoch, epochs=self.epochs, loss=0.0, acc=0.0
            )

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
