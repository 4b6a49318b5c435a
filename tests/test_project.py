"""Project-level promises: the import boundary and the README's commands."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("bash .ci/setup")
    ]


def test_cl_core__imports_without_ray_and_mlflow():
    code = (
        "import sys; sys.modules['ray'] = None; sys.modules['mlflow'] = None; "
        "import cl_core, cl_core.training, cl_core.demo"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_workers__import_no_torchvision_until_a_resnet_or_an_accelerator_crop_needs_it():
    # torchvision's import loads torch._dynamo (1.5 s a process): Train workers and data tasks
    # of the tiny backbones never pay it, and the lazy names still resolve.
    code = (
        "import sys, cl_core, pipelines.train.worker, pipelines.data.build; "
        "assert 'torchvision' not in sys.modules, 'imported eagerly'; "
        "from cl_core.transforms import reference_views; from cl_core import build_backbone; "
        "build_backbone('resnet18', 1, True); assert 'torchvision' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_ci__runs_the_readme_test_command_exactly():
    commands = readme_commands()
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1, commands
    assert test_commands[0] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme__main_job_command_names_a_real_module_and_flags():
    (main_job,) = [c for c in readme_commands() if "pytest" not in c]
    argv = main_job.split("&&", 1)[1].split()
    assert argv[0] == ".venv/bin/python"
    help_text = subprocess.run(
        [sys.executable, *argv[1:3], "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    for flag in [a for a in argv[3:] if a.startswith("--")]:
        assert flag in help_text, flag


def _first_party_imports(path: Path, module: str) -> set[str]:
    """Modules of this project that ``path`` imports anywhere (function-level imports included),
    except under ``if TYPE_CHECKING:``; ``from a import b`` counts ``a.b`` when that is a module."""
    tree = ast.parse(path.read_text())
    skip = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"  # absolute imports only
            base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _module_path(candidate) else base)
    return {name for name in found if name.split(".")[0] in FIRST_PARTY}


FIRST_PARTY = ("cl_core", "pipelines", "tune_spaces")


def _module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _modules() -> dict[str, Path]:
    out = {}
    for top in FIRST_PARTY:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _first_party_imports(path, name) & set(modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (or a self-loop)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_import_graph__has_no_cycle():
    graph = import_graph()
    assert len(graph) > 60 and sum(map(len, graph.values())) > 100  # the walk found the project
    assert _cycles(graph) == []


def test_import_graph__cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph__no_module_imports_a_cli_and_cl_core_imports_no_pipelines():
    clis = {f"pipelines.{name}" for name in ("pretrain", "tune", "evaluate", "compare")}
    for module, imports in import_graph().items():
        assert not imports & clis, (module, imports & clis)
        if module.startswith("cl_core"):
            assert not {i for i in imports if not i.startswith("cl_core")}, module


def test_project__no_sys_path_edits_and_every_package_is_installed():
    for top in (*FIRST_PARTY, "tests", "bench"):
        for path in (ROOT / top).rglob("*.py"):
            calls = [
                ast.unparse(n.func) for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
            ]
            assert not [c for c in calls if c.startswith("sys.path.")], path
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert listed == packages | {"pipelines.configs"}
