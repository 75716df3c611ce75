"""The documentation holds together: README.md and docs/**/*.md link only to files and headings that
exist (GitHub's anchor rules), every command, console script, topic and service of the package is
documented, topic tables match ``magma_ros.interface``, every image under docs/ is shown somewhere,
and the README stays short. The checkers are tried on a temporary tree too, so each can fail.
Examples that can run here are run as the page writes them (issue 26)."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
from waiting import wait_until

from magma_ros import interface
from magma_ros.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path) -> list[Path]:
    """README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def prose(markdown: str) -> str:
    """The text outside fenced code blocks, with code spans blanked (links inside code are not links)."""
    return CODE_SPAN.sub(lambda m: "`" + "x" * len(m.group(2)) + "`", FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: rendered text, lower case, punctuation dropped, spaces to hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)   # links and images keep their text
    text = re.sub(r"<[^>]+>|\*+", "", text)                  # inline HTML, emphasis markers
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a page, duplicates numbered -1, -2, ... as GitHub does."""
    seen: dict[str, int] = {}
    result = set()
    for line in FENCE.sub("", markdown).splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(root: Path) -> list[str]:
    """Relative links and #anchors of README.md and docs/ that resolve to nothing."""
    problems = []
    for page in markdown_files(root):
        text = page.read_text(encoding="utf-8")
        for target in LINK.findall(prose(text)):
            if EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(root)}: ({target})"
            try:
                rel = dest.relative_to(root.resolve()).as_posix()
            except ValueError:
                problems.append(f"{where}: outside the repository")
                continue
            if not dest.exists():
                problems.append(f"{where}: no file {rel}")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading #{anchor} in {rel}")
    return problems


def unlinked_images(root: Path) -> list[str]:
    """Images under docs/ that no page shows."""
    targets = set()
    for page in markdown_files(root):
        for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
            if not EXTERNAL.match(target):
                targets.add((page.parent / target.partition("#")[0]).resolve())
    return [str(image.relative_to(root)) for ext in ("png", "jpg", "svg", "gif")
            for image in sorted((root / "docs").rglob(f"*.{ext}")) if image.resolve() not in targets]


def handwritten_text(root: Path) -> str:
    """README.md and the pages of docs/ outside the generated docs/reference/."""
    reference = root / "docs" / "reference"
    return "\n".join(page.read_text(encoding="utf-8") for page in markdown_files(root)
                     if reference not in page.parents)


def undocumented(text: str, names: list[str], prefix: str = "") -> list[str]:
    """Names that ``text`` never spells as a whole word (after ``prefix``)."""
    return [name for name in names
            if not re.search(rf"(?<![\w-]){re.escape(prefix + name)}(?![\w-])", text)]


def console_scripts(setup_py: Path) -> list[str]:
    """The console_scripts names declared in setup.py."""
    block = re.search(r"[\"']console_scripts[\"']\s*:\s*\[(.*?)\]", setup_py.read_text(), re.DOTALL)
    assert block, f"{setup_py}: no console_scripts"
    return re.findall(r"[\"']\s*([\w.-]+)\s*=\s*[\w.]+:\w+\s*[\"']", block.group(1))


def subcommands() -> list[str]:
    """The subcommands of ``magma-ros``, as its parser knows them."""
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.choices and a.dest == "command"]
    return sorted(action.choices)


def interface_entries() -> list:
    """Every Topic and Service the interface module declares."""
    return [value for value in vars(interface).values() if isinstance(value, (interface.Topic, interface.Service))]


def short_type(type_name: str) -> str:
    """``pkg/msg/Name`` -> ``pkg/Name``, as the docs may spell it."""
    package, _, name = type_name.split("/")
    return f"{package}/{name}"


def qos_words(qos: interface.Qos) -> list[str]:
    """What a QoS column must say about ``qos``."""
    return ["best effort" if not qos.reliable else "reliable",
            "transient local" if qos.latched else "volatile", f"depth {qos.depth}"]


def topic_table_mismatches(markdown: str, topics: list) -> list[str]:
    """Rows of tables with a 'topic' column whose topic is the interface's but whose message type
    (or, with a 'QoS' column, reliability, durability and depth) differ from it."""
    by_name = {}
    for topic in topics:
        by_name[topic.name] = topic
        by_name[topic.absolute] = topic
    problems = []
    header = None
    for line in FENCE.sub("", markdown).splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = [cell.lower() for cell in cells]
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        topic_cols = [i for i, name in enumerate(header) if "topic" in name and i < len(cells)]
        named = [by_name[token] for i in topic_cols for token in CODE_SPAN.findall(cells[i])
                 for token in [token[1]] if token in by_name]
        for topic in named:
            if topic.type not in line and short_type(topic.type) not in line:
                problems.append(f"{topic.name}: type {short_type(topic.type)} not in row {line!r}")
            if "qos" in header:
                cell = cells[header.index("qos")].lower()
                wrong = [word for word in qos_words(topic.qos) if word not in cell]
                if wrong:
                    problems.append(f"{topic.name}: QoS cell {cell!r} lacks {wrong}")
    return problems


def shell_commands(markdown: str) -> list[list[tuple[list[str], bool]]]:
    """The commands of each ```bash block: (argv, runs in the background with a trailing ``&``),
    line continuations joined and comments dropped."""
    blocks = re.findall(r"^```(?:bash|sh)\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    result = []
    for block in blocks:
        commands = []
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append((argv[:-1], True) if argv[-1] == "&" else (argv, False))
        result.append(commands)
    return result


def example(page: str, *words: str) -> list[tuple[list[str], bool]]:
    """The commands of the one bash block of ``page`` (under docs/) that has a command with every
    one of ``words`` among its arguments."""
    found = [commands for commands in shell_commands((REPO / "docs" / page).read_text(encoding="utf-8"))
             if any(set(words) <= set(argv) for argv, _ in commands)]
    assert len(found) == 1, f"docs/{page}: {len(found)} bash blocks with {words}"
    return found[0]


def output_block_after(page: str, command: str) -> list[str]:
    """The lines of the plain ``` block that follows the bash block containing ``command``."""
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    end_of_commands = text.index("\n```\n", text.index(command)) + len("\n```\n")
    match = re.compile(r"\s*```\n(.*?)^```", re.MULTILINE | re.DOTALL).match(text, end_of_commands)
    assert match, f"docs/{page}: no output block after {command!r}"
    return match.group(1).splitlines()


@contextmanager
def background(argv: list[str], console_script: Callable[[str], str], cwd: Path) -> Iterator[Callable[[], str]]:
    """One of our executables as a page starts it with ``&``; yields its output so far. On leaving
    it is interrupted (Ctrl-C) and must exit with status 0."""
    log = cwd / f"{Path(argv[0]).name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([console_script(argv[0]), *argv[1:]], stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, env=os.environ.copy())
    try:
        yield lambda: log.read_text() + (f"\n(exited with {proc.returncode})" if proc.poll() is not None else "")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log.read_text()


def wait_for_publisher(topic: str, output: Callable[[], str], timeout: float = 90.0) -> None:
    """Wait until ``topic`` has a publisher in the ROS graph; fail at once if the process whose
    ``output`` is given has exited."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("docs_example_probe", context=context)
    try:
        def published() -> bool:
            assert "(exited with" not in output(), output()
            return node.count_publishers(topic) > 0
        wait_until(published, timeout, what=f"a publisher on {topic}")
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


# --- the repository ---------------------------------------------------------------------------

def test_every_relative_link_and_anchor_resolves():
    assert broken_links(REPO) == []


def test_every_image_under_docs_is_shown():
    assert unlinked_images(REPO) == []


def test_every_console_script_and_subcommand_is_documented():
    text = handwritten_text(REPO)
    scripts = console_scripts(REPO / "setup.py")
    assert "magma-ros" in scripts and "magma_node" in scripts
    assert undocumented(text, scripts) == []
    commands = subcommands()
    assert {"decode", "eval", "serve"} <= set(commands)
    assert undocumented(text, commands, prefix="magma-ros ") == []


def test_every_topic_and_service_of_the_interface_is_documented():
    entries = interface_entries()
    assert len(entries) >= len(interface.TOPICS) + len(interface.SERVICES)
    assert undocumented(handwritten_text(REPO), [entry.name for entry in entries]) == []


def test_topic_tables_match_the_interface():
    topics = [entry for entry in interface_entries() if isinstance(entry, interface.Topic)]
    problems = [f"{page.relative_to(REPO)}: {problem}" for page in markdown_files(REPO)
                for problem in topic_table_mismatches(page.read_text(encoding="utf-8"), topics)]
    assert problems == []


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


# --- examples that can run here ----------------------------------------------------------------

@pytest.mark.ros
def test_install_page_node_command_starts_the_node(console_script, tmp_path):
    commands = [argv for argv, _ in example("install.md", "magma_node", "--ros-args") if argv[0] == "magma_node"]
    assert len(commands) == 1, commands
    with background(commands[0], console_script, tmp_path) as output:
        wait_for_publisher(interface.TWIST.absolute, output)


@pytest.mark.ros
def test_record_in_a_namespace_example_records_the_namespaced_node(console_script, tmp_path):
    from rosbags.highlevel import AnyReader

    commands = example("eval.md", "record", "-r")
    (node_argv, in_background), (record_argv, record_in_background) = commands
    assert node_argv[0] == "magma_node" and in_background and record_argv[:2] == ["magma-ros", "record"]
    assert not record_in_background
    namespace = next(arg for arg in record_argv if arg.startswith("__ns:=")).removeprefix("__ns:=")
    assert f"__ns:={namespace}" in node_argv
    with background(node_argv, console_script, tmp_path):  # the recorder waits for the node's publishers
        result = subprocess.run([console_script("magma-ros"), *record_argv[1:]], capture_output=True, text=True,
                                timeout=120, cwd=tmp_path, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == output_block_after("eval.md", shlex.join(record_argv))[0]
    counts: dict[str, int] = {}
    with AnyReader([tmp_path / record_argv[record_argv.index("--out") + 1]]) as reader:
        for connection in reader.connections:
            counts[connection.topic] = connection.msgcount
    moved = {f"{namespace}/{topic.name}" for topic in (interface.TWIST, interface.GRIPPER, interface.NODE_ACTION)}
    assert set(counts) == moved | {interface.DIAGNOSTICS.absolute}, result.stderr
    assert counts[f"{namespace}/{interface.TWIST.name}"] > 0, result.stderr  # enabled, no camera: zero twists


# --- the checkers fail when they should -------------------------------------------------------

def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_slugs_follow_github():
    assert slug("Model backends: `magma` (onboard GPU) and `openai`") == "model-backends-magma-onboard-gpu-and-openai"
    assert slug("Latency (bench/node_latency.py)") == "latency-benchnode_latencypy"
    assert slug("1. Record") == "1-record"
    assert slug("**Bold** [link](x.md) and a–dash") == "bold-link-and-adash"
    assert anchors("# A\n## A\n```\n# A\n```\n### A\n") == {"a", "a-1", "a-2"}


def test_link_checker_finds_missing_files_and_anchors(tmp_path):
    root = write(tmp_path, {
        "README.md": "[ok](docs/a.md#second-part) [img](docs/p.png) [web](https://x.invalid/#nope)\n"
                     "[gone](docs/gone.md) [bad anchor](docs/a.md#first) [self](#top) [self bad](#nowhere)\n"
                     "```\n[in code](docs/nothing.md)\n```\n`[span](docs/nothing.md)`\n# Top\n",
        "docs/a.md": "# First part\n## Second part\n[up](../README.md#top)\n"
                     "[out](../../elsewhere.md)\n",
        "docs/p.png": "",
        "docs/unshown.png": "",
    })
    problems = broken_links(root)
    assert len(problems) == 4, problems
    assert any("no file docs/gone.md" in p for p in problems)
    assert any("no heading #first in docs/a.md" in p for p in problems)
    assert any("no heading #nowhere in README.md" in p for p in problems)
    assert any("outside the repository" in p for p in problems)
    assert unlinked_images(root) == ["docs/unshown.png"]


def test_coverage_checkers_find_undocumented_names(tmp_path):
    text = "Run `magma-ros sim-eval` or magma_node; topic camera/image_raw.\n"
    assert undocumented(text, ["eval", "sim-eval"], prefix="magma-ros ") == ["eval"]
    assert undocumented(text, ["magma_node", "magma_sim", "magma"]) == ["magma_sim", "magma"]
    assert undocumented(text, ["camera/image_raw", "image_raw/compressed"]) == ["image_raw/compressed"]
    setup = write(tmp_path, {"setup.py": 'entry_points={"console_scripts": ["a-b = m.x:main", "c = m:f"]}'})
    assert console_scripts(setup / "setup.py") == ["a-b", "c"]


def test_topic_table_checker_finds_wrong_types_and_qos():
    table = ("| topic | type | QoS |\n|---|---|---|\n"
             "| `camera/image_raw` | sensor_msgs/Image | best effort, volatile, depth 1 |\n"
             "| `/magma/estop` | std_msgs/String | reliable, volatile, depth 10 |\n"
             "| `magma/instruction` | std_msgs/msg/String | reliable, volatile, depth 1 |\n"
             "| `unknown/topic` | whatever | none |\n")
    problems = topic_table_mismatches(table, [interface.IMAGE, interface.ESTOP, interface.INSTRUCTION])
    assert len(problems) == 2, problems
    assert "magma/estop: type std_msgs/Bool" in problems[0]
    assert "magma/instruction: QoS" in problems[1] and "transient local" in problems[1]
    assert topic_table_mismatches(table.replace("| QoS |", "| notes |"), [interface.IMAGE, interface.ESTOP]) == [
        problems[0]]
