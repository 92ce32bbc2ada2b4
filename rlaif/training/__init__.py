"""Training math and the update: from rewards to advantages to new weights.

`algo` (pure tensor math: advantages by per-prompt whitening, token log-probs, KL estimators, the
clipped loss; no I/O), `kl_control` (the KL coefficient's controllers), `curriculum` (which tasks
each step draws), and `trainer` (the update, through Accelerate). May import the core modules and
`rlaif.student` (precision).
"""
