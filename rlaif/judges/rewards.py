"""The reward formula, in one place: judges' results and weights in, reward terms out.

Terms are grouped by the judge that produced them ("rust", "teacher"). A judge that could not
give an answer (sandbox failure, teacher abstention) makes its terms NaN rather than 0, so the
trainer leaves them out of the group baseline instead of reading them as bad code
(`algo.group_advantages`). A teacher that is switched off contributes no terms at all.

Compiler terms follow the nanochat-rl seed (REFERENCE.md): parse +8, compile +10, no errors +5 else
-2 per error, no warnings +1 else -0.5 per warning; ours adds -3 per unused variable (below). Test
terms add the fraction of hidden tests passed and a bonus when all pass; clippy adds +1 when clean,
else a cost per lint (the GRPO Rust seed rewarded a clean clippy). Syntax-tree terms, the seed's
too (weights in `RewardsConfig`):
- structure = 2 x (min(0.5 fns, 2) + min(0.3 structs, 1) + min(0.3 enums, 1) + min(0.5 traits, 1))
- quality = 3 x max(floor, Result 1 + Option 0.5 + 0.5 x doc coverage + `?` 0.5 - unsafe 1
  - 2 per panic)
- idioms = 2 x (iterators 1 + match 0.8 + destructuring 0.5 + closures 0.7 + chains 0.6
  + turbofish 0.3), each counted once when present
- complexity = -1 x (cc - 10) / 10 when the largest cyclomatic complexity cc is above 10.

Reward hacking: tree-sitter scores any text that looks like Rust, so a student could pile up
structs, docs and closures that never compile; and once it compiles, the task's own signature
(an `Option` return, a function) earns structure and quality points for a body that does nothing.
The first learning run (bench/RESULTS.md) found exactly that: its one compiling sample returned
`Some(50)`, failed every test and scored 24.75. So by default (`ast_gate: tests`) the syntax-tree
terms count only once a hidden test passes, and not for code that leaves a variable unused: style
is paid for code that works at least in part (a `Default::default()` body passes at least one
test of 103 of the 211 training tasks, 12 of them half or more).

Each unused variable (rustc's `unused_variables`) costs `per_unused_variable`, because a body
that ignores its parameters is a stub, not an attempt: it ranks below an honest compiling answer
that fails the tests, while still above code that does not compile, so compiling stays a step up.

Likewise `compile` pays only for code that also builds with the task's tests
(`RustResult.compiles_as_solution`): the same run's training samples included replies that
restated the task's struct and stopped, which type-check but leave out the work.

Placeholder answers score as no code at all. A body that is only `todo!()` compiles and, with one
unused parameter, scored 8 + 10 + 5 - 0.5 - 3 + 1 = 20.5: 14 points above any reply that does not
compile (at most 6: parse 8 and one error -2) and only 4.5 below an honest compiling attempt that
fails its tests (25), so the cheapest step up for a student was to stop trying. A task function
whose body is a panicking macro, or never reads its parameters (`Some(50)`, `vec![]`,
`Default::default()`), earns no compile credit: `syntax.placeholder_answer` decides it on the
syntax tree, for the functions the task's prompt names (scoring.py), and the sample scores
`per_error x max_errors` (-20), no more than any reply that does not compile.

The quality floor (the seed had none) keeps a working answer with many unwraps above any answer
that fails to compile. Code refused before compiling (a compile-time file read) scores as no code
at all.
"""

from __future__ import annotations

import math

from rlaif.config import RewardsConfig
from rlaif.judges.rust.syntax import AstMetrics
from rlaif.types import TEACHER_OFF, Judgement, RustResult

RUST_TERMS = ("parse", "compile", "errors", "warnings", "unused", "clippy", "tests", "all_tests")
AST_TERMS = ("structure", "quality", "idioms", "complexity")


def reward_terms(
    rust: RustResult,
    judgement: Judgement,
    has_code: bool,
    w: RewardsConfig,
    ast: AstMetrics | None = None,
    placeholder: bool = False,
) -> tuple[dict[str, float], dict[str, float]]:
    """(components, sources): each weighted term, and each judge's sum of terms.

    Without `ast` the syntax-tree terms are left out (not zero): callers that have the metrics
    pass them (scoring.py does). A `placeholder` answer (module docstring) scores as no code.
    """
    has_code = has_code and not placeholder
    components = _rust_terms(rust, has_code, w)
    if ast is not None:
        components.update(ast_terms(rust, ast, has_code, w))
    sources = {"rust": _sum(components.values())}
    if judgement.abstained != TEACHER_OFF:
        components["teacher"] = w.teacher * judgement.score  # NaN when it abstained
        sources["teacher"] = components["teacher"]
    return components, sources


def _rust_terms(r: RustResult, has_code: bool, w: RewardsConfig) -> dict[str, float]:
    if r.sandbox_error is not None:
        return dict.fromkeys(RUST_TERMS, math.nan)
    if not has_code or r.rejected is not None:
        # No code at all is as bad as the most broken code, never better than trying.
        terms = dict.fromkeys(RUST_TERMS, 0.0)
        terms["errors"] = w.per_error * w.max_errors
        return terms
    clippy = unused = 0.0
    if r.compiled:
        errors = w.no_errors
        warnings = w.no_warnings if r.warnings == 0 else w.per_warning * r.warnings
        if r.clippy_ran:
            lints = min(r.clippy_lints, w.max_clippy_lints)
            clippy = w.clippy_clean if lints == 0 else w.per_clippy_lint * lints
        unused = w.per_unused_variable * r.unused_variables
    else:
        errors = w.per_error * min(max(r.errors, 1), w.max_errors)
        warnings = 0.0  # lints are not emitted once errors stop compilation
    fraction = r.tests_passed / r.tests_total if r.tests_total else 0.0
    return {
        "parse": w.parse * r.parsed,
        "compile": w.compile * r.compiles_as_solution,
        "errors": errors,
        "warnings": warnings,
        "unused": unused,
        "clippy": clippy,
        "tests": w.tests_passed * fraction,
        "all_tests": w.all_tests_pass * r.all_tests_passed,
    }


def ast_terms(r: RustResult, m: AstMetrics, has_code: bool, w: RewardsConfig) -> dict[str, float]:
    """The four syntax-tree terms; zeros when the gate is closed, NaN when rustc's verdict is
    unknown (the gate cannot be decided)."""
    if r.sandbox_error is not None and w.ast_gate != "always":
        return dict.fromkeys(AST_TERMS, math.nan)
    gate = {
        "tests": _works_in_part(r),
        "compile": r.compiled,
        "parse": r.parsed,
        "always": True,
    }[w.ast_gate]
    if not has_code or r.rejected is not None or not gate:
        return dict.fromkeys(AST_TERMS, 0.0)
    structure = (
        min(w.structure_fn * m.functions, 2.0)
        + min(w.structure_struct * m.structs, 1.0)
        + min(w.structure_enum * m.enums, 1.0)
        + min(w.structure_trait * m.traits, 1.0)
    )
    quality = (
        w.quality_result * (m.result_types > 0)
        + w.quality_option * (m.option_types > 0)
        + w.quality_docs * m.doc_coverage
        + w.quality_question_mark * (m.question_marks > 0)
        + w.quality_unsafe * (m.unsafe_uses > 0)
        + w.quality_per_panic * m.panics
    )
    idioms = (
        w.idiom_iterators * (m.iterator_calls > 0)
        + w.idiom_match * (m.matches > 0)
        + w.idiom_destructuring * (m.destructurings > 0)
        + w.idiom_closures * (m.closures > 0)
        + w.idiom_method_chains * (m.method_chains > 0)
        + w.idiom_turbofish * (m.turbofish > 0)
    )
    excess = max(m.complexity - w.complexity_threshold, 0) / 10
    return {
        "structure": w.structure * structure,
        "quality": w.quality * max(quality, w.quality_floor),
        "idioms": w.idioms * idioms,
        "complexity": w.complexity * excess if excess else 0.0,
    }


def _works_in_part(r: RustResult) -> bool:
    """The `tests` gate: a hidden test passes (or, without tests, it compiles), and no parameter
    or local goes unused: a constant answer (`None`, `0`) passes some tests of many tasks."""
    works = r.tests_passed > 0 if r.tests_total else r.compiles_as_solution
    return works and r.unused_variables == 0


def _sum(values) -> float:
    values = list(values)
    return math.nan if any(math.isnan(v) for v in values) else float(sum(values))
