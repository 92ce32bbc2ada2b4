"""The teacher judge: an LLM behind an API that grades a solution against a rubric.

`client` (the Teacher: cache, retries, abstentions), `setup` (`make_teacher`: a Teacher from the
config, a local server started for `llama-cpp`), `stats` (its counters for the metrics row),
`providers` (the SDKs behind one Protocol), `rubric` (the prompt, and how a reply becomes a score),
`ratelimit`, `breaker`, `spend`, and `local_server` (llama.cpp, started and stopped by the run).
May import the core modules and `judges.rust` (the teacher is shown rustc's report). The only
package that imports the anthropic and openai SDKs.
"""
