"""The output side of a job and of a sweep: everything written, shown or sent about runs.

- ``record``: the job's ``results.json`` (RunRecord), written atomically at every stage;
- ``secrets``: tokens and keys scrubbed from everything below;
- ``metrics``: each metric's name, direction and label, the one place the others read them from;
- ``console``: the table printed at the end of a job;
- ``tracking`` and ``trackers/``: W&B / TensorBoard mirrors of the record (``logger=``);
- ``frame`` -> ``preset`` -> ``table`` -> ``render`` / ``plots`` -> ``report``: the report of a
  sweep, from its results.json files (``python -m runner.report``).
"""
