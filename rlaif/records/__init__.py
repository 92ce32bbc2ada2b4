"""What a run leaves on disk: metrics and samples, checkpoints, resume, reports, export.

`metrics` (metrics.csv/.jsonl, samples.jsonl, TensorBoard, progress lines), `checkpoint` (atomic
checkpoints and RNG states), `resume` (which checkpoint, which config changes are allowed),
`report` and `plots` (a run's summary and PNGs), `export` (a checkpoint as a plain model folder).
May import the core modules and `rlaif.student` (export loads a model). Nothing here trains or
judges; everything written here is read back by a later process.
"""
