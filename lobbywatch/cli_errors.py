"""The last net of the command-line tools: an error nobody foresaw becomes one line a person can act on, in their
language, and the traceback only when asked for (LOBBYWATCH_DEBUG=1)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from lobbywatch.i18n import normalize_locale, t


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, lang: str | None) -> int:
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("LOBBYWATCH_DEBUG"):
            raise
        locale = normalize_locale(lang or os.environ.get("LOBBYWATCH_LANG") or os.environ.get("LANG"))
        print(t(locale, "cli.unexpected", kind=type(exc).__name__, why=one_line(exc)), file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
