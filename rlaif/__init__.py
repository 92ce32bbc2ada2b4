"""rlaif: reinforcement learning from AI feedback that teaches a small code model to write Rust.

`python -m rlaif --config config.yaml` trains; see README.md for the map of the package.
"""

__version__ = "0.1.0"
