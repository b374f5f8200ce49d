"""TensorBoard: event files under ``<run dir>/<subdir>``: curves per stage, the config as text, final metrics."""

from __future__ import annotations

from pathlib import Path

from runner.output import secrets
from runner.output.console import metrics_table
from runner.output.trackers.base import Tracker
from runner.output.trackers.summary import summary_of


class TensorBoardTracker(Tracker):
    def __init__(self, subdir: str = "tensorboard", *, run_dir: Path, config: dict, choices: dict, hidden: list[str]):
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        self.hidden = hidden
        self.dir = Path(run_dir) / (subdir or "tensorboard")
        self.writer = SummaryWriter(log_dir=str(self.dir))
        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "\n```")

    def log_step(self, stage: str, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{stage}/{k}", v, step)

    def log_results(self, results: dict) -> None:
        for key, value in secrets.scrub(summary_of(results), self.hidden).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"final/{key}", value, 0)
            else:
                self.writer.add_text(f"final/{key}", str(value))
        if results.get("metrics"):  # scalars carry no direction: the console table, arrows included, as text
            self.writer.add_text("final/metrics", metrics_table(results["metrics"]))

    def close(self, completed: bool) -> None:
        self.writer.close()
