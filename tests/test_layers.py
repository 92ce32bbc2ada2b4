"""The package layers hold: who may import whom, which modules may use the SDKs, and which must
stay pure math. The rules are the package docstrings' "May import" lines, written once here.

    core (types, config, strict_json, cache)
      <- student, judges                       (judges.rust <- judges.teacher)
      <- training, records, data
      <- rollout <- evaluation <- loop <- cli

A module may import its own package and what its package's rule lists; nothing imports upward.
"""

from __future__ import annotations

import ast

from tests.conftest import REPO

PACKAGES = (
    "data",
    "judges",
    "student",
    "training",
    "records",
    "rollout",
    "evaluation",
    "loop",
    "cli",
)
CORE = {"core"}
ALLOWED = {
    "core": CORE,
    "student": CORE,
    "judges.rust": CORE,
    "judges.teacher": CORE | {"judges.rust"},
    "judges": CORE | {"judges.rust", "judges.teacher"},
    "training": CORE | {"student"},
    "records": CORE | {"student"},
    "data": CORE | {"judges"},
    "rollout": CORE | {"student", "judges"},
    "evaluation": CORE | {"data", "judges", "student", "training", "records", "rollout"},
    "loop": {"core", *PACKAGES} - {"cli"},
    "cli": {"core", *PACKAGES},
}
# One import across the layers, with its reason: a local teacher's GGUF file is fetched and
# verified by the offline model registry, which the students use too.
EXCEPTIONS = {("rlaif.judges.teacher.local_server", "rlaif.student.offline")}

SDKS = {"anthropic", "openai"}
# Pure math: tensors and numbers in, tensors and numbers out. No files, processes or network.
PURE = {
    "rlaif.training.algo",
    "rlaif.training.kl_control",
    "rlaif.evaluation.stats",
    "rlaif.judges.rewards",
}
IO_MODULES = {
    "aiohttp",
    "anyio",
    "asyncio",
    "csv",
    "diskcache",
    "io",
    "json",
    "logging",
    "os",
    "pathlib",
    "rich",
    "shutil",
    "socket",
    "subprocess",
    "sys",
    "tempfile",
    "urllib",
    *SDKS,
}


def layer(module: str) -> str:
    """The rule a module lives under: 'judges.rust', 'training', ..., or 'core'."""
    if module == "rlaif.__main__":  # `python -m rlaif`: the CLI's doorway
        return "cli"
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "judges" and parts[2] in ("rust", "teacher"):
        return f"judges.{parts[2]}"
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "core"


def covers(rule: set[str], target: str) -> bool:
    """Whether an allowed set names `target`'s layer (a package allows its subpackages)."""
    return any(target == r or target.startswith(r + ".") for r in rule)


def is_package(module: str) -> bool:
    return module.split(".")[0] == "rlaif" and (REPO / module.replace(".", "/")).is_dir()


def imports(source: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a module's source, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(("." * node.level + (node.module or ""), node.lineno))
            elif is_package(node.module):  # `from rlaif.student import offline`: modules
                found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((node.module, node.lineno))
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """Every broken rule in {module name: source}, as 'module:line imports X (why)'."""
    broken = []
    for module, source in sources.items():
        mine = layer(module)
        for target, line in imports(source):
            where = f"{module}:{line} imports {target}"
            top = target.split(".")[0]
            if target.startswith("."):
                broken.append(f"{where} (relative: write rlaif.package.module)")
            elif top == "rlaif":
                theirs = layer(target)
                same = theirs == mine or covers({mine}, theirs)
                if not (same or covers(ALLOWED[mine], theirs) or (module, target) in EXCEPTIONS):
                    broken.append(f"{where} ({mine} may import {sorted(ALLOWED[mine])})")
            elif top in SDKS and mine != "judges.teacher":
                broken.append(f"{where} (only rlaif.judges.teacher talks to the SDKs)")
            if module in PURE and top in IO_MODULES:
                broken.append(f"{where} (pure math: no I/O)")
    return broken


def package_sources() -> dict[str, str]:
    root = REPO / "rlaif"
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = path.read_text()
    return sources


def test_the_package_imports_follow_the_layers():
    sources = package_sources()
    assert len(sources) > 40 and "rlaif.loop.pipeline" in sources
    assert violations(sources) == []


def test_the_checker_catches_each_kind_of_forbidden_import():
    bad = {
        "rlaif.student.model": "from rlaif.loop.run import Run\n",  # upward
        "rlaif.judges.rust.jobs": "from rlaif.judges.teacher import client\n",  # sideways
        "rlaif.training.algo": "import os\nimport torch\n",  # I/O in pure math
        "rlaif.records.metrics": "import openai\n",  # an SDK outside the teacher
        "rlaif.data.tasks": "from .check import x\n",  # relative
        "rlaif.evaluation.evaluate": "def f():\n    from rlaif.loop import pipeline\n",  # nested
    }
    found = violations(bad)
    assert [v.split(":")[0] for v in found] == list(bad)
    # What the rules allow passes: own package, a lower layer, the one written exception.
    fine = {
        "rlaif.loop.run": "from rlaif.evaluation.evaluate import evaluate\nimport anyio\n",
        "rlaif.judges.teacher.client": "import openai\nfrom rlaif.judges.rust import jobs\n",
        "rlaif.judges.teacher.local_server": "from rlaif.student import offline\n",
        "rlaif.training.algo": "import math\nimport torch\nfrom rlaif.types import Scored\n",
    }
    assert violations(fine) == []


def test_every_package_says_what_it_owns_and_may_import():
    for package in (REPO / "rlaif").rglob("__init__.py"):
        if package.parent.name == "rlaif":
            continue
        doc = ast.get_docstring(ast.parse(package.read_text())) or ""
        assert "May import" in doc or "may import" in doc, package


def test_long_modules_say_why_at_the_top():
    # About 400 lines is where a module usually holds two ideas; past it, its docstring says why
    # it does not (a sentence starting "Long:").
    for path in (REPO / "rlaif").rglob("*.py"):
        lines = len(path.read_text().splitlines())
        if lines > 420:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "Long:" in doc, f"{path.relative_to(REPO)}: {lines} lines and no reason"


def test_module_names_map_to_their_layers():
    assert layer("rlaif.types") == "core" and layer("rlaif.config") == "core"
    assert layer("rlaif.judges.rust.sandbox") == "judges.rust"
    assert layer("rlaif.judges.scoring") == "judges"
    assert layer("rlaif.loop.pipeline") == "loop"
