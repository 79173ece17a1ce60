"""``mly-fast check`` and ``mly-fast serve``: real processes for the happy paths, click's runner for failures."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from live_server import free_port
from serve_process import ServeProcess, cli_env, mly_fast

from mly.cli import STARTUP_FAILURE, main
from mly.http.h2engine import native_available


def go_style_config(model_dirs: dict[str, str], path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "endpoint": {"port": 0},
        "models": [{
            "id": "aux", "url": model_dirs["keras"], "useDict": True, "datastore": "mem",
            "transformer": "e2e_transformers:score_class", "keyfields": ["sa", "sl", "kf"],
            "inputs": [{"name": "sa"}, {"name": "sl"}, {"name": "note"}, {"name": "kf"},
                       {"name": "fl", "precision": 1}],
        }],
        "datastores": [{"id": "mem", "cache": {"sizeMb": 4}}],
    }))
    return path


def test_check_go_style_config(model_dirs: dict[str, str], tmp_path: Path) -> None:
    config = go_style_config(model_dirs, tmp_path / "config.yaml")
    done = subprocess.run([*mly_fast(), "check", str(config)], capture_output=True, text=True, env=cli_env(),
                          timeout=240)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "model aux" in out
    assert "input  kf: string auxiliary wildcard" in out
    assert "input  sa: string vocabulary=3" in out
    assert "input  fl: float precision=1" in out
    assert "output score: float32" in out
    assert "ok: 1 model(s)" in out


def run_check(tmp_path: Path, config: dict) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["check", str(path)])
    return result.exit_code, result.output


def test_check_refuses_missing_model_path(tmp_path: Path) -> None:
    code, out = run_check(tmp_path, {"Models": [{"ID": "gone", "URL": str(tmp_path / "none")}]})
    assert code == STARTUP_FAILURE
    assert "model 'gone'" in out and "does not exist" in out


def test_check_refuses_folder_that_is_not_a_saved_model(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    code, out = run_check(tmp_path, {"Models": [{"ID": "bogus", "URL": str(folder)}]})
    assert code == STARTUP_FAILURE
    assert "model 'bogus'" in out


def test_check_refuses_duplicate_model_id(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    code, out = run_check(tmp_path, {"Models": [{"ID": "m", "URL": model_dirs["ops"]},
                                                {"ID": "m", "URL": model_dirs["ops"]}]})
    assert code == STARTUP_FAILURE
    assert "Models[1].ID: duplicate model ID 'm'" in out


def test_check_refuses_unknown_transformer(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    code, out = run_check(tmp_path, {"Models": [{"ID": "m", "URL": model_dirs["ops"], "Transformer": "nope"}]})
    assert code == STARTUP_FAILURE
    assert "model 'm'" in out and "unknown transformer 'nope'" in out


def test_check_imports_modules_that_register_transformers(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"Models": [{"ID": "m", "URL": model_dirs["keras"], "Transformer": "e2e-score-class",
                                                "Inputs": [{"Name": "fl", "Precision": 1}, {"Name": "kf"}]}]}))
    result = CliRunner().invoke(main, ["check", str(path), "--import", "e2e_transformers"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["check", str(path), "--import", "no_such_module_xyz"])
    assert result.exit_code != 0 and "--import no_such_module_xyz" in result.output


def test_check_refuses_float_input_without_precision_where_it_is_keyed(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    cached = {"Models": [{"ID": "num", "URL": model_dirs["numeric"], "DataStore": "mem"}],
              "Datastores": [{"ID": "mem", "Cache": {"SizeMb": 1}}]}
    code, out = run_check(tmp_path, cached)
    assert code == STARTUP_FAILURE
    assert "model 'num'" in out and "input 'x1' is a float" in out
    code, out = run_check(tmp_path, {"Models": [{"ID": "num", "URL": model_dirs["numeric"]}]})  # no key: raw floats
    assert code == 0, out


def test_check_refuses_a_key_field_that_is_no_input(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    code, out = run_check(tmp_path, {"Models": [{"ID": "k", "URL": model_dirs["keras"], "KeyFields": ["sa", "devise"],
                                                 "Inputs": [{"Name": "fl", "Precision": 1}]}]})
    assert code == STARTUP_FAILURE
    assert "model 'k'" in out and "KeyFields: 'devise' is not an input of the model" in out


def test_check_refuses_invalid_config(tmp_path: Path) -> None:
    code, out = run_check(tmp_path, {"Models": [{"ID": "m", "URL": "/m", "Inputs": [{"Name": "a", "Precision": -2}]}]})
    assert code == STARTUP_FAILURE
    assert "Models[0].Inputs[0].Precision: must be >= 0" in out


@pytest.mark.parametrize("command", ["check", "serve"])
def test_a_value_that_would_fail_later_is_refused_naming_the_key(tmp_path: Path, command: str) -> None:
    """``Timeout.Total: 0`` used to pass validation, then crash building the cache (status 1, a traceback)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "Models": [{"ID": "m", "URL": str(tmp_path / "none"), "DataStore": "d"}],
        "Connections": [{"ID": "c", "Hostnames": "127.0.0.1", "Kind": "redis", "Timeout": {"Total": 0}}],
        "Datastores": [{"ID": "d", "Connection": "c", "Dataset": "x"}],
    }))
    result = CliRunner().invoke(main, [command, str(path), "--port", str(free_port())] if command == "serve"
                                else [command, str(path)])
    assert result.exit_code == STARTUP_FAILURE, (result.output, result.exception)
    assert "Connections[0].Timeout.Total: must be 1..2147483647 ms, got 0" in result.output


def test_serve_starts_answers_and_stops_on_sigint(model_dirs: dict[str, str], tmp_path: Path) -> None:
    config = go_style_config(model_dirs, tmp_path / "config.yaml")
    with ServeProcess(config) as served:
        with served.client() as client:
            assert client.get("/v1/api/health").json() == {"aux": 1}
            row = {"sa": "b", "sl": "b", "note": "x", "kf": "k", "fl": 0.0, "i1": 10}
            out = client.post("/v1/api/model/aux/eval", json=row).json()
        assert out["status"] == "ok" and out["data"]["Class"] == "other"
        assert served.stop(signal.SIGINT) == 0


def test_serve_refuses_bad_model_with_exit_code(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{"ID": "gone", "URL": str(tmp_path / "none")}]}))
    result = CliRunner().invoke(main, ["serve", str(config), "--port", str(free_port())])
    assert result.exit_code == STARTUP_FAILURE
    assert "cannot start" in result.output and "model 'gone'" in result.output


def test_serve_reports_a_taken_port_alone(tmp_path: Path) -> None:
    """The bind fails before anything is loaded or announced: one message, exit status 3."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{"ID": "gone", "URL": str(tmp_path / "none")}]}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(config), "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == STARTUP_FAILURE, result.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "serving" not in result.output and "model 'gone'" not in result.output


BLOCK_SERVER_MODULES = """
import importlib.abc, sys
class NoServerExtra(importlib.abc.MetaPathFinder):
    # Stands in for a machine with only the client installed: these packages cannot be imported.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"tensorflow", "starlette", "uvicorn"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoServerExtra())
from mly.cli import main
main()
"""


@pytest.mark.parametrize("command", ["serve", "check"])
def test_without_the_server_extra_the_cli_names_it(tmp_path: Path, command: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{"ID": "m", "URL": "/m"}]}))
    done = subprocess.run([sys.executable, "-c", BLOCK_SERVER_MODULES, command, str(config)],
                          capture_output=True, text=True, env=cli_env(), timeout=60)
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert "missing: tensorflow, starlette, uvicorn" in done.stderr
    assert "pip install 'mly[server]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_no_http2_flag_turns_http2_off(model_dirs: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Models": [{"ID": "num", "URL": model_dirs["numeric"], "UseDict": False}]}))

    def first_bytes_after_preface(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))  # preface + SETTINGS
            return s.recv(64)

    engine = "nghttp2" if native_available() else "h2"
    with ServeProcess(config) as served:
        assert first_bytes_after_preface(served.port)[3:4] == b"\x04"  # HTTP/2: the server's SETTINGS frame
        served.stop()
        assert f"HTTP/2: {engine} engine" in served.output()  # the start-up log says which engine serves it
    with ServeProcess(config, "--no-http2") as served:
        assert first_bytes_after_preface(served.port).startswith(b"HTTP/1.1 400")
        served.stop()
        assert "HTTP/2: off" in served.output()
