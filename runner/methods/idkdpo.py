"""IdkDPO: DPO (dpo.py) with a refusal ("I don't know") as the preferred answer to every forget question.

loss = -(2/beta) * E_{D_f} log sigmoid(beta * [(log pi_theta(y_idk|x) - log pi_theta0(y_idk|x))
                                               - (log pi_theta(y|x)     - log pi_theta0(y|x))])
       + alpha * E_{D_r} l(y|x)

Each forget question gets one refusal y_idk, drawn once per run from the lines of
``data/tofu/idontknow.jsonl`` (plain text, one refusal a line) with ``random.Random(seed)``.
"""

from __future__ import annotations

from pathlib import Path

from runner.data import tofu
from runner.data.files import read_lines
from runner.methods.dpo import DPO
from runner.options import Range

IDK_FILE = Path(tofu.PROJECT_DATA) / "idontknow.jsonl"


def read_refusals(path: Path = IDK_FILE) -> list[str]:
    return [line.strip() for line in read_lines(path, "method") if line.strip()]


class IdkDPO(DPO):
    forget_name = "idkdpo_forget"
    option_ranges = {"beta": Range(low=0, low_open=True, example="0.1")}  # the loss divides by beta

    @classmethod
    def inputs(cls, method_cfg) -> list:
        from runner.inputs import Input

        return [Input.file("method", IDK_FILE, format="text")]  # one refusal per line, not JSON

    def __init__(self, beta: float = 0.1, alpha: float = 1.0):
        super().__init__(alternates=IDK_FILE, beta=beta, alpha=alpha)

    def _read(self, alternates) -> None:
        return None  # the refusals are read in prepare: every question gets the same candidates

    def candidates(self, data) -> list[list[str]]:
        refusals = read_refusals()
        return [refusals] * len(data.forget_rows)
