"""No training blind: stop a run whose judges have stopped answering.

When the sandbox breaks (a job dir that cannot be made, a limit that cannot be set, a toolchain
the sandbox cannot reach), every rustc job ends as `sandbox_error`, every rust reward is NaN,
every group's advantage is 0, and the update follows the KL term alone while the steps print
as usual. `BlindGuard` watches each step's scored samples and raises `TrainingBlind` at the
`run.max_blind_steps`-th step in a row in which no sample got a rust verdict; likewise for a
teacher that `teacher.required` says the run needs.

The guard runs before the step's update (pipeline.py), so the step that trips it changes no
weights; and while a blind streak runs, periodic checkpoints are held back (`blind`), so the
steps taken blind never overwrite or push out (`checkpoint.keep`) a checkpoint of good steps.

A step is blind for a judge only on evidence: samples the judge was asked about and none
answered. Samples with no code never reach rustc, and code that is not sent to the teacher
(did not compile, a placeholder, the budget is spent) never reaches the teacher; a step made
only of those neither extends nor ends a streak. A rustc that runs and rejects the code is a
verdict (a compile failure), not blindness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlaif.types import NOT_COMPILED, TEACHER_OFF, Scored

# Teacher abstentions that are decisions, not failures: nothing was asked.
NOT_ASKED = (TEACHER_OFF, NOT_COMPILED, "no_code", "budget")


class TrainingBlind(RuntimeError):
    """A judge gave no verdict for `run.max_blind_steps` steps in a row: the run stops."""


def find_blind(exc: BaseException) -> TrainingBlind | None:
    """The TrainingBlind in `exc`, which anyio's task groups wrap in ExceptionGroups."""
    if isinstance(exc, TrainingBlind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = find_blind(inner)
        if found is not None:
            return found
    return None


def rust_blind(scored: list[Scored]) -> tuple[bool, str] | None:
    """(every sample sent to rustc got no verdict, what failed), or None when no sample was
    sent (no evidence either way)."""
    sent = [s for s in scored if s.sample.code.strip() and s.rust.rejected is None]
    if not sent:
        return None
    unknown = [s for s in sent if math.isnan(s.sources.get("rust", math.nan))]
    reasons = [s.rust.sandbox_error or "no verdict" for s in unknown]
    return len(unknown) == len(sent), _failed(len(sent), reasons)


def teacher_blind(scored: list[Scored]) -> tuple[bool, str] | None:
    """(every sample sent to the teacher got no verdict, what failed), or None when none was
    sent."""
    asked = [s for s in scored if _kind(s.judgement.abstained) not in NOT_ASKED]
    if not asked:
        return None
    failed = [s.judgement.abstained for s in asked if s.judgement.abstained is not None]
    return len(failed) == len(asked), _failed(len(asked), failed)


def _kind(abstained: str | None) -> str | None:
    if abstained in (None, TEACHER_OFF, NOT_COMPILED):
        return abstained
    return abstained.partition(":")[0]


def _failed(sent: int, reasons: list[str]) -> str:
    """ "8 of 8 failed, e.g. ...": the first reason (they often differ only by a temp path)."""
    example = f", e.g. {reasons[0][:300]}" if reasons else ""
    return f"{len(reasons)} of {sent} failed{example}"


@dataclass
class BlindGuard:
    """Counts blind steps in a row per judge; `observe` raises at the `max_steps`-th."""

    max_steps: int  # run.max_blind_steps; 0 never stops
    teacher_required: bool = False
    rust_streak: int = 0
    teacher_streak: int = 0

    @property
    def blind(self) -> bool:
        """A streak is running: hold periodic checkpoints back."""
        return self.rust_streak > 0 or self.teacher_streak > 0

    def observe(self, iteration: int, scored: list[Scored]) -> None:
        """Count this step; raise TrainingBlind when a streak reaches `max_steps`."""
        rust = rust_blind(scored)
        if rust is not None:
            self.rust_streak = self.rust_streak + 1 if rust[0] else 0
        teacher = teacher_blind(scored) if self.teacher_required else None
        if teacher is not None:
            self.teacher_streak = self.teacher_streak + 1 if teacher[0] else 0
        if not self.max_steps:
            return
        if rust is not None and self.rust_streak >= self.max_steps:
            raise TrainingBlind(
                f"step {iteration}: {self.rust_streak} steps in a row without one rustc "
                f"verdict: the sandbox failed (this step's jobs: {rust[1]}). The rust rewards "
                "are unknown, so the update would follow the KL term alone. Fix the cause "
                "shown, check with `python -m rlaif doctor` (it runs a job through the sandbox "
                "and names the level), or choose another level with rust.sandbox (auto picks "
                f"the strongest that runs here). {self._after()}"
            )
        if teacher is not None and self.teacher_streak >= self.max_steps:
            raise TrainingBlind(
                f"step {iteration}: {self.teacher_streak} steps in a row without one verdict "
                f"from the required teacher (this step's requests: {teacher[1]}). Check it with "
                "`python -m rlaif doctor --online`, or set teacher.required=false to train on "
                f"compiler rewards alone. {self._after()}"
            )

    def _after(self) -> str:
        return (
            "This step was not trained on, and no checkpoint was written after the blind steps; "
            "`--resume` continues from the last one (run.max_blind_steps sets how many blind "
            "steps in a row stop a run; 0 never stops)."
        )
