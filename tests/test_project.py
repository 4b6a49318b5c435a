"""Project-level promises: the import boundary and the README's commands."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("bash .ci/setup")]


def test_cl_core__imports_without_ray_and_mlflow():
    code = "import sys; sys.modules['ray'] = None; sys.modules['mlflow'] = None; import cl_core, cl_core.training, cl_core.demo"
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
    help_text = subprocess.run([sys.executable, *argv[1:3], "--help"], capture_output=True, text=True,
                               cwd=ROOT, check=True).stdout  # fmt: skip
    for flag in [a for a in argv[3:] if a.startswith("--")]:
        assert flag in help_text, flag
