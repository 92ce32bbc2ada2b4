"""Syntax-tree metrics: exact counts on crafted snippets, broken code included."""

from __future__ import annotations

from rlaif.judges.rust.syntax import placeholder_answer, rust_metrics

RICH = """
/// A shape.
pub enum Shape { Circle(f64), Square(f64) }

struct Point { x: i32, y: i32 }

/// Areas.
trait Area { fn area(&self) -> f64; }

impl Area for Shape {
    fn area(&self) -> f64 {
        match self {
            Shape::Circle(r) => 3.14 * r * r,
            Shape::Square(s) => s * s,
        }
    }
}

fn parse_all(xs: &[&str]) -> Result<Vec<i32>, std::num::ParseIntError> {
    xs.iter().map(|x| x.parse::<i32>()).collect::<Result<Vec<_>, _>>()
}

fn first(p: Option<Point>) -> i32 {
    let Point { x, y } = p.unwrap();
    let n: i32 = "5".parse().expect("a number");
    println!("{}", Some(1).unwrap());
    if x > 0 && y > 0 || n == 5 { x } else { panic!("no") }
}
"""


def test_counts_on_a_rich_snippet_are_exact():
    m = rust_metrics(RICH)
    assert not m.has_errors
    # fns: area (trait signature is a function_signature_item, not counted), area (impl),
    # parse_all, first = 3 function items
    assert (m.functions, m.structs, m.enums, m.traits, m.impls) == (3, 1, 1, 1, 1)
    # Result in parse_all's return type and in its turbofish; Option in first's parameter
    assert (m.result_types, m.option_types, m.question_marks) == (2, 1, 0)
    # documented: Shape and Area; documentable: Shape, Point, Area, area, parse_all, first
    assert (m.documented_items, m.documentable_items) == (2, 6)
    # p.unwrap(), .expect("a number"), and Some(1).unwrap() inside println!'s tokens; panic!
    assert (m.unwrap_calls, m.panic_macros, m.panics) == (3, 1, 4)
    assert m.unsafe_uses == 0
    # iter, map, collect (parse is not an iterator method)
    assert m.iterator_calls == 3
    assert (m.matches, m.closures) == (1, 1)
    # Shape::Circle(r), Shape::Square(s) (tuple-struct patterns), Point { x, y } (struct pattern)
    assert m.destructurings == 3
    # xs.iter().map(..).collect::<..>() is one chain; "5".parse().expect(..) is another
    assert m.method_chains == 2
    # x.parse::<i32>() and collect::<Result<..>>()
    assert m.turbofish == 2
    # first: 1 + if + && + || = 4; area: 1 + (2 arms - 1) = 2
    assert m.complexity == 4
    # match inside fn, closure inside fn, if inside fn: each depth 1
    assert m.nesting_depth == 1


def test_unwrap_method_calls_count_as_panics():
    assert rust_metrics("fn f(x: Option<i32>) -> i32 { x.unwrap() }").panics == 1
    assert rust_metrics("fn f(x: Option<i32>) -> i32 { Option::unwrap(x) }").panics == 0
    code = 'fn f(r: Result<i32, ()>) -> i32 { todo!(); r.expect("ok") + unimplemented!() }'
    assert rust_metrics(code).panics == 3


def test_unsafe_docs_and_block_doc_comments():
    code = """
/** Raw. */
unsafe fn raw() {}
#[inline]
/// Documented through an attribute.
fn safe() { unsafe { raw() } }
// not a doc comment
fn plain() {}
"""
    m = rust_metrics(code)
    assert m.unsafe_uses == 2  # `unsafe fn` and the `unsafe` block
    # /** */ documents raw; /// before #[inline]? No: the attribute sits between, and the doc
    # comment is below it, directly above `fn safe`, so safe is documented; plain is not.
    assert (m.documented_items, m.documentable_items) == (2, 3)
    assert m.doc_coverage == 2 / 3


def test_complexity_nesting_and_else_if_chains():
    code = """
fn grade(n: u32) -> char {
    let mut c = 'F';
    for i in 0..n {
        while c != 'A' {
            if i > 90 { c = 'A'; } else if i > 80 { c = 'B'; } else if i > 70 { c = 'C'; }
        }
    }
    c
}
"""
    m = rust_metrics(code)
    # 1 + for + while + three ifs = 6
    assert m.complexity == 6
    # for > while > if; the else-ifs continue the chain instead of nesting deeper
    assert m.nesting_depth == 3
    assert m.lines_of_code == 9


def test_lines_of_code_skip_blank_and_comment_lines():
    code = "// header\n\nfn a() {}\n/* block\n comment */\nfn b() {} // trailing\n"
    assert rust_metrics(code).lines_of_code == 2


def test_broken_code_still_gets_metrics_and_is_flagged():
    m = rust_metrics("fn f(x: Option<i32> -> i32 { x.unwrap() ")
    assert m.has_errors
    assert m.panics == 1  # tree-sitter recovered the call despite the syntax errors
    prose = rust_metrics("I am sorry, but I cannot write this function.")
    assert prose.has_errors and prose.functions == 0 and prose.panics == 0


def test_empty_code():
    m = rust_metrics("")
    assert not m.has_errors and m.functions == 0 and m.complexity == 1 and m.lines_of_code == 0


def placeholders(code: str) -> tuple[str, ...]:
    m = rust_metrics(code)
    assert not m.has_errors, code
    return m.placeholder_fns


def test_placeholder_bodies_do_no_work_for_any_input():
    sig = "fn f(s: &str) -> Option<u8>"
    for body in (
        "todo!()",
        "unimplemented!();",
        'unreachable!("never")',
        'panic!("no {}", 1)',
        "todo!(); todo!()",
        "Some(50)",  # the first learning run's answer (bench/RESULTS.md)
        "None",
        "Default::default()",
        "Option::default()",
        "let _ = s; None",  # silences rustc's unused warning, reads `s` for nothing
        "_ = s; Some(1)",
        "drop(s); None",
        "let v: Vec<u8> = vec![]; v.first().copied()",  # works, but on a constant
        'Some("{s}".len() as u8)',  # a plain string, not a format string: `s` is not read
        'fn g(s: &str) -> usize { s.len() } Some(g("x") as u8)',  # inner fns cannot see `s`
    ):
        assert placeholders(f"{sig} {{ {body} }}") == ("f",), body
    # Unused `_` patterns and paths or macros spelled like a parameter read nothing either.
    assert placeholders("fn f(_: i32, _x: bool) -> i32 { 0 }") == ("f",)
    assert placeholders("fn f(default: i32) -> i32 { Default::default() }") == ("f",)
    assert placeholders("fn f(vec: &[u8]) -> Vec<u8> { vec![] }") == ("f",)
    assert placeholders('fn f(x: i32) -> String { format!("{}", x::Y) }') == ("f",)
    # Without parameters, only a panicking body is a placeholder.
    assert placeholders("fn g() -> u8 { todo!() }") == ("g",)
    assert placeholders("fn pi() -> f64 { 3.14 }\nfn unit() {}") == ()


def test_bodies_that_read_a_parameter_are_attempts():
    for code in (
        "fn f(x: i32) -> i32 { x }",
        "fn f(x: i32) -> i32 { helper(x) }\nfn helper(y: i32) -> i32 { y + 1 }",
        'fn f(x: i32) -> String { format!("{x:>4}") }',  # captured by the format string
        "fn f(x: i32) -> Vec<i32> { vec![x; 2] }",  # inside a macro's tokens
        "fn f((a, b): (i32, i32)) -> i32 { let _ = a; b }",  # one of several is enough
        "fn f(xs: &[i32]) -> i32 { for x in xs { return *x; } unreachable!() }",
        'fn f(x: i32) -> i32 { if x < 0 { panic!("negative") } x }',
        "fn f(xs: &mut Vec<i32>) { xs.clear() }",
        "fn f(x: i32) -> i32 { let _ = x.pow(2); 0 }",  # a discard of work is not a bare name
    ):
        assert placeholders(code) == (), code


def test_methods_count_self_and_trait_impls_may_ignore_it():
    code = """
struct V(i32);
impl V {
    fn get(&self) -> i32 { self.0 }
    fn zero(&self) -> i32 { 0 }
    fn new() -> Self { V(0) }
    fn fresh() -> Self { todo!() }
}
trait Shape { fn sides(&self) -> u32; fn scaled(&self, k: i32) -> V; }
impl Shape for V {
    fn sides(&self) -> u32 { 4 }
    fn scaled(&self, k: i32) -> V { V(1) }
}
"""
    # `zero` ignores its receiver; `sides` may (a square has 4 sides whatever its size), but
    # `scaled` ignores `k`, a parameter other than `self`.
    assert placeholders(code) == ("zero", "fresh", "scaled")


def test_a_placeholder_answer_has_a_placeholder_among_the_tasks_functions():
    honest_helper = "fn helper(x: i32) -> i32 { x }\nfn solve(x: i32) -> i32 { 0 }"
    assert placeholder_answer(rust_metrics(honest_helper), {"solve"})
    assert not placeholder_answer(rust_metrics(honest_helper), {"helper"})
    # One placeholder among the functions the task asks for is enough.
    two = "fn a(x: i32) -> i32 { x }\nfn b(x: i32) -> i32 { todo!() }"
    assert placeholder_answer(rust_metrics(two), {"a", "b"})
    assert not placeholder_answer(rust_metrics(two), {"a"})
    # When the code defines none of the named functions, every function counts as asked for.
    assert placeholder_answer(rust_metrics(two), {"fmt"})
    assert not placeholder_answer(rust_metrics("fn a(x: i32) -> i32 { x }"), set())
    assert not placeholder_answer(rust_metrics("struct S;"), {"a"})
    assert not placeholder_answer(rust_metrics(""), set())
