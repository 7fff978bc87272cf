"""The docs cannot drift from the CLI: every `nasforge ...` line in README.md and docs/*.md names commands and flags
that exist, and `nasforge --help` lists the commands in pipeline order.

Command lines are read from shell code blocks (```bash, ```console after `$ `, plain ```) and from inline code
spans; each is walked down the Typer app's click command tree (`typer.main.get_command`), so a subcommand
(`lut import`) must exist under its group and every `--flag` must be one of its options. Words that are not
flags (RUN, FILE, `...`, values) are placeholders and pass; `[--flag]` is an optional flag and is checked.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x carries its own copy of click
    from typer import _click as click
except ImportError:  # older typer runs on click itself
    import click  # type: ignore[no-redef]
from typer.testing import CliRunner

from nasforge.cli import COMMAND_ORDER, app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
NASFORGE = re.compile(r"(?:^|(?<=[\s(]))nasforge(?=\s)")
BUNDLE = re.compile(r"(?:^|(?<=\s))python3? \S+\.zip(?=\s|$)")  # the on-device runner: `python board.zip ...`
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


@dataclass(frozen=True)
class DocLine:
    where: str  # README.md:123
    text: str  # the command from `nasforge` (or `python x.zip`) on, comments and continuations resolved


def _logical_lines(block: list[tuple[int, str]], console: bool) -> list[tuple[int, str]]:
    """A code block's commands: `\\` continuations joined, `# comments` dropped; in a console block only `$ ...`."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for lineno, raw in block:
        line = raw.strip()
        if pending is None:
            if console:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            pending = (lineno, "")
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()  # a comment starts a word; `pareto.json#0` is no comment
        if line.endswith("\\"):
            pending = (pending[0], pending[1] + line[:-1] + " ")
            continue
        out.append((pending[0], " ".join((pending[1] + line).split())))
        pending = None
    if pending is not None:
        out.append(pending)
    return out


def _commands(text: str, where: str) -> list[DocLine]:
    found = []
    for pattern in (NASFORGE, BUNDLE):
        for m in pattern.finditer(text):
            found.append(DocLine(where, text[m.start():].strip()))
    return found


def doc_lines(path: Path, root: Path = ROOT) -> list[DocLine]:
    """Every `nasforge ...` and `python X.zip ...` command in one Markdown file."""
    name = path.relative_to(root).as_posix()
    lines = path.read_text().splitlines()
    found: list[DocLine] = []
    prose: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"\s*```(\w*)", lines[i])
        if not fence:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines))
        if fence.group(1) in SHELL_FENCES:
            block = [(j + 1, lines[j]) for j in range(i + 1, end)]
            for lineno, command in _logical_lines(block, console=fence.group(1) == "console"):
                found += _commands(command, f"{name}:{lineno}")
        i = end + 1
    text = "\n".join(line for _, line in prose)
    starts = [0]
    for _, line in prose:
        starts.append(starts[-1] + len(line) + 1)
    for m in re.finditer(r"`([^`]+)`", text):  # inline code, which may run across a line break
        lineno = prose[next(k for k in range(len(prose)) if starts[k + 1] > m.start())][0]
        found += _commands(" ".join(m.group(1).split()), f"{name}:{lineno}")
    return found


def _words(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:  # an unbalanced quote in prose: plain words still show the command and its flags
        words = command.split()
    cut = next((k for k, w in enumerate(words) if w in SHELL_OPERATORS or (k and w == "nasforge")), len(words))
    return [w.strip("[]") for w in words[:cut]]  # `[--dynamic-batch]`, `[--quantize int8]`: optional flags


def _option_names(cmd: click.Command) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names.update(p.opts)
        names.update(p.secondary_opts)
    return names


def cli_problems(words: list[str], root: click.Command) -> list[str]:
    """What in `nasforge WORDS...` does not exist: an unknown command or subcommand, or an unknown flag."""
    cmd, path, problems = root, ["nasforge"], []
    for word in words:
        if word.startswith("-") and len(word) > 1 and not re.match(r"-\d", word):
            flag = word.split("=", 1)[0]
            if flag not in _option_names(cmd):
                problems.append(f"`{' '.join(path)}` has no option {flag}")
        elif isinstance(cmd, TyperGroup):
            if word == "..." or word.isupper():  # `nasforge COMMAND --help`, `nasforge lut ...`: nothing to check
                break
            sub = cmd.get_command(click.Context(cmd), word)
            if sub is None:
                problems.append(f"`{' '.join(path)}` has no command {word!r}")
                break
            cmd, path = sub, [*path, word]
    return problems


def _runner_flags() -> set[str]:
    """The flags of the bundle's runner (`python bundle.zip`): its argparse definition in ort_timing/runner.py."""
    source = (ROOT / "nasforge" / "latency" / "ort_timing" / "runner.py").read_text()
    return {"--help", "-h", *re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source)}


def check_line(line: DocLine, root: click.Command) -> list[str]:
    words = _words(line.text)
    if words[0] != "nasforge":  # python board.zip --out lut.json
        return [f"the bundle runner has no option {w}" for w in words[2:]
                if w.startswith("--") and w.split("=", 1)[0] not in _runner_flags()]
    return cli_problems(words[1:], root)


def test_every_documented_command_and_flag_exists():
    root = typer.main.get_command(app)
    lines = [line for path in DOCS for line in doc_lines(path)]
    problems = [f"{line.where}: {p}  [{line.text}]" for line in lines for p in check_line(line, root)]
    assert not problems, "the docs name commands or flags the CLI lacks:\n" + "\n".join(problems)
    # the reader finds what it should: fenced, console and inline forms, subcommands and the bundle runner
    texts = [line.text for line in lines]
    assert len(lines) >= 40, texts
    for expected in ("nasforge lut import lut.json", "nasforge finetune --run RUN", "nasforge latency ... --json",
                     "nasforge profile --target cpu", "python board.zip --out lut.json",
                     "nasforge train-supernet --schedule progressive --space mobilenetv3-ofa-cifar --dataset"):
        assert any(t.startswith(expected) for t in texts), expected


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("nasforge search --run RUN --bogus-flag 3", "has no option --bogus-flag"),
        ("nasforge lut export lut.json", "`nasforge lut` has no command 'export'"),
        ("nasforge evaluate-all --run RUN", "has no command 'evaluate-all'"),
        ("nasforge export --run RUN --out m.onnx [--dynamic-batches]", "has no option --dynamic-batches"),
        ("nasforge space sample --space tiny -x 3", "has no option -x"),
    ],
)
def test_a_wrong_command_or_flag_is_reported(command, problem):
    root = typer.main.get_command(app)
    problems = check_line(DocLine("x", command), root)
    assert any(problem in p for p in problems), problems


def test_placeholders_and_shell_syntax_pass():
    root = typer.main.get_command(app)
    for command in (
        "nasforge latency ... --json",
        "nasforge export --run RUN --arch RUN/search-cpu/pareto.json#0 --out model.onnx [--dynamic-batch] "
        "[--quantize int8]",
        "nasforge search --run RUN --constraint \"latency<=15ms\" --seed=3 | tee log",
        "nasforge space sample --space S -n 3 --no-stratified",
        "nasforge --help",
        "nasforge lut import FILE --space SPACE",
        "nasforge lut ...",
        "nasforge COMMAND --help",
    ):
        assert check_line(DocLine("x", command), root) == [], command
    assert check_line(DocLine("x", "python b.zip --out lut.json --threads 2"), root) == []
    assert check_line(DocLine("x", "python b.zip --outfile lut.json"), root) != []


def test_reader_resolves_fences_prompts_continuations_and_inline_spans(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text(
        "Run `nasforge spaces --json` or `nasforge\nlatency --target cpu`.\n\n"
        "```bash\nnasforge train-supernet --epochs 3 \\\n    --out runs/x   # a comment --not-a-flag\n```\n\n"
        "```console\n$ nasforge targets\nnasforge quickstart: done --not-a-command-line\n```\n\n"
        "```python\nfrom nasforge import load_space  # nasforge code, not a command\n```\n"
    )
    found = [(line.where, line.text) for line in doc_lines(doc, tmp_path)]
    assert found == [
        ("README.md:5", "nasforge train-supernet --epochs 3 --out runs/x"),
        ("README.md:10", "nasforge targets"),
        ("README.md:1", "nasforge spaces --json"),
        ("README.md:1", "nasforge latency --target cpu"),
    ]


def test_help_lists_the_commands_in_pipeline_order():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^\W*([a-z][a-z-]+)\s{2,}\S", result.output.split("Commands")[1], flags=re.M)
    assert listed == list(COMMAND_ORDER), listed
    registered = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert set(registered) == set(COMMAND_ORDER), "give every command its place in nasforge.cli.COMMAND_ORDER"
