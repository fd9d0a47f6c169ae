"""The docs (README.md and docs/*.md) stay true to the repository: the front page is short, every config and script
they name exists, every flag they pass to a script or to `hfkd` is one that command accepts, and every relative link
points to an existing file (and heading)."""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex

from .conftest import ROOT, load_script

README = os.path.join(ROOT, "README.md")
DOCS = [README, *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
MAX_README_LINES = 250

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
PATH = re.compile(r"(?<![\w./~-])((?:configs|scripts)/[\w./*-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCRIPT = re.compile(r"^(?:.*/)?scripts/(\w+)\.py$")
HFKD_COMMANDS = ("card", "push")
LAUNCHERS = {"python", "python3", "accelerate", "torchrun"}  # their own flags (before the script) are not checked
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def split_fences(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced code blocks of a markdown text as (info string, body), and the text outside them."""
    blocks, prose, body = [], [], None
    fence = info = ""
    for line in text.splitlines():
        match = FENCE.match(line)
        if body is None:
            if match:
                fence, info, body = match.group(2), match.group(3).strip(), []
            else:
                prose.append(line)
        elif match and match.group(2).startswith(fence) and not match.group(3).strip():
            blocks.append((info, "\n".join(body)))
            body = None
        else:
            body.append(line)
    return blocks, "\n".join(prose)


def strip_inline_code(text: str) -> str:
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text)


def commands(block: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, split at `&&`, `||`, `;`, `|`."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # unbalanced quotes: not a shell line
            continue
        command = []
        for token in tokens:
            if token and set(token) <= set("&|;()<>"):
                found.append(command)
                command = []
            else:
                command.append(token)
        found.append(command)
    return [c for c in found if c]


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def hfkd_subcommand_options() -> dict[str, set[str]]:
    from hfkd.cli import make_parser

    parser = make_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: option_strings(parser) | option_strings(sub) for name, sub in subparsers.choices.items()}


def flags(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--") and len(arg) > 2]


def invocation(tokens: list[str]) -> tuple[str, str, list[str]] | None:
    """("script", "distill", flags) or ("hfkd", "push", flags) for one command, None for any other command."""
    words = [t for t in tokens if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", t)]  # drop leading `VAR=value`
    if not words:
        return None
    program = os.path.basename(words[0])
    if program == "hfkd":
        return ("hfkd", words[1], flags(words[2:])) if len(words) > 1 else None
    if program not in LAUNCHERS and not SCRIPT.match(words[0]):
        return None
    for i, token in enumerate(words):  # `accelerate launch [its flags] scripts/x.py [the script's flags]`
        match = SCRIPT.match(token)
        if match:
            return "script", match.group(1), flags(words[i + 1 :])
    return None


def test_readme_is_a_front_page():
    lines = read(README).splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; the front page keeps at most {MAX_README_LINES} (move the rest to docs/)."
    )


def test_docs_exist():
    names = {rel(p) for p in DOCS}
    assert "README.md" in names and len(names) > 1, f"expected README.md and pages in docs/, found {sorted(names)}"


def test_named_configs_and_scripts_exist():
    missing = []
    for doc in DOCS:
        for number, line in enumerate(read(doc).splitlines(), 1):
            for match in PATH.finditer(line):
                path = match.group(1).rstrip(".,:;)")
                full = os.path.join(ROOT, path)
                if not (glob.glob(full) if "*" in path else os.path.exists(full)):
                    missing.append(f"{rel(doc)}:{number}: {path}")
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def shell_commands(doc: str) -> list[list[str]]:
    """The commands in the shell code blocks (```bash, ```sh or a bare ```) of one markdown file."""
    blocks, _ = split_fences(read(doc))
    return [tokens for info, body in blocks if info in SHELL_BLOCKS for tokens in commands(body)]


def test_flags_in_code_blocks_are_accepted():
    options: dict[tuple[str, str], set[str] | str] = {}
    bad = []
    for doc in DOCS:
        for tokens in shell_commands(doc):
            found = invocation(tokens)
            if found is None:
                continue
            kind, name, used = found
            if (kind, name) not in options:
                options[kind, name] = command_options(kind, name)
            accepted = options[kind, name]
            if isinstance(accepted, str):  # the command itself does not exist
                bad.append(f"{rel(doc)}: `{shlex.join(tokens)}`: {accepted}")
                continue
            unknown = [flag for flag in used if flag not in accepted]
            if unknown:
                bad.append(f"{rel(doc)}: `{shlex.join(tokens)}`: {', '.join(unknown)} not accepted")
    assert not bad, "flags in the docs' code blocks that their command does not accept:\n" + "\n".join(bad)


def command_options(kind: str, name: str) -> set[str] | str:
    if kind == "hfkd":
        options = hfkd_subcommand_options()
        return options.get(name, f"`hfkd {name}` is not a subcommand (one of {sorted(options)})")
    if not os.path.isfile(os.path.join(ROOT, "scripts", f"{name}.py")):
        return f"scripts/{name}.py does not exist"
    parser = load_script(name).make_parser()
    options = option_strings(parser)
    if hasattr(parser, "parse_args_and_config"):  # HfkdParser: --config file.yaml
        options.add("--config")
    return options


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of the headings outside code blocks (lower-cased, punctuation dropped, spaces as hyphens)."""
    _, prose = split_fences(text)
    anchors, seen = set(), {}
    for line in prose.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    for anchor in re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", prose):
        anchors.add(anchor)
    return anchors


def test_relative_links_resolve():
    broken = []
    for doc in DOCS:
        _, prose = split_fences(read(doc))
        for target in LINK.findall(strip_inline_code(prose)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            path, _, anchor = target.partition("#")
            file = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            if not os.path.exists(file):
                broken.append(f"{rel(doc)}: ({target}): {rel(file)} does not exist")
            elif anchor and file.endswith(".md") and anchor not in heading_anchors(read(file)):
                broken.append(f"{rel(doc)}: ({target}): no heading #{anchor} in {rel(file)}")
    assert not broken, "relative links in the docs that do not resolve:\n" + "\n".join(broken)
