"""The console scripts of pyproject.toml's [project.scripts] are installed and run.

Each script runs with `--help` from an empty directory (so nothing is imported from
the checkout by accident): exit 0, and the usage lists one of the command's own flags.
They need the package installed in this interpreter's environment (`pip install -e
'.[all]'`, the README's test command). Each imports TensorFlow (seconds), so they run
two at a time.
"""

import concurrent.futures
import importlib.metadata
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

# A flag defined by each command itself (keras_oltr/commands/*.py).
OWN_FLAG = {
    "oltr-train": "dataset",
    "oltr-evaluate": "workdir",
    "oltr-compare": "glob",
    "oltr-make-splits": "out_dir",
    "oltr-predict": "model",
    "oltr-export-saved-model": "model_name",
    "oltr-export-tflite": "quantization",
    "oltr-export-onnx": "opset",
}


def pyproject_scripts():
    """{name: "module:function"} of pyproject.toml's [project.scripts] table."""
    scripts, inside = {}, False
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith("["):
                inside = line == "[project.scripts]"
            elif inside and "=" in line:
                name, target = (part.strip().strip('"') for part in line.split("=", 1))
                scripts[name] = target
    return scripts


SCRIPTS = pyproject_scripts()


def test_every_script_is_checked_and_installed():
    assert sorted(SCRIPTS) == sorted(OWN_FLAG)
    for target in SCRIPTS.values():
        module, function = target.split(":")
        assert re.fullmatch(r"keras_oltr\.commands\.\w+", module), target
        assert function == "console_main", target
    installed = {
        ep.name: ep.value
        for ep in importlib.metadata.distribution("keras-oltr").entry_points
        if ep.group == "console_scripts"
    }
    assert installed == SCRIPTS, (
        "the installed console scripts differ from pyproject.toml's: "
        "reinstall with `pip install -e '.[all]'`"
    )


@pytest.fixture(scope="module")
def help_outputs(tmp_path_factory):
    """{name: CompletedProcess} of `<name> --help`, run from an empty directory."""
    cwd = tmp_path_factory.mktemp("cwd")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    def run(name):
        path = os.path.join(BIN, name)
        if not os.path.exists(path):
            return None
        return subprocess.run(
            [path, "--help"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(SCRIPTS, pool.map(run, SCRIPTS), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OWN_FLAG))
def test_help(help_outputs, name):
    result = help_outputs[name]
    assert result is not None, f"{name} is not in {BIN}: run `pip install -e '.[all]'`"
    assert result.returncode == 0, result.stdout + result.stderr
    flag = re.escape(OWN_FLAG[name])
    assert re.search(rf"^\s+--(\[no\])?{flag}:", result.stdout, re.MULTILINE), result.stdout


def test_a_missing_deployment_package_is_one_line_naming_the_extra(capsys):
    from keras_oltr.export import cli

    def convert():
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")

    assert cli.run(convert) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'onnx'" in error and "keras-oltr[deploy]" in error
