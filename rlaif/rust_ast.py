"""Syntax-tree metrics of Rust code with tree-sitter-rust: structure, quality, idioms, complexity.

`rust_metrics(code)` is pure: text in, an `AstMetrics` record of plain counts out. tree-sitter is
error tolerant, so code that does not compile (or does not even parse) still gets metrics;
`has_errors` records that the tree holds syntax errors, so callers can decide what to trust.

Departures from the nanochat-rl seed's AST pass (REFERENCE.md): `x.unwrap()` and `x.expect(..)`
method calls count as panics (the seed only saw them as paths), also inside macro arguments such as
`println!("{}", x.unwrap())`, whose tokens tree-sitter does not parse into expressions;
`todo!`, `unimplemented!` and `unreachable!` count as panics like `panic!`.

Definitions, each chosen to be exact on crafted snippets (tests/test_rust_ast.py):
- cyclomatic complexity of a function: 1 + `if` + `while` + `for` + (arms - 1) of each `match`
  + `&&` + `||` + `?`; closures count toward the function they are in; `complexity` is the
  largest over the functions (1 when there are none).
- nesting depth: the most `if`/`match`/`for`/`while`/`loop`/closure nested inside each other
  (an `else if` continues its chain rather than nesting).
- method chain: two or more method calls in a row (`a.iter().map(f)`), counted once per chain.
- lines of code: lines holding at least one token that is not a comment.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter
import tree_sitter_rust

PANIC_METHODS = frozenset({"unwrap", "expect"})
PANIC_MACROS = frozenset({"panic", "todo", "unimplemented", "unreachable"})
_ITERATOR_NAMES = (
    "iter iter_mut into_iter map filter filter_map flat_map fold sum product collect enumerate "
    "zip rev take skip take_while skip_while any all find find_map position count chain "
    "for_each peekable cloned copied step_by windows chunks chars bytes lines split_whitespace "
    "max_by_key min_by_key last nth scan flatten inspect partition"
)
ITERATOR_METHODS = frozenset(_ITERATOR_NAMES.split())
DOCUMENTABLE = frozenset({"function_item", "struct_item", "enum_item", "trait_item"})
BRANCHES = frozenset({"if_expression", "while_expression", "for_expression", "try_expression"})
NESTING = frozenset(
    {
        "if_expression",
        "match_expression",
        "for_expression",
        "while_expression",
        "loop_expression",
        "closure_expression",
    }
)
DESTRUCTURING = frozenset(
    {"tuple_pattern", "struct_pattern", "tuple_struct_pattern", "slice_pattern"}
)
COMMENTS = frozenset({"line_comment", "block_comment"})


@dataclass(frozen=True)
class AstMetrics:
    """Counts over one piece of Rust code (see the module docstring for each definition)."""

    has_errors: bool  # the tree holds syntax errors (the counts cover what did parse)
    functions: int
    structs: int
    enums: int
    traits: int
    impls: int
    result_types: int  # `Result` named as a type
    option_types: int
    question_marks: int  # `?` operators
    documented_items: int  # functions, structs, enums and traits with a doc comment
    documentable_items: int
    unwrap_calls: int  # `.unwrap()` and `.expect(..)`
    panic_macros: int  # panic!, todo!, unimplemented!, unreachable!
    unsafe_uses: int  # `unsafe` blocks, functions, impls and traits
    iterator_calls: int  # calls of iterator methods (ITERATOR_METHODS)
    matches: int
    destructurings: int  # tuple, struct, tuple-struct and slice patterns
    closures: int
    method_chains: int
    turbofish: int  # `f::<T>()` and `x.f::<T>()`
    complexity: int  # the largest cyclomatic complexity of a function
    nesting_depth: int
    lines_of_code: int

    @property
    def panics(self) -> int:
        return self.unwrap_calls + self.panic_macros

    @property
    def doc_coverage(self) -> float:
        """Fraction of documentable items with a doc comment (0.0 when there are none)."""
        return self.documented_items / self.documentable_items if self.documentable_items else 0.0


@functools.cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_rust.language()))


def rust_metrics(code: str) -> AstMetrics:
    """Every metric of `code`; never raises on bad code."""
    tree = _parser().parse(code.encode("utf-8"))
    root = tree.root_node
    counts: dict[str, int] = dict.fromkeys(
        (
            "function_item",
            "struct_item",
            "enum_item",
            "trait_item",
            "impl_item",
            "try_expression",
            "match_expression",
            "closure_expression",
            "generic_function",
            "unsafe",
        ),
        0,
    )
    types = {"Result": 0, "Option": 0}
    unwraps = panic_macros = iterator_calls = destructurings = chains = 0
    documented = documentable = 0
    code_lines: set[int] = set()
    functions = []
    # Comment subtrees are not descended into: nothing counted lives there, and a leaf inside a
    # comment is no line of code.
    for node in _walk(root, prune=COMMENTS):
        kind = node.type
        if kind in counts:
            counts[kind] += 1
        if kind == "function_item":
            functions.append(node)
        if kind in COMMENTS:
            continue
        if node.child_count == 0 and node.end_byte > node.start_byte:
            code_lines.update(range(node.start_point[0], node.end_point[0] + 1))
        if kind == "type_identifier" and node.text is not None:
            name = node.text.decode()
            if name in types:
                types[name] += 1
        elif kind in DESTRUCTURING:
            destructurings += 1
        elif kind == "macro_invocation":
            if _text(node.child_by_field_name("macro")) in PANIC_MACROS:
                panic_macros += 1
        elif kind == "token_tree":
            unwraps += _unwraps_in_tokens(node)
        elif kind in DOCUMENTABLE:
            documentable += 1
            documented += _has_doc_comment(node)
        method = _method_name(node)
        if method is not None:
            unwraps += method in PANIC_METHODS
            iterator_calls += method in ITERATOR_METHODS
            chains += _is_chain_top(node)
    return AstMetrics(
        has_errors=root.has_error,
        functions=counts["function_item"],
        structs=counts["struct_item"],
        enums=counts["enum_item"],
        traits=counts["trait_item"],
        impls=counts["impl_item"],
        result_types=types["Result"],
        option_types=types["Option"],
        question_marks=counts["try_expression"],
        documented_items=documented,
        documentable_items=documentable,
        unwrap_calls=unwraps,
        panic_macros=panic_macros,
        unsafe_uses=counts["unsafe"],
        iterator_calls=iterator_calls,
        matches=counts["match_expression"],
        destructurings=destructurings,
        closures=counts["closure_expression"],
        method_chains=chains,
        turbofish=counts["generic_function"],
        complexity=max((_cyclomatic(f) for f in functions), default=1),
        nesting_depth=_nesting(root),
        lines_of_code=len(code_lines),
    )


def _walk(
    node: tree_sitter.Node, prune: frozenset[str] | set[str] = frozenset()
) -> Iterator[tree_sitter.Node]:
    """Every node in document order; the children of `prune` types are skipped.

    Iterative, and never asks a node for its parent: py-tree-sitter finds a parent by walking
    down from the root, so parent chains made metrics cubic in the code's size.
    """
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current.type not in prune:
            stack.extend(reversed(current.children))


def _text(node: tree_sitter.Node | None) -> str | None:
    return node.text.decode() if node is not None and node.text is not None else None


def _method_name(node: tree_sitter.Node) -> str | None:
    """`name` when `node` is a method call `x.name(..)` or `x.name::<T>(..)`, else None."""
    if node.type != "call_expression":
        return None
    function = node.child_by_field_name("function")
    if function is not None and function.type == "generic_function":
        function = function.child_by_field_name("function")
    if function is None or function.type != "field_expression":
        return None
    return _text(function.child_by_field_name("field"))


def _receiver(call: tree_sitter.Node) -> tree_sitter.Node | None:
    function = call.child_by_field_name("function")
    if function is not None and function.type == "generic_function":
        function = function.child_by_field_name("function")
    return function.child_by_field_name("value") if function is not None else None


def _is_chain_top(call: tree_sitter.Node) -> bool:
    """A method call on a method call's result that is not itself the receiver of another."""
    receiver = _receiver(call)
    if receiver is None or _method_name(receiver) is None:
        return False
    parent = call.parent
    if parent is not None and parent.type == "field_expression":
        outer = parent.parent
        if outer is not None and outer.type == "generic_function":
            outer = outer.parent
        if outer is not None and _method_name(outer) is not None and _receiver(outer) == call:
            return False
    return True


def _unwraps_in_tokens(tree: tree_sitter.Node) -> int:
    """`. unwrap (..)` token runs directly inside a macro's unparsed token tree."""
    children = tree.children
    found = 0
    for i in range(1, len(children) - 1):
        if (
            children[i].type == "identifier"
            and _text(children[i]) in PANIC_METHODS
            and children[i - 1].type == "."
            and children[i + 1].type == "token_tree"
        ):
            found += 1
    return found


def _has_doc_comment(item: tree_sitter.Node) -> bool:
    sibling = item.prev_sibling
    while sibling is not None and sibling.type == "attribute_item":
        sibling = sibling.prev_sibling
    if sibling is None or sibling.type not in COMMENTS:
        return False
    return any(child.type == "outer_doc_comment_marker" for child in sibling.children)


def _cyclomatic(function: tree_sitter.Node) -> int:
    body = function.child_by_field_name("body")
    if body is None:
        return 1
    total = 1
    stack = [body]
    while stack:
        node = stack.pop()
        if node.type == "function_item":
            continue  # a nested function's branches are its own
        stack.extend(node.children)
        if node.type in BRANCHES:
            total += 1
        elif node.type == "match_expression":
            # Its own arms: the children of its match block (nested matches count for themselves).
            arms = sum(c.type == "match_arm" for block in node.children for c in block.children)
            total += max(arms - 1, 0)
        elif node.type == "binary_expression":
            operator = node.child_by_field_name("operator")
            total += operator is not None and operator.type in ("&&", "||")
    return total


def _nesting(root: tree_sitter.Node) -> int:
    """Deepest nesting of NESTING nodes (an `else if` is no deeper than its `if`).

    Iterative: long expressions make left-deep trees thousands of levels deep.
    """
    deepest = 0
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in node.children:
            nested = child.type in NESTING and not (
                child.type == "if_expression" and node.type == "else_clause"
            )
            stack.append((child, depth + nested))
    return deepest
