"""The ``tlbrace`` command line: one entry point, subcommands that share option names.

Each subcommand lives in its own module ``scenarios.cmd_<name>`` exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Exit status: 0 no violation, 1 violation found, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("scenarios", "mutants", "explore", "replay", "shrink", "run", "stress", "analyze", "scale",
               "report")

EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad input that the user can fix: printed as one line, exit status 2, no traceback."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        from scenarios.options import DefaultsFormatter  # every option's default in --help

        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # argparse exits 2 too; keep its one-line message
        self.print_usage(sys.stderr)
        print(f"tlbrace: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tlbrace", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"scenarios.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"scenarios.cmd_{name}":
                raise
            continue  # not built yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from kernel_model.config import ConfigError
    from scenarios.cli import UsageError as PackageUsageError  # the same class even under `python -m`
    from scenarios.loader import ScenarioError
    try:
        return int(args.func(args))
    except (UsageError, PackageUsageError, ScenarioError, ConfigError) as exc:
        print(f"tlbrace: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("tlbrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tlbrace scenarios --json | head`: the reader left; not an error of ours
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
