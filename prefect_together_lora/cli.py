"""``together-lora``: the command line over the same plain functions the Prefect tasks use."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"emulator": _emulator}
    if not args or args[0] in ("-h", "--help") or args[0] not in commands:
        print(
            "usage: together-lora <command> [options]\n\n"
            "commands:\n"
            "  emulator   serve a local Together API emulator (for offline tests)\n",
            file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout,
        )
        return 0 if args and args[0] in ("-h", "--help") else 2
    return commands[args[0]](args[1:])


def _emulator(argv: list[str]) -> int:
    from prefect_together_lora.testing.emulator.server import main as serve

    return serve(argv)


if __name__ == "__main__":
    raise SystemExit(main())
