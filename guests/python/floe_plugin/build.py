"""Build a Python plugin into a floe WebAssembly component.

    python -m floe_plugin.build my_plugin.py -o my_plugin.wasm
    host plugins add my-plugin my_plugin.wasm -w warehouse

Runs componentize-py (pinned with the SDK) on the plugin file, this SDK and two
generated modules that connect them to the WIT world `transform-plugin`. Offline:
nothing is downloaded.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SDK = Path(__file__).resolve().parent.parent
WIT = SDK.parent.parent / "wit"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m floe_plugin.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("plugin", type=Path, help="the plugin's .py file (it calls floe_plugin.export)")
    parser.add_argument("-o", "--output", type=Path, help="the component to write (default: <plugin>.wasm)")
    parser.add_argument("--path", type=Path, action="append", default=[],
                        help="a directory of modules the plugin imports (repeatable)")
    parser.add_argument("--wit", type=Path, default=WIT, help=f"the floe WIT directory (default: {WIT})")
    args = parser.parse_args(argv)
    plugin: Path = args.plugin.resolve()
    if plugin.suffix != ".py" or not plugin.is_file():
        parser.error(f"{args.plugin}: not a Python file")
    if not (args.wit / "transform.wit").is_file():
        parser.error(f"{args.wit}: no transform.wit there (pass --wit)")
    output = (args.output or plugin.with_suffix(".wasm")).resolve()
    componentize = shutil.which("componentize-py") or str(Path(sys.executable).with_name("componentize-py"))
    with tempfile.TemporaryDirectory(prefix="floe-plugin-") as glue:
        # The world exports interface `transform`: componentize-py looks for class
        # `Transform` in the app module and the resource `Instance` in module `transform`.
        # The plugin is copied under a fixed name: a file called select.py must not
        # stand in for the standard library's module of that name.
        shutil.copy(plugin, Path(glue) / "floe_plugin_main.py")
        (Path(glue) / "app.py").write_text(
            "import floe_plugin_main  # noqa: F401 (calls floe_plugin.export)\n"
            "from floe_plugin._component import Transform  # noqa: F401\n")
        (Path(glue) / "transform.py").write_text("from floe_plugin._component import Instance  # noqa: F401\n")
        command = [componentize, "-d", str(args.wit), "-w", "transform-plugin", "componentize",
                   "-p", glue, "-p", str(SDK), *(x for d in args.path for x in ("-p", str(d.resolve()))),
                   "app", "-o", str(output)]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if not line.startswith("  ")]
        sys.stderr.write("\n".join(lines[:40]) + "\n")
        print(f"building {plugin.name} failed (componentize-py, above)", file=sys.stderr)
        return 1
    print(f"{output} ({output.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
