"""The documentation against the code: every command in a ```bash block of README.md and docs/*.md that
runs one of our tools is parsed by that tool's own argument parser (nothing runs), and every relative link
points at a file that exists.

A command is parsed by calling the tool's ``main(argv)`` with argparse intercepted: the first parser that
finishes stops the call before the tool does anything, so the flags are checked by exactly the parser a user
meets (the stages' dataclass parsers, ``mmadapt demo``'s, ``mmadapt pipeline``'s, a benchmark's own), wherever
it is built. A renamed or removed flag then fails here with the file and line that still use it.
"""

import argparse
import contextlib
import glob
import importlib
import importlib.util
import io
import os
import re
import shlex

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
PYTHONS = {"python", "python3", ".venv/bin/python"}
NO_FLAGS = {"mmadapt.prebuild"}  # modules that take no arguments and have no parser to ask


def rel(path: str) -> str:
    return os.path.relpath(path, REPO)


def bash_commands(path: str):
    """(line number, command text) for each command in the file's ```bash blocks, continuations joined."""
    out, in_bash, pending, start = [], False, "", 0
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                in_bash = not in_bash and stripped == "```bash"
                continue
            if not in_bash or (not pending and (not stripped or stripped.startswith("#"))):
                continue
            if not pending:
                start = number
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            out.append((start, pending + stripped))
            pending = ""
    return out


def tool_call(words: list):
    """(name, main, argv) for a command that runs one of our tools, None for anything else (make, pip)."""
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return None
    if words[0] == "mmadapt":
        return "mmadapt", importlib.import_module("mmadapt.cli").main, words[1:]
    if words[0] == "deepspeed":
        from deepspeed.launcher.runner import parse_args  # deepspeed's own flags, with its own parser

        ds = parse_args(words[1:])
        if ds.module:
            return module_call(ds.user_script, ds.user_args)
        return script_call(ds.user_script, ds.user_args)
    if words[0] in PYTHONS and len(words) > 1:
        if words[1] == "-m":
            return module_call(words[2], words[3:])
        return script_call(words[1], words[2:])
    if words[0].startswith("benchmarks/") and words[0].endswith(".py"):
        return script_call(words[0], words[1:])
    return None


def module_call(module: str, argv: list):
    if module in NO_FLAGS:
        return module, (lambda a: _no_flags(module, a)), argv
    if module in ("mmadapt", "mmadapt.cli"):
        return "mmadapt.cli", importlib.import_module("mmadapt.cli").main, argv
    from mmadapt.stages import entry

    if module == "mmadapt.stages":  # python -m mmadapt.stages NAME [flags]
        return f"{module} {argv[0]}", entry(argv[0]), argv[1:]
    if not module.startswith("mmadapt.launchers."):
        raise AssertionError(f"`python -m {module}`: no parser known for it; add it to tests/test_docs.py")
    importlib.import_module(module)  # the launcher exists; it runs the registry's entry of its name
    return module, entry(module.rsplit(".", 1)[1]), argv


def script_call(script: str, argv: list):
    name = os.path.splitext(os.path.basename(script))[0]
    if script.startswith("launchers/") or script.startswith("mmadapt/launchers/"):
        return module_call(f"mmadapt.launchers.{name}", argv)
    if script.startswith("benchmarks/"):
        path = os.path.join(REPO, script)
        assert os.path.isfile(path), f"{script}: no such file"
        spec = importlib.util.spec_from_file_location(f"_docs_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return script, mod.main, argv
    return None


def _no_flags(module, argv):
    assert not argv, f"{module} takes no arguments, the docs pass {argv}"
    raise Parsed(argparse.Namespace(), [])


class Parsed(BaseException):
    """Raised by the intercepted parser once the tool's flags are parsed: stops the tool before it runs."""

    def __init__(self, namespace, extras):
        super().__init__()
        self.namespace, self.extras = namespace, extras


@contextlib.contextmanager
def parse_only():
    real = argparse.ArgumentParser.parse_known_args

    def stop_after_parse(self, args=None, namespace=None):
        namespace, extras = real(self, args, namespace)
        raise Parsed(namespace, extras)

    argparse.ArgumentParser.parse_known_args = stop_after_parse
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = real


COMMANDS = [(path, number, text) for path in PAGES for number, text in bash_commands(path)]


def test_the_docs_have_commands():
    tools = [text for _, _, text in COMMANDS if tool_call(shlex.split(text, comments=True)) is not None]
    assert len(tools) >= 10, f"only {len(tools)} tool commands found in README.md and docs/: is the parsing broken?"


@pytest.mark.parametrize("path,number,text", COMMANDS, ids=[f"{rel(p)}:{n}" for p, n, _ in COMMANDS])
def test_documented_command_parses(path, number, text):
    where = f"{rel(path)}:{number}: `{text}`"
    try:
        call = tool_call(shlex.split(text, comments=True))
    except SystemExit:  # deepspeed's own parser refused its part
        pytest.fail(f"{where}: the deepspeed launcher's flags do not parse")
    except AssertionError as exc:
        pytest.fail(f"{where}: {exc}")
    if call is None:
        return  # not one of ours (make, pip, bash ...)
    name, main, argv = call
    err = io.StringIO()
    status = parsed = problem = None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), parse_only():
        try:
            status = main(argv)
        except Parsed as done:
            parsed = done
        except SystemExit as exc:
            status = exc.code
        except AssertionError as exc:
            problem = str(exc)
    if parsed is not None:
        assert not parsed.extras, f"{where}: {name} does not know {parsed.extras}"
        return
    if problem is None and status == 0 and ("--help" in argv or "-h" in argv):
        return
    lines = err.getvalue().strip().splitlines()
    problem = problem or (lines[-1] if lines else f"exit status {status} without parsing")
    pytest.fail(f"{where}: {name} refuses it: {problem}")


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")


def relative_links(path: str):
    """(line number, target) for each relative Markdown link outside code."""
    out, fenced = [], False
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                continue
            text = re.sub(r"`[^`]*`", "", line)
            for target in LINK.findall(text) + REFERENCE.findall(text):
                if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|#", target):
                    out.append((number, target))
    return out


def test_relative_links_point_at_files():
    broken = []
    for path in PAGES:
        for number, target in relative_links(path):
            file = target.split("#", 1)[0]
            if not os.path.exists(os.path.join(os.path.dirname(path), file)):
                broken.append(f"{rel(path)}:{number}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)
