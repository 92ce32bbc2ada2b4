"""Syntax-tree metrics: exact counts on crafted snippets, broken code included."""

from __future__ import annotations

from rlaif.rust_ast import rust_metrics

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
