"""MMLU (Hendrycks et al., 2021) questions in the hub schema of ``cais/mmlu``.

Rows: ``question`` (str), ``subject`` (str), ``choices`` (4 str), ``answer``
(int 0-3). ``source=local`` reads the subjects shipped in ``data/mmlu/test``
(the original CSV layout: no header; question, A, B, C, D, answer letter; the
hub's rows are these rows in this order); ``hub`` or a directory read
``cais/mmlu``, one config per subject, split ``test``.
"""

from __future__ import annotations

from pathlib import Path

from runner.data import hub
from runner.data.files import read_csv
from runner.errors import ConfigError

HUB_ID = "cais/mmlu"
PROJECT_DATA = Path(__file__).resolve().parents[2] / "data" / "mmlu" / "test"
# the 57 subjects (hub configs), in lm-eval-harness' order
SUBJECTS = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]
# the RMU paper's MMLU subsets: knowledge near the WMDP forget topics, reported separately
PAPER_SUBSETS = ("college_biology", "virology", "college_computer_science", "computer_security")
LETTERS = "ABCD"


def shipped_subjects() -> list[str]:
    return sorted(p.name.removesuffix("_test.csv") for p in PROJECT_DATA.glob("*_test.csv"))


def resolve_subjects(subjects, source: str, key: str) -> list[str]:
    """``all`` (every subject the source has: 57 on the hub, the shipped ones locally) or a list of names."""
    if subjects is None or subjects == "all":
        return shipped_subjects() if source == "local" else list(SUBJECTS)
    names = [subjects] if isinstance(subjects, str) else [str(s) for s in subjects]
    unknown = [s for s in names if s not in SUBJECTS]
    if unknown:
        raise ConfigError(key, f"{unknown} are not MMLU subjects", "use hub config names such as college_biology")
    if source == "local":
        missing = [s for s in names if s not in shipped_subjects()]
        if missing:
            raise ConfigError(
                key,
                f"{missing} are not shipped with the project (shipped: {shipped_subjects()})",
                "choose shipped subjects, or set the MMLU source to hub or a directory fetched with "
                "scripts/fetch_data.py mmlu",
            )
    return names


def load_subject(subject: str, source: str, key: str = "benchmark.mmlu.source") -> list[dict]:
    """The test questions of one subject, hub schema, schema-checked."""
    split = hub.Split(HUB_ID, subject, "test")
    if source != "local":
        rows = hub.load_split(source, split, hub.MCQ, key, fetch_hint=" with scripts/fetch_data.py mmlu")
        return [{**r, "subject": r.get("subject", subject)} for r in rows]
    raw = read_csv(PROJECT_DATA / f"{subject}_test.csv", key)
    rows = []
    for i, rec in enumerate(raw):
        if len(rec) != 6 or rec[5] not in LETTERS:
            raise ConfigError(
                key, f"shipped {subject}_test.csv row {i} is not question,A,B,C,D,letter", "restore data/mmlu"
            )
        rows.append({"question": rec[0], "subject": subject, "choices": rec[1:5], "answer": LETTERS.index(rec[5])})
    hub.check_schema(rows, hub.MCQ, str(split), key)
    return rows


def input_of(subject: str, source: str, key: str = "benchmark.mmlu.source"):
    """The file (or hub split) ``load_subject(subject, source)`` reads, as a job input (runner/inputs.py)."""
    from runner.inputs import Input

    if source == "local":
        return Input.file(key, PROJECT_DATA / f"{subject}_test.csv", format="text")
    return hub.input_of(source, hub.Split(HUB_ID, subject, "test"), key)
