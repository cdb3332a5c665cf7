"""mkdocs hooks: pages generated from the code at build time, so they cannot drift.

- ``<!-- generated: cli -->`` becomes the command line's reference, read from
  `freepik_bg._cli.build_parser` (every command, every option, its default and help).
- ``<!-- generated: error-tree -->`` becomes the tree of the SDK's error classes,
  read from the classes themselves.

tests/test_docs.py imports this file to check both against the code and the pages.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import freepik_bg
from freepik_bg._cli import build_parser

CLI_MARKER = "<!-- generated: cli -->"
ERROR_TREE_MARKER = "<!-- generated: error-tree -->"
#: Help and usage are wrapped at this width, whatever the terminal building the docs.
WIDTH = 76


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _option_label(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    value = ""
    if action.nargs != 0:
        choices = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else ""
        value = " " + (choices or action.metavar or action.dest.upper())
    return "`" + ", ".join(action.option_strings) + value + "`"


def documented_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user sees in ``--help`` (not help, not hidden ones)."""
    return [
        action
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    ]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands, by name, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def slug(command: str) -> str:
    """The anchor of a command's section (`freepik-bg remove` -> `freepik-bg-remove`)."""
    return "freepik-bg-" + command


def summaries_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each command's one-line help."""
    return {
        choice.dest: choice.help or ""
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    }


def _command_markdown(
    name: str, parser: argparse.ArgumentParser, summary: str, summaries: dict[str, str]
) -> str:
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)
    lines = [f"## `{name}` {{#{name.replace(' ', '-')}}}", ""]
    description = parser.description or summary
    if description:
        lines += [description, ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    commands = subcommands(parser)
    if commands:
        lines += ["| command | what it does |", "|---|---|"]
        lines += [
            f"| [`{name}`](#{slug(name)}) | {_cell(summaries.get(name, ''))} |" for name in commands
        ]
        lines.append("")
    actions = [a for a in documented_actions(parser) if not isinstance(a, argparse._VersionAction)]
    if actions:
        lines += ["| argument | what it does |", "|---|---|"]
        for action in actions:
            help_text = (action.help or "").replace("%(default)s", str(action.default))
            if action.required or not action.option_strings:
                help_text += " (required)"
            lines.append(f"| {_option_label(action)} | {_cell(help_text)} |")
        lines.append("")
    return "\n".join(lines)


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown reference of ``freepik-bg``: one section per command."""
    parser = parser or build_parser()
    summaries = summaries_of(parser)
    sections = [_command_markdown("freepik-bg", parser, "", summaries)]
    for name, command in subcommands(parser).items():
        summary = summaries.get(name, "")
        sections.append(_command_markdown(f"freepik-bg {name}", command, summary, {}))
    return "\n".join(sections)


def _public_errors() -> list[type[BaseException]]:
    # In the order _errors.py declares them (a module's namespace keeps it).
    public = {getattr(freepik_bg, name) for name in freepik_bg.__all__}
    return [
        obj
        for obj in vars(freepik_bg._errors).values()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj in public
    ]


def error_tree() -> str:
    """The public error classes as a tree under `FreepikError`, in a text block."""
    errors = _public_errors()

    def children(parent: type[BaseException]) -> list[type[BaseException]]:
        return [e for e in errors if e.__bases__[0] is parent]

    lines = ["FreepikError"]

    def walk(parent: type[BaseException], prefix: str) -> None:
        kids = children(parent)
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            extra = [b.__name__ for b in kid.__bases__[1:]]
            also = f"  (also a {', '.join(extra)})" if extra else ""
            lines.append(f"{prefix}{'└── ' if last else '├── '}{kid.__name__}{also}")
            walk(kid, prefix + ("    " if last else "│   "))

    walk(freepik_bg.FreepikError, "")
    return "```text\n" + "\n".join(lines) + "\n```"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fill in the generated parts of a page."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if ERROR_TREE_MARKER in markdown:
        markdown = markdown.replace(ERROR_TREE_MARKER, error_tree())
    return markdown
