"""Imports point one way: jobs -> {prep, train, eval, export} -> {input, models} -> layers -> core.

Every module of tfvid/ and pipelines/ is read with `ast` (no import runs) and each of its imports,
module-level and function-level alike, is checked against the LAYERING table below. A failure lists
every violation as file:line.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The layering, as one table: group -> (the modules in it, the groups it may import).
# A module name matches a prefix ("tfvid.layers" covers tfvid.layers.*); the longest prefix wins.
_TASKS = ("prep", "train", "eval", "export")
LAYERING = {
    "core": (("tfvid", "tfvid.atomic", "tfvid.lock", "tfvid.progress"),
             {"core"}),
    "layers": (("tfvid.layers",),
               {"layers", "core"}),
    "input": (("tfvid.data",),
              {"input", "layers", "core"}),                       # never models
    "models": (("tfvid.models",),
               {"models", "input", "layers", "core"}),
    "prep": (("tfvid.prep",),
             {*_TASKS, "input", "models", "layers", "core"}),
    "train": (("tfvid.train",), {*_TASKS, "input", "models", "layers", "core"}),
    "eval": (("tfvid.eval",), {*_TASKS, "input", "models", "layers", "core"}),
    "export": (("tfvid.export",), {*_TASKS, "input", "models", "layers", "core"}),
    "jobs": (("pipelines",),                                      # and no job imports another
             {"jobs", *_TASKS, "input", "models", "layers", "core"}),
}
# Modules of pipelines/ that any job may import, and the parts that belong to one job.
SHARED_JOB_MODULES = {"pipelines", "pipelines.common"}
JOB_PARTS = {"pipelines.bench_": "pipelines.benchmark"}   # prefix -> the job that owns them

# Known violations in files another change is editing now: (importer, imported) -> why.
# Remove an entry once its file is fixed (test_allow_list_is_current fails on a stale entry).
KNOWN_VIOLATIONS = {}


def _module_files():
    """module name -> path, for every .py file of tfvid/ and pipelines/."""
    out = {}
    for top in ("tfvid", "pipelines"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


MODULES = _module_files()


def group_of(module):
    """The LAYERING group of a tfvid/pipelines module name (longest matching prefix)."""
    best, best_len = None, -1
    for group, (prefixes, _) in LAYERING.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = group, len(prefix)
    return best


def _imports(module, path):
    """(line, imported module, inside a function) for every import of a tfvid/pipelines module
    in the file, at any depth (imported modules outside tfvid/pipelines give None)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    is_pkg = os.path.basename(path) == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((child.lineno, _resolve(a.name), in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - (child.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append((child.lineno, _resolve(sub if sub in MODULES else base),
                                  in_function))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def _resolve(name):
    """The longest prefix of `name` that is a tfvid/pipelines module, or None for others."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _job_of(module):
    if module in SHARED_JOB_MODULES:
        return None
    for prefix, job in JOB_PARTS.items():
        if module.startswith(prefix):
            return job
    return module


def violations():
    """(importer, imported, 'file:line: message') for every import against the layering."""
    out = []
    for module, path in sorted(MODULES.items()):
        group = group_of(module)
        assert group is not None, f"{module} is in no group of LAYERING: add it to the table"
        allowed = LAYERING[group][1]
        for line, target, _ in _imports(module, path):
            if target is None or target == module:
                continue
            target_group = group_of(target)
            where = f"{os.path.relpath(path, ROOT)}:{line}"
            if target_group not in allowed:
                out.append((module, target, f"{where}: {module} ({group}) imports {target} "
                                            f"({target_group})"))
            elif group == "jobs" and target_group == "jobs":
                job, target_job = _job_of(module), _job_of(target)
                if target_job is not None and target_job != job:
                    out.append((module, target, f"{where}: job {module} imports another job's "
                                                f"module {target}"))
    return out


def test_every_module_has_a_group():
    assert all(group_of(m) for m in MODULES), [m for m in MODULES if not group_of(m)]
    # each named module of the table exists (a renamed file must be renamed here too)
    named = [p for prefixes, _ in LAYERING.values() for p in prefixes]
    assert [p for p in named if p not in MODULES] == []


def test_imports_point_down():
    found = [v for v in violations() if (v[0], v[1]) not in KNOWN_VIOLATIONS]
    for _, _, message in found:
        print(message)
    assert not found, "imports against the layering:\n" + "\n".join(m for _, _, m in found)


def test_allow_list_is_current():
    current = {(a, b) for a, b, _ in violations()}
    stale = sorted(set(KNOWN_VIOLATIONS) - current)
    assert not stale, f"KNOWN_VIOLATIONS entries that no longer occur (remove them): {stale}"


def test_checker_sees_function_level_and_relative_imports(tmp_path):
    """The reader finds imports inside functions and resolves relative ones."""
    src = "from .consensus import X\n\ndef f():\n    from tfvid.models import tsn\n"
    path = tmp_path / "fake.py"
    path.write_text(src)
    found = _imports("tfvid.layers.fake", str(path))
    assert (1, "tfvid.layers.consensus", False) in found
    assert (4, "tfvid.models.tsn", True) in found
    assert group_of("tfvid.data.sampling") == "input"
    assert group_of("tfvid.prep.video") == "prep"
    assert group_of("tfvid.data.kernels") == "input"


def _module_level_graph():
    """module -> the tfvid/pipelines modules its module-level imports run (a submodule's import
    of its own parent packages is left out: the package is already being initialised)."""
    graph = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, set())
        for _, target, in_function in _imports(module, path):
            if target is None or in_function:
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name in MODULES and name != module and not module.startswith(name + "."):
                    edges.add(name)
    return graph


def _reachable(graph, start):
    seen, stack = set(), [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_no_import_cycles():
    """No module-level import cycle, and no function-level import that only hides one (an
    import inside a function of A of a module B whose module-level imports reach A)."""
    graph = _module_level_graph()
    problems = [f"module-level import cycle through {m}" for m in sorted(graph)
                if m in _reachable(graph, m)]
    for module, path in sorted(MODULES.items()):
        for line, target, in_function in _imports(module, path):
            if in_function and target not in (None, module) \
                    and module in _reachable(graph, target):
                problems.append(f"{os.path.relpath(path, ROOT)}:{line}: {module} imports "
                                f"{target} inside a function to break an import cycle")
    for message in problems:
        print(message)
    assert not problems, "\n".join(problems)
