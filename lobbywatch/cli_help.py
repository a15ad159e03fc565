"""The command lines' help in the reader's language: a parser built with English help is walked once and each
text found in the catalogs under its place (`cli.<prog>.<command>:<option>`, `cli.<prog>><command>`) replaced,
with argparse's own words (usage, options, errors). English stays in the code, so a text with no entry yet is
still shown, in English."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, NoReturn

from lobbywatch.i18n import catalog, normalize_locale, t

# argparse's own error messages, as Python 3.11-3.13 word them, with the catalog key that says each
ERRORS = (
    (re.compile(r"the following arguments are required: (?P<names>.+)"), "cli.error.required"),
    (re.compile(r"unrecognized arguments: (?P<names>.+)"), "cli.error.unrecognized"),
    (
        re.compile(r"argument (?P<names>\S+): invalid choice: (?P<value>.+?) \(choose from (?P<choices>.+)\)"),
        "cli.error.choice",
    ),
    (re.compile(r"argument (?P<names>\S+): expected one argument"), "cli.error.one_value"),
    (re.compile(r"argument (?P<names>\S+): invalid (?P<kind>\w+) value: (?P<value>.+)"), "cli.error.invalid_value"),
)


class LocalizedParser(argparse.ArgumentParser):
    """Its usage line and errors in the language `localize` gave it (English until then)."""

    lang = "en"

    def error(self, message: str) -> NoReturn:
        for pattern, key in ERRORS:
            if found := pattern.fullmatch(message):
                message = t(self.lang, key, **found.groupdict())
                break
        self.print_usage()
        self.exit(2, t(self.lang, "cli.error", prog=self.prog, message=message) + "\n")

    def format_usage(self) -> str:
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups, t(self.lang, "cli.usage"))
        return formatter.format_help()

    def format_help(self) -> str:
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups, t(self.lang, "cli.usage"))
        formatter.add_text(self.description)
        for group in self._action_groups:
            formatter.start_section(group.title)
            formatter.add_text(group.description)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()


def chosen_lang(args: argparse.Namespace) -> str:
    """The language a command speaks: --lang, then LOBBYWATCH_LANG, then LANG."""
    return normalize_locale(args.lang or os.environ.get("LOBBYWATCH_LANG") or os.environ.get("LANG"))


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse with the help and errors in the language asked for (--lang, then LOBBYWATCH_LANG, then LANG)."""
    args = sys.argv[1:] if argv is None else argv
    asked = next((a.split("=", 1)[1] for a in args if a.startswith("--lang=")), None)
    if asked is None and "--lang" in args and args.index("--lang") + 1 < len(args):
        asked = args[args.index("--lang") + 1]
    localize(parser, normalize_locale(asked or os.environ.get("LOBBYWATCH_LANG") or os.environ.get("LANG")))
    return parser.parse_args(argv)


def localize(parser: argparse.ArgumentParser, lang: str, path: str | None = None) -> None:
    """Every help text of the parser and its subcommands, in `lang` where the catalog has it."""
    words = catalog(lang)
    path = path or parser.prog
    if isinstance(parser, LocalizedParser):
        parser.lang = lang
    parser._positionals.title = t(lang, "cli.positionals")
    parser._optionals.title = t(lang, "cli.options")
    for action in parser._actions:
        key = f"cli.{path}:{action.dest}"
        if action.dest == "help":
            action.help = t(lang, "cli.help")
        elif action.dest == "version":
            action.help = t(lang, "cli.version")
        elif key in words:
            action.help = words[key]
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                listed = f"cli.{path}>{choice.dest}"
                if listed in words:
                    choice.help = words[listed]
            for name, sub in action.choices.items():
                described = words.get(f"cli.{path}>{name}")
                if described:
                    sub.description = described
                localize(sub, lang, f"{path}.{name}")


def walk(parser: argparse.ArgumentParser, path: str | None = None) -> dict[str, Any]:
    """Every help text's key and English text (the catalog test keeps both languages complete)."""
    path = path or parser.prog
    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                found[f"cli.{path}>{choice.dest}"] = choice.help
            for name, sub in action.choices.items():
                found |= walk(sub, f"{path}.{name}")
        elif action.help and action.dest not in ("help", "version"):
            found[f"cli.{path}:{action.dest}"] = action.help
    return found
