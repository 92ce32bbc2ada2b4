"""What a run leaves on disk: metrics and samples, checkpoints, resume, reports, export.

May import the core modules and `rlaif.student` (export loads a model). Nothing here trains or
judges; everything written here is read back by a later process.
"""
