"""Static checks of the installer definitions in packaging/ (fast: nothing is built here).

The full build + install + self-test is packaging/verify_deb.sh, run by .ci/run.
"""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "gpi_desktop.spec"
DESKTOP = PACKAGING / "linux" / "gpi-desktop.desktop"
ISS = PACKAGING / "windows" / "gpi-desktop.iss"
WORKFLOW = ROOT / ".github" / "workflows" / "installers.yml"


def _spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"))


def _spec_list(name: str) -> list[str]:
    """A module-level `NAME = [...]` literal of the spec."""
    for node in _spec_tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned a literal in {SPEC.name}")


def _calls(name: str) -> list[ast.Call]:
    return [n for n in ast.walk(_spec_tree()) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kwarg(call: ast.Call, key: str):
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value
    return None


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def test_spec_never_uses_upx():
    calls = _calls("EXE") + _calls("COLLECT")
    assert calls, "the spec defines no EXE/COLLECT"
    for call in calls:
        value = _kwarg(call, "upx")
        assert isinstance(value, ast.Constant) and value.value is False, f"{call.func.id} must say upx=False"
    assert "upx=True" not in SPEC.read_text(encoding="utf-8").replace(" ", "")


def test_spec_is_a_one_folder_build():
    (exe,) = _calls("EXE")
    assert _kwarg(exe, "exclude_binaries").value is True, "binaries inside the EXE would make a one-file build"
    assert len(_calls("COLLECT")) == 1


def test_spec_ships_the_metadata_transformers_checks_at_import():
    import transformers

    # Read the list transformers checks, without running the check.
    source = (Path(transformers.__file__).parent / "dependency_versions_check.py").read_text(encoding="utf-8")
    checked = next(
        ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "pkgs_to_check_at_runtime"
    )
    shipped = {_normalise(d) for d in _spec_list("METADATA")}
    missing = {_normalise(d) for d in checked if d != "python"} - shipped
    assert not missing, f"the frozen app would fail importing transformers: no metadata for {sorted(missing)}"
    assert {"torch", "transformers", "keyring"} <= shipped


def test_spec_finds_keyring_backends_that_are_loaded_through_entry_points():
    text = SPEC.read_text(encoding="utf-8")
    assert 'collect_submodules("keyring.backends")' in text
    assert 'copy_metadata("keyring", recursive=True)' in text


def test_spec_builds_with_pyside6_only():
    excluded = set(_spec_list("EXCLUDES"))
    assert {"PyQt5", "PyQt6", "PySide2", "tkinter", "_tkinter"} <= excluded
    assert "PySide6" not in excluded and "shiboken6" not in excluded


def test_spec_bundles_the_resources_the_window_looks_for():
    from gpi_desktop.ui.shared import resources

    text = SPEC.read_text(encoding="utf-8")
    assert '(str(RESOURCES), "resources")' in text  # lands at sys._MEIPASS/resources, as resources_dir() expects
    assert (ROOT / "resources" / resources.DEMO_MODEL_DIRNAME / "config.json").is_file()
    assert (ROOT / "resources" / resources.SAMPLE_PROMPTS_FILENAME).is_file()
    assert (ROOT / "resources" / resources.ICON_FILENAME).is_file()


def test_spec_runs_the_stdio_hook_and_the_entry_script_that_exist():
    (analysis,) = _calls("Analysis")
    hooks = ast.unparse(_kwarg(analysis, "runtime_hooks"))
    assert "rthook_stdio.py" in hooks and (PACKAGING / "rthooks" / "rthook_stdio.py").is_file()
    assert "entry.py" in ast.unparse(analysis.args[0]) and (PACKAGING / "entry.py").is_file()


def test_entry_script_imports_torch_before_the_app_and_qt():
    tree = ast.parse((PACKAGING / "entry.py").read_text(encoding="utf-8"))
    order = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            order += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            order.append(node.module)
    first_app = min(
        i for i, name in enumerate(order) if name.startswith(("gpi_desktop.cli", "gpi_desktop.ui", "PySide6"))
    )
    assert "torch" in order[:first_app], f"torch must be imported before Qt and the app: {order}"
    calls = [
        ast.unparse(node.value.func)
        for node in tree.body
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    ]
    first_call = next(
        i for i, node in enumerate(tree.body) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    )
    torch_at = next(
        i
        for i, node in enumerate(tree.body)
        if isinstance(node, ast.Import) and any(a.name == "torch" for a in node.names)
    )
    assert calls[0] == "enable_mps_fallback" and first_call < torch_at, (
        "the MPS fallback must be set before torch loads"
    )


def test_stdio_hook_lets_logging_and_tqdm_write_when_a_windowed_app_has_no_streams():
    # What a windowed launch looks like to Python: no stdout/stderr at all.
    code = textwrap.dedent(f"""
        import runpy, sys, logging, warnings
        sys.stdout = sys.stderr = sys.stdin = None
        runpy.run_path({str(PACKAGING / "rthooks" / "rthook_stdio.py")!r})
        logging.basicConfig()
        logging.getLogger("transformers").warning("a warning")
        warnings.warn("a python warning")
        from tqdm import tqdm
        for _ in tqdm(range(3)):
            pass
        print("printed")
        sys.stdin.read()
        sys.exit(0 if sys.stdout.name == sys.stderr.name else 3)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "", "the hook must send the output to the null device"


def test_stdio_hook_keeps_real_streams():
    code = (
        f"import runpy, sys; s = sys.stdout; runpy.run_path({str(PACKAGING / 'rthooks' / 'rthook_stdio.py')!r}); "
        "print('still here'); sys.exit(0 if sys.stdout is s else 3)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "still here\n"


def test_desktop_entry_launches_the_program_with_its_icon():
    entry = configparser.ConfigParser(interpolation=None, strict=True)
    entry.optionxform = str
    entry.read(DESKTOP, encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Exec"].split()[0] == "gpi-desktop"
    assert section["Icon"] == "gpi-desktop" and section["Terminal"] == "false"
    # build_deb.sh installs resources/icon.png under that name in the hicolor theme.
    assert "hicolor/$SIZE/apps/gpi-desktop.png" in (PACKAGING / "build_deb.sh").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils is not installed")
def test_desktop_entry_validates():
    done = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_inno_script_has_start_menu_entry_icon_and_uninstaller():
    text = ISS.read_text(encoding="utf-8")
    assert re.search(r"^SetupIconFile=.*gpi-desktop\.ico$", text, re.M)
    assert re.search(r"^UninstallDisplayIcon=\{app\}\\\{#AppExe\}$", text, re.M)
    assert re.search(r'^Name: "\{group\}\\\{#AppName\}"; Filename: "\{app\}\\\{#AppExe\}"', text, re.M)
    assert re.search(r'^Name: "\{group\}\\Uninstall .*"; Filename: "\{uninstallexe\}"', text, re.M)
    # The whole one-folder tree, subfolders included.
    assert re.search(r'^Source: ".*\\dist\\gpi-desktop\\\*";.*recursesubdirs', text, re.M)
    # The uninstaller must never wipe a folder the user chose (only remove it when empty).
    assert "Type: filesandordirs" not in text


def test_windows_build_makes_the_icon_the_inno_script_names():
    script = (PACKAGING / "windows" / "build_windows.ps1").read_text(encoding="utf-8")
    assert "build\\gpi-desktop.ico" in script and "resources\\icon.png" in script
    assert "{#SourceRoot}\\build\\gpi-desktop.ico" in ISS.read_text(encoding="utf-8")


def test_build_scripts_parse():
    scripts = [*PACKAGING.glob("*.sh"), *PACKAGING.glob("*/*.sh")]
    assert {"build_linux.sh", "build_deb.sh", "verify_deb.sh", "build_macos.sh"} <= {p.name for p in scripts}
    for script in scripts:
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script.name}: {done.stderr}"
    for source in [*PACKAGING.glob("*.py"), *PACKAGING.glob("*/*.py"), SPEC]:
        compile(source.read_text(encoding="utf-8"), str(source), "exec")


def test_build_requirements_leave_torch_to_the_build_scripts():
    # torch comes from the index that gives the wanted build (CPU or CUDA); a
    # plain `torch` pin here would pull PyPI's CUDA build on Linux.
    lines = [line.split("#")[0].strip() for line in (PACKAGING / "requirements-build.txt").read_text().splitlines()]
    names = {re.split(r"[=<>;\[ ]", line)[0].lower() for line in lines if line}
    assert "torch" not in names and "pyinstaller" in names and "pyside6-essentials" in names
    assert not names & {"pyqt5", "pyqt6", "pyside2"}
    assert "torch==" in (PACKAGING / "build_linux.sh").read_text()


def test_ci_workflow_builds_each_installer_on_its_own_os():
    yaml = pytest.importorskip("yaml")
    jobs = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]
    runners = {name: job["runs-on"] for name, job in jobs.items()}
    steps = {name: "\n".join(str(step.get("run", "")) for step in job["steps"]) for name, job in jobs.items()}
    assert runners["linux-deb"].startswith("ubuntu") and "packaging/verify_deb.sh" in steps["linux-deb"]
    assert runners["windows-setup"].startswith("windows") and "build_windows.ps1" in steps["windows-setup"]
    assert runners["macos-dmg"].startswith("macos") and "build_macos.sh" in steps["macos-dmg"]
    assert all("--self-test" in steps[name] for name in ("windows-setup", "macos-dmg"))


def test_macos_build_is_for_apple_silicon_and_bundles_a_torch_with_mps():
    script = (PACKAGING / "macos" / "build_macos.sh").read_text(encoding="utf-8")
    assert "torch.backends.mps.is_built()" in script and '"$(uname -m)" == arm64' in script
    assert script.index("mps.is_built()") < script.index("PyInstaller")  # checked before it is bundled
    readme = (PACKAGING / "README.md").read_text(encoding="utf-8")
    assert "MPS has not run on a real Mac yet" in readme and "Intel Macs get the CPU path" in readme
