"""Generation streamed into scoring: the student samples, and each task's group is judged the
moment it exists.

`stream` (the generate-then-score stream, shared by training and evaluation) and `threads` (how
torch and the judges share the CPU). May import the core modules, `rlaif.student` and
`rlaif.judges`.
"""
