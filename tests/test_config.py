"""Every setting is a flag, an environment variable FLOE_<NAME> and a key of the
TOML file, with flag > environment > file > default. `host doctor` shows what is in
effect, one setting family at a time (engine, sandbox, server)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from floe_client import HOST_BIN, Client, Host, free_port

REPO = Path(__file__).resolve().parent.parent


def doctor(tmp_path: Path, file: str, env: dict[str, str], *flags: str) -> str:
    config = tmp_path / "floe.toml"
    config.write_text(file)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
    result = subprocess.run(
        [str(HOST_BIN), "doctor", "--config", str(config), *flags],
        capture_output=True, text=True, env={**clean, **env}, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def shown(output: str, what: str) -> str:
    match = re.search(rf"^{what}:\s+(.*)$", output, re.M)
    assert match, output
    return match.group(1)


def precedence(tmp_path, key: str, env_name: str, flag: str, values: list[str], what: str, show):
    """default, then file, then env over file, then flag over both."""
    default = shown(doctor(tmp_path, "", {}), what)
    file_value, env_value, flag_value = values
    file = f"{key} = {file_value}\n"
    from_file = shown(doctor(tmp_path, file, {}), what)
    from_env = shown(doctor(tmp_path, file, {env_name: env_value.strip('"')}), what)
    from_flag = shown(doctor(tmp_path, file, {env_name: env_value.strip('"')}, flag, flag_value.strip('"')), what)
    assert [from_file, from_env, from_flag] == [show(v) for v in values]
    assert from_file != default


def test_engine_settings(tmp_path):
    dirs = [tmp_path / name for name in ("from-file", "from-env", "from-flag")]
    precedence(tmp_path, "warehouse", "FLOE_WAREHOUSE", "--warehouse", [f'"{d}"' for d in dirs],
               "warehouse", lambda v: v.strip('"'))
    precedence(tmp_path, "iceberg_reader", "FLOE_ICEBERG_READER", "--iceberg-reader",
               ['"read_parquet"', '"extension"', '"read-parquet"'], "iceberg reader",
               lambda v: "ReadParquet (chosen by configuration)" if "parquet" in v else "Extension")


def test_sandbox_settings(tmp_path):
    precedence(tmp_path, "plugin_memory_mib", "FLOE_PLUGIN_MEMORY_MIB", "--plugin-memory-mib",
               ["64", "128", "32"], "plugin memory", lambda v: f"{v} MiB")
    precedence(tmp_path, "plugin_deadline_secs", "FLOE_PLUGIN_DEADLINE_SECS", "--plugin-deadline",
               ["2.5", "3", "0.5"], "plugin deadline", lambda v: {"2.5": "2.5s", "3": "3s", "0.5": "500ms"}[v])


def test_server_settings(tmp_path):
    precedence(tmp_path, "port", "FLOE_PORT", "--port", ["9001", "9002", "9003"], "listen",
               lambda v: f"127.0.0.1:{v}")
    precedence(tmp_path, "max_message_mib", "FLOE_MAX_MESSAGE_MIB", "--max-message-mib",
               ["64", "128", "512"], "max message", lambda v: f"{v} MiB")


def test_a_host_configured_by_environment_alone(tmp_path):
    port = free_port()
    env = {"FLOE_WAREHOUSE": str(tmp_path / "wh"), "FLOE_PORT": str(port), "FLOE_ICEBERG_READER": "read-parquet"}
    with Host(tmp_path / "wh", port=port, serve_args=["serve"], env=env) as host:
        assert Client(host.location).action("healthcheck")["iceberg_reader"] == "read_parquet"
    assert (tmp_path / "wh" / "catalog.db").exists()


def test_bad_settings_are_named_wherever_they_come_from(tmp_path):
    config = tmp_path / "floe.toml"
    config.write_text("plugin_memory_mib = 0\n")
    result = subprocess.run([str(HOST_BIN), "doctor", "--config", str(config)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "plugin-memory-mib" in result.stderr and "0" in result.stderr
    env = {**os.environ, "FLOE_PORT": "eighty"}
    result = subprocess.run([str(HOST_BIN), "doctor"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode != 0 and "--port" in result.stderr and "eighty" in result.stderr


def test_serve_help_lists_every_setting():
    help_text = subprocess.run([str(HOST_BIN), "serve", "--help"], capture_output=True, text=True, check=True).stdout
    for flag, env in [
        ("--warehouse", "FLOE_WAREHOUSE"), ("--config", "FLOE_CONFIG"), ("--extension-dir", "FLOE_EXTENSION_DIR"),
        ("--iceberg-reader", "FLOE_ICEBERG_READER"), ("--plugin-deadline-secs", "FLOE_PLUGIN_DEADLINE_SECS"),
        ("--plugin-memory-mib", "FLOE_PLUGIN_MEMORY_MIB"), ("--address", "FLOE_ADDRESS"), ("--port", "FLOE_PORT"),
        ("--max-message-mib", "FLOE_MAX_MESSAGE_MIB"),
    ]:
        assert flag in help_text and env in help_text, flag


def test_version_names_duckdb_and_how_it_is_linked():
    out = subprocess.run([str(HOST_BIN), "--version"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"DuckDB v1\.5\.5, (shared library /\S+/libduckdb\.so|compiled in)", out), out
    assert "iceberg-rust 0.10.1" in out, out


def linked_shared() -> bool:
    out = subprocess.run([str(HOST_BIN), "--version"], capture_output=True, text=True, check=True).stdout
    return "shared library" in out


@pytest.mark.skipif(not linked_shared(), reason="the host was built with DuckDB bundled")
def test_a_copied_host_finds_the_libduckdb_beside_it(tmp_path):
    elsewhere = tmp_path / "bin"
    elsewhere.mkdir()
    shutil.copy2(HOST_BIN, elsewhere / "host")
    # Alone, it still finds the library it was linked from (the cache).
    alone = subprocess.run(["./host", "--version"], cwd=elsewhere, capture_output=True, text=True, check=True).stdout
    assert "/.cache/floe/duckdb/" in alone or "duckdb/1.5.5" in alone, alone
    # With a libduckdb.so beside it, that one wins: the pair can travel together.
    linked = re.search(r"shared library (\S+?\.so)", alone).group(1)
    shutil.copy2(linked, elsewhere / "libduckdb.so")
    beside = subprocess.run([str(elsewhere / "host"), "--version"], cwd="/", capture_output=True, text=True,
                            check=True).stdout
    assert str(elsewhere / "libduckdb.so") in beside, beside


def test_setup_replaces_a_corrupt_cached_libduckdb(tmp_path):
    cache = tmp_path / "cache"
    target = cache / "duckdb" / "1.5.5-r.5"
    target.mkdir(parents=True)
    (target / "libduckdb.so").write_bytes(b"not a library")
    script = ". tests/duckdb.sh && ! duckdb_cached && duckdb_fetch && duckdb_cached && echo fetched"
    result = subprocess.run(["bash", "-c", script], cwd=REPO, env={**os.environ, "FLOE_CACHE": str(cache)},
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "fetched", result.stderr
    assert (target / "libduckdb.so").stat().st_size > 10_000_000
