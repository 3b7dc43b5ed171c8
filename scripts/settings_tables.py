"""The README's settings tables, generated from what the plugins declare.

Each table is built from `<plugin> --about --format json` (the console scripts installed next
to this Python, else on PATH): one row per setting with its type, default and description;
required and secret settings are marked. In README.md a table sits between two marker lines,
`<!-- settings:tap-copernica:start -->` and `<!-- settings:tap-copernica:end -->` (the same
with `target-copernica`).

    python scripts/settings_tables.py                   # print both tables
    python scripts/settings_tables.py --check README.md # exit 1 with a diff if they differ
    python scripts/settings_tables.py --write README.md # replace the tables between the markers
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PLUGINS = ("tap-copernica", "target-copernica")
HEADER = "| Setting | Type | Default | Description |\n|---|---|---|---|"


def start_marker(plugin: str) -> str:
    return f"<!-- settings:{plugin}:start -->"


def end_marker(plugin: str) -> str:
    return f"<!-- settings:{plugin}:end -->"


def executable(plugin: str) -> str:
    """The plugin's console script next to this interpreter (a venv), else the one on PATH."""
    beside = Path(sys.executable).parent / plugin
    if beside.exists():
        return str(beside)
    found = shutil.which(plugin)
    if found is None:
        raise SystemExit(f"{plugin} is not installed (pip install -e . first)")
    return found


def about(plugin: str) -> dict[str, Any]:
    # The command is fixed: one of PLUGINS, resolved to an absolute path.
    result = subprocess.run(  # noqa: S603
        [executable(plugin), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{plugin} --about failed:\n{result.stderr}")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def code(value: str) -> str:
    return f"`{value}`"


def cell(text: str) -> str:
    """Text made safe for one table cell: one line, `|` escaped, and outside code spans `<`
    as an entity (`'ms:<ID>'` would otherwise be read as an HTML tag)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    for plain in range(0, len(parts), 2):
        parts[plain] = parts[plain].replace("<", "&lt;")
    return "`".join(parts)


def type_of(schema: dict[str, Any]) -> str:
    """`integer, 1 to 1000`, `array of string`, `string: a, b`, `string (date-time)`..."""
    raw = schema.get("type", [])
    types = [t for t in ([raw] if isinstance(raw, str) else raw) if t != "null"]
    text = " or ".join(types) if types else "any"
    if "array" in types and isinstance(schema.get("items"), dict):
        text = text.replace("array", f"array of {type_of(schema['items'])}")
    if "format" in schema:
        text += f" ({schema['format']})"
    if "enum" in schema:
        text += ": " + ", ".join(code(str(v)) for v in schema["enum"] if v is not None)
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        text += f", {low} to {high}"
    elif low is not None:
        text += f", ≥ {low}"
    elif high is not None:
        text += f", ≤ {high}"
    return text


def default_of(schema: dict[str, Any]) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    return code(value if isinstance(value, str) else json.dumps(value))


def row(name: str, schema: dict[str, Any], marks: list[str]) -> str:
    setting = code(name) + (f" ({', '.join(marks)})" if marks else "")
    cells = [setting, type_of(schema), default_of(schema), schema.get("description", "")]
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def table(about_json: dict[str, Any]) -> str:
    """The settings table of one plugin, in the order `--about` lists them.

    A setting that is a map of objects (`stream_routes`: stream name -> route) is followed by
    one row per field of those objects, named `<setting>.<key>.<field>`.
    """
    settings = about_json["settings"]
    required = set(settings.get("required", []))
    lines = [HEADER]
    for name, schema in settings["properties"].items():
        flags = (("required", name in required), ("secret", bool(schema.get("secret"))))
        lines.append(row(name, schema, [mark for mark, on in flags if on]))
        entries = schema.get("additionalProperties")
        if isinstance(entries, dict) and isinstance(entries.get("properties"), dict):
            for field, field_schema in entries["properties"].items():
                lines.append(row(f"{name}.<key>.{field}", field_schema, []))
    return "\n".join(lines)


def tables() -> dict[str, str]:
    return {plugin: table(about(plugin)) for plugin in PLUGINS}


def block(plugin: str, text: str) -> str:
    return f"{start_marker(plugin)}\n{text}\n{end_marker(plugin)}"


def pattern(plugin: str) -> re.Pattern[str]:
    return re.compile(
        re.escape(start_marker(plugin)) + r"\n(.*?)\n?" + re.escape(end_marker(plugin)),
        re.DOTALL,
    )


def current(readme: str, plugin: str) -> str | None:
    """The table between the plugin's markers, or None when the markers are missing."""
    match = pattern(plugin).search(readme)
    return None if match is None else match.group(1)


def check(path: Path, generated: dict[str, str]) -> int:
    readme = path.read_text(encoding="utf-8")
    status = 0
    for plugin, text in generated.items():
        found = current(readme, plugin)
        if found is None:
            print(f"{path}: no {start_marker(plugin)} ... {end_marker(plugin)} block")
            status = 1
        elif found != text:
            diff = difflib.unified_diff(
                found.splitlines(),
                text.splitlines(),
                f"{path} ({plugin})",
                f"{plugin} --about",
                lineterm="",
            )
            print("\n".join(diff))
            status = 1
    if status:
        print(f"\nThe settings tables in {path} are out of date: run")
        print(f"  python scripts/settings_tables.py --write {path}")
    return status


def write(path: Path, generated: dict[str, str]) -> int:
    readme = path.read_text(encoding="utf-8")
    for plugin, text in generated.items():
        match = pattern(plugin).search(readme)
        if match is None:
            print(f"{path}: no {start_marker(plugin)} ... {end_marker(plugin)} block")
            return 1
        readme = readme[: match.start()] + block(plugin, text) + readme[match.end() :]
    path.write_text(readme, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The README's settings tables from --about.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="README", type=Path, help="compare, exit 1 on a diff")
    mode.add_argument("--write", metavar="README", type=Path, help="replace the tables")
    args = parser.parse_args(argv)
    generated = tables()
    if args.check:
        return check(args.check, generated)
    if args.write:
        return write(args.write, generated)
    for plugin, text in generated.items():
        print(f"{plugin}:\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
