"""The docs say what the code does: checks that fail when they drift apart."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
DIFFERENCES = (ROOT / "docs" / "differences-from-go.md").read_text()


def project_text_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / ".ci" / "run", *ROOT.glob("docs/*.md")]
    for folder in ("mly", "bench", "examples", "tests", "scripts"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".pyx", ".pxd", ".pxi", ".pyi", ".md", ".sh")]
    return [p for p in files if p.is_file() and "model" not in p.relative_to(ROOT).parts[:2]]


#: Pointers out of the repository, by their form (what they point at is not ours to name).
OUTSIDE = {
    "a path up and out of the repository": re.compile(r"(?<![./\w])\.\./[\w-]+(?:/|(?=[\s`'\")\]]|$))"),
    "another tree's docs folder": re.compile(r"\b[\w.-]+/docs\b"),
    "a reference document by name": re.compile(r"\b[\w-]+-reference\b"),
    "a section citation (only RFCs are cited by section)": re.compile(r"^(?!.*RFC).*§"),
}
_MD_NAME = re.compile(r"\b([\w.-]+\.md)\b")


def test_the_project_stands_alone() -> None:
    """Docs and comments state facts in their own words: no pointers to files the repository does not ship."""
    shipped = {p.name for p in ROOT.rglob("*.md") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)}
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {why}: {line.strip()}"
        for path in project_text_files()
        if path.name != "test_docs.py"
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        for why in [
            *(why for why, pattern in OUTSIDE.items() if pattern.search(line)),
            *(f"{name} is not in the repository" for name in _MD_NAME.findall(line) if name not in shipped),
        ]
    ]
    assert not offenders, "\n".join(offenders)


def test_architecture_lists_only_modules_that_exist() -> None:
    block = ARCHITECTURE.split("```")[1]
    missing = []
    folder = ROOT
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or line.strip().startswith("mly/"):
            continue
        indent, name = len(match.group(1)), match.group(2)
        for part in name.split(","):
            part = part.strip()
            if not re.fullmatch(r"[\w.]+/?|[\w.]+\.\w+", part):
                continue
            base = ROOT / "mly" if indent <= 2 else folder
            target = base / part.rstrip("/")
            if not target.exists():
                missing.append(f"{part} (looked for {target.relative_to(ROOT)})")
            if part.endswith("/") and indent <= 2:
                folder = target
    assert not missing, missing
    assert "metrics" not in re.findall(r"`(\w+)`", ARCHITECTURE.split("```")[0]) or (ROOT / "mly" / "metrics").exists()


def test_differences_are_numbered_in_order() -> None:
    table = DIFFERENCES.split("## Deliberately different")[1].split("##")[0]
    numbers = [m.group(1) for m in re.finditer(r"^\| (\w+) \|", table, re.M) if m.group(1) != "#"]
    assert numbers == [str(i) for i in range(1, len(numbers) + 1)], numbers


def test_every_reference_to_a_difference_names_a_row_that_exists() -> None:
    table = DIFFERENCES.split("## Deliberately different")[1].split("##")[0]
    rows = len(re.findall(r"^\| \d+ \|", table, re.M))
    cited = {
        (path.relative_to(ROOT), int(n))
        for path in project_text_files()
        for n in re.findall(r"differences-from-go\.md #(\d+)", path.read_text(errors="replace"))
    }
    assert all(1 <= n <= rows for _, n in cited), sorted(cited)


def test_readme_lists_every_route_and_error_status() -> None:
    for route in ("/eval", "meta/config", "meta/dictionary", "meta/stats", "/v1/api/health", "/v1/api/config"):
        assert route in README, route
    errors = README.split("## Errors")[1].split("##")[0]
    for status in ("400", "404", "405", "413", "429", "503", "500"):
        assert status in errors, status
    assert "MaxBatchSize" in errors


def test_readme_covers_setup_without_make_workers_and_security() -> None:
    assert "pip install -e '.[server]'" in README
    assert "pip install 'mly[server]'" in (ROOT / "mly" / "cli.py").read_text()
    assert "redis-server" in README.split("## Tests")[1]
    workers = README.split("`--workers N`")[1][:800]
    assert "own" in workers and "memory tier" in workers and "L1" in workers
    security = README.split("## Security")[1]
    assert "0.0.0.0" in security and "AllowedSubnet" in security and "/v1/api/config" in security


def test_make_does_not_reinstall_when_nothing_changed() -> None:
    """Under ``make test`` the install stamp is fresh, so a second make would run no pip install."""
    stamp = ROOT / ".venv" / ".installed-dev"
    if shutil.which("make") is None or not stamp.exists() or Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not running under the project's make-built virtualenv")
    plan = subprocess.run(["make", "-n", "setup-dev"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert "pip install" not in plan.stdout, plan.stdout


def test_bench_server_reports_the_spread_over_rounds() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_server
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert bench_server.spread([3.0, 1.0, 2.0]) == "2.00 (1.00-3.00)"
    assert bench_server.spread([5.0]) == "5.00"
    help_text = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_server.py"), "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    assert "--rounds" in help_text
