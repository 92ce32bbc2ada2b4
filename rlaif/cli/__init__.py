"""The command line (`python -m rlaif ...`: `main`) and `doctor`. May import every package."""
