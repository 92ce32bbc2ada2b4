"""The judges of a solution, and how their verdicts become a reward.

- `judges.rust`: the rustc jobs (compile, lint, run the hidden tests) inside the sandbox, and the
  syntax-tree metrics of the code.
- `judges.teacher`: an LLM that grades the solution against a rubric: providers, rate limits,
  retries, a circuit breaker, spend limits, the disk cache, and a local llama.cpp server.
- `rewards`: the reward formula (the judges' results and weights in, reward terms out).
- `scoring`: the fan-out that runs every sample's judges concurrently and keeps results in order.

May import: the core modules only (and `rlaif.student.offline` from `judges.teacher.local_server`:
a local teacher's GGUF comes from the offline model registry). Nothing here knows about models,
training or runs: a judge takes code and a task and gives a verdict.
"""
