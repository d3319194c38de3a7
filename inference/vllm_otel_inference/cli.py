"""``vllm-otel`` command line: one root parser; each package registers its own subcommands.

Subcommand modules expose ``register(subparsers)`` which adds parsers whose ``func(args) -> int`` runs the command.
Errors a user can cause are reported as one line on stderr with a non-zero exit code (2 for bad input).
"""

from __future__ import annotations

import argparse
import sys

from vllm_otel_collector.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-otel", description="OpenTelemetry for LLM serving with vLLM.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from vllm_otel_inference import commands as inference_commands

    inference_commands.register(sub)
    from vllm_otel_collector import commands as collector_commands

    collector_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"vllm-otel {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"vllm-otel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
