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
- placeholder body (`is_placeholder`): a body that does no work for any input, so that compiling
  it earns nothing (rewards.py). Either (a) its statements are nothing but `todo!`,
  `unimplemented!`, `unreachable!` or `panic!` calls, or (b) the function takes parameters
  (`self` included) and the body never reads one: a literal, `Some(50)`, `vec![]`,
  `Default::default()`, ... whatever it computes is the same for every input. `let _ = x;`,
  `_ = x;` and `drop(x);` discard `x` rather than read it. A function without parameters may
  return a constant (`fn pi() -> f64 { 3.14 }`), and a method of a trait impl may ignore `self`
  (`fn sides(&self) -> u32 { 4 }` for a square): `self` is not counted among its parameters.
  Not covered: a body that reads its input and throws it away (`x * 0`), which rustc does not
  flag either.

Long: the metrics and the placeholder test (`is_placeholder` and its helpers, from `_is_discard`
to `_format_args`) share one parser, one walk (`_walk`) and one vocabulary of node kinds, and
`rust_metrics` runs `is_placeholder` on every function it finds: split in two, each module
would import from the other.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

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
# Node kinds whose metric is just how many there are.
_COUNTED = (
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
)
# Subtrees where a parameter's name cannot be read: a path names an item, never a local.
_NOT_READS = frozenset({"function_item", "scoped_identifier", "scoped_type_identifier"})
# What a discarded value may be made of to count as no work: names, borrows of them, tuples.
_BARE = frozenset(
    {"identifier", "self", "tuple_expression", "reference_expression", "arguments"}
    | {"(", ")", ",", "&", "mutable_specifier", "mut"}
)


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
    fn_names: tuple[str, ...] = ()  # every function with a body, in order (nested ones too)
    placeholder_fns: tuple[str, ...] = ()  # the names of those with a placeholder body

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
    t = _tally(root)
    return AstMetrics(
        has_errors=root.has_error,
        functions=t.kinds["function_item"],
        structs=t.kinds["struct_item"],
        enums=t.kinds["enum_item"],
        traits=t.kinds["trait_item"],
        impls=t.kinds["impl_item"],
        result_types=t.types["Result"],
        option_types=t.types["Option"],
        question_marks=t.kinds["try_expression"],
        documented_items=t.documented,
        documentable_items=t.documentable,
        unwrap_calls=t.unwraps,
        panic_macros=t.panic_macros,
        unsafe_uses=t.kinds["unsafe"],
        iterator_calls=t.iterator_calls,
        matches=t.kinds["match_expression"],
        destructurings=t.destructurings,
        closures=t.kinds["closure_expression"],
        method_chains=t.chains,
        turbofish=t.kinds["generic_function"],
        complexity=max((_cyclomatic(f) for f in t.functions), default=1),
        nesting_depth=_nesting(root),
        lines_of_code=len(t.code_lines),
        fn_names=tuple(_text(f.child_by_field_name("name")) or "" for f in t.functions),
        placeholder_fns=tuple(
            _text(f.child_by_field_name("name")) or ""
            for f in t.functions
            if is_placeholder(f, trait_method=f.start_byte in t.trait_methods)
        ),
    )


@dataclass(slots=True)
class _Tally:
    """What the one walk over the tree gathers (`_tally`): counts, the lines that hold code, and
    the functions themselves, which `rust_metrics` then measures one by one (complexity,
    placeholder bodies). Mutable while the walk adds to it, unlike the `AstMetrics` made from it."""

    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTED, 0))
    types: dict[str, int] = field(default_factory=lambda: {"Result": 0, "Option": 0})
    unwraps: int = 0
    panic_macros: int = 0
    iterator_calls: int = 0
    destructurings: int = 0
    chains: int = 0
    documented: int = 0
    documentable: int = 0
    code_lines: set[int] = field(default_factory=set)
    functions: list[tree_sitter.Node] = field(default_factory=list)
    trait_methods: set[int] = field(default_factory=set)  # start bytes of `impl Trait for T` fns


def _tally(root: tree_sitter.Node) -> _Tally:
    """Walk the tree once and count each node under every metric it belongs to: most metrics
    are counts of node kinds, type names and method calls, so one pass serves them all. What
    needs a whole function (complexity, a placeholder body) is left to `rust_metrics`."""
    t = _Tally()
    # Comment subtrees are not descended into: nothing counted lives there, and a leaf inside a
    # comment is no line of code.
    for node in _walk(root, prune=COMMENTS):
        kind = node.type
        if kind in t.kinds:
            t.kinds[kind] += 1
        if kind == "function_item":
            t.functions.append(node)
        elif kind == "impl_item" and node.child_by_field_name("trait") is not None:
            body = node.child_by_field_name("body")
            items = body.children if body is not None else []
            t.trait_methods.update(c.start_byte for c in items if c.type == "function_item")
        if kind in COMMENTS:
            continue
        if node.child_count == 0 and node.end_byte > node.start_byte:
            t.code_lines.update(range(node.start_point[0], node.end_point[0] + 1))
        if kind == "type_identifier" and node.text is not None:
            name = node.text.decode()
            if name in t.types:
                t.types[name] += 1
        elif kind in DESTRUCTURING:
            t.destructurings += 1
        elif kind == "macro_invocation":
            if _text(node.child_by_field_name("macro")) in PANIC_MACROS:
                t.panic_macros += 1
        elif kind == "token_tree":
            t.unwraps += _unwraps_in_tokens(node)
        elif kind in DOCUMENTABLE:
            t.documentable += 1
            t.documented += _has_doc_comment(node)
        method = _method_name(node)
        if method is not None:
            t.unwraps += method in PANIC_METHODS
            t.iterator_calls += method in ITERATOR_METHODS
            t.chains += _is_chain_top(node)
    return t


def placeholder_answer(m: AstMetrics, declared: Collection[str]) -> bool:
    """Whether code with metrics `m` is a placeholder answer to a task that asks for the
    functions named `declared`: one of them has a placeholder body. When the code defines none
    of them (a trait's `fmt` or `add`, which prompts seldom spell out as `fn fmt`), every
    function it defines counts as asked for.

    One placeholder among several asked-for functions is enough: a reply earns compile credit
    only by attempting every function the task names.
    """
    asked = [name for name in m.fn_names if name in declared] or m.fn_names
    return any(name in m.placeholder_fns for name in asked)


def is_placeholder(function: tree_sitter.Node, trait_method: bool = False) -> bool:
    """Whether a `function_item`'s body is a placeholder (module docstring). A `trait_method`
    (of an `impl Trait for T` block) may ignore `self`: `fn sides(&self) -> u32 { 4 }`."""
    body = function.child_by_field_name("body")
    if body is None:
        return False
    statements = [c for c in body.named_children if c.type not in COMMENTS and not _is_discard(c)]
    if statements and all(_is_panic_macro(s) for s in statements):
        return True
    parameters = function.child_by_field_name("parameters")
    bound = [
        c
        for c in (parameters.named_children if parameters is not None else [])
        if c.type in ("parameter", "self_parameter")
    ]
    names = {"self"}
    for parameter in bound:
        pattern = parameter.child_by_field_name("pattern")
        if pattern is not None:
            names.update(_text(n) for n in _walk(pattern) if n.type == "identifier")
    is_self = ("self_parameter", "self")
    inputs = [c for c in bound if not (trait_method and _pattern_type(c) in is_self)]
    return bool(inputs) and not _reads(body, names)


def _pattern_type(parameter: tree_sitter.Node) -> str:
    """The parameter's own type for `&self` (a `self_parameter`), else its pattern's: `self`
    for `self: &Self`, `identifier` for `x: T`."""
    pattern = parameter.child_by_field_name("pattern")
    return parameter.type if pattern is None else pattern.type


def _is_discard(node: tree_sitter.Node) -> bool:
    """`let _ = x;`, `_ = x;` or `drop(x);` of bare names (`x`, `&x`, `(x, y)`): they silence
    rustc's unused-variable warning, and read `x` for no work."""
    if node.type == "expression_statement" and node.named_child_count == 1:
        node = node.named_children[0]
    if node.type == "let_declaration":
        target, value = node.child_by_field_name("pattern"), node.child_by_field_name("value")
    elif node.type == "assignment_expression":
        target, value = node.child_by_field_name("left"), node.child_by_field_name("right")
    elif node.type == "call_expression" and _text(node.child_by_field_name("function")) == "drop":
        target, value = node, node.child_by_field_name("arguments")
    else:
        return False
    discarded = target is node or _text(target) == "_"
    return discarded and value is not None and all(n.type in _BARE for n in _walk(value))


def _is_panic_macro(node: tree_sitter.Node) -> bool:
    if node.type == "expression_statement" and node.named_child_count == 1:
        node = node.named_children[0]
    return (
        node.type == "macro_invocation" and _text(node.child_by_field_name("macro")) in PANIC_MACROS
    )


def _reads(body: tree_sitter.Node, names: set[str]) -> bool:
    """Whether `body` reads one of `names` (a parameter or `self`), also inside a macro's tokens
    and its format strings (`{x}`). Paths (`Default::default`), macro names and method names
    are not reads; nested functions cannot see the parameters, and discards (`let _ = x;`) do
    no work, so both are skipped."""
    stack = [body]
    while stack:
        node = stack.pop()
        kind = node.type
        if kind in _NOT_READS or _is_discard(node):
            continue
        if kind in ("identifier", "self") and _text(node) in names:
            return True
        if kind == "macro_invocation":
            stack.extend(c for c in node.children if c.type == "token_tree")
        elif kind == "token_tree":
            # Unparsed tokens: `a::b`, `m!` and `.name` are paths, macros and methods, and a
            # string may be a format string that captures a name.
            tokens = node.children
            if any(
                _format_args(_text(t) or "") & names for t in tokens if t.type == "string_literal"
            ):
                return True
            stack.extend(
                token
                for i, token in enumerate(tokens)
                if not (
                    token.type == "identifier"
                    and (
                        (i > 0 and tokens[i - 1].type in ("::", "."))
                        or (i + 1 < len(tokens) and tokens[i + 1].type in ("::", "!"))
                    )
                )
            )
        else:
            stack.extend(node.children)
    return False


def _format_args(text: str) -> set[str]:
    """Names captured by a format string: `{x}`, `{x:?}`, `{x:>5}` (not `{}`, `{0}`, `{{`)."""
    found = set()
    for piece in text.replace("{{", "").split("{")[1:]:
        name = piece.split("}")[0].split(":")[0].strip()
        if name.isidentifier():
            found.add(name)
    return found


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
