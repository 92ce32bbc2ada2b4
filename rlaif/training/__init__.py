"""Training math and the update: from rewards to advantages to new weights.

`algo` (pure tensor math: advantages by per-prompt whitening, token log-probs, KL estimators, the
clipped loss; no I/O), `advantages` (a step's rewards to the advantages the update uses),
`kl_control` (the KL coefficient's controllers), `curriculum` (which tasks each step draws),
`trainer` (the update, through Accelerate) and `processes` (what several Accelerate processes
share). May import the core modules and `rlaif.student` (precision, LoRA).
"""
