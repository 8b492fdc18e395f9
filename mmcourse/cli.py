"""The `mmcourse` command line (also `python -m mmcourse`).

    mmcourse doctor                       versions, devices, profile, datasets present
    mmcourse run [NOTEBOOK ...] [--profile quick|full]
                                          execute notebooks headless, one line each
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_doctor(args: argparse.Namespace) -> int:
    from mmcourse import doctor

    return doctor.main()


def _cmd_run(args: argparse.Namespace) -> int:
    from mmcourse.config import profile_name
    from mmcourse.runner import find_notebooks, run_notebook

    try:
        profile = profile_name(args.profile)
        notebooks = find_notebooks(args.notebooks)
    except (FileNotFoundError, ValueError) as err:
        print(f"mmcourse run: {err}", file=sys.stderr)
        return 2
    print(f"running {len(notebooks)} notebook{'s' if len(notebooks) != 1 else ''} in the {profile} profile")
    failed = 0
    total = 0.0
    for path in notebooks:
        result = run_notebook(path, profile=profile, timeout=args.timeout, inplace=args.inplace, output_dir=args.output)
        print(result.line(), flush=True)
        failed += not result.ok
        total += result.seconds
    print(f"{len(notebooks) - failed} passed, {failed} failed in {total:.1f} s")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcourse", description="Multimodal learning course: tools outside the notebooks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    doctor = sub.add_parser("doctor", help="versions, devices, the profile and which datasets are present")
    doctor.set_defaults(func=_cmd_doctor)

    run = sub.add_parser("run", help="execute notebooks headless, one line of result and time each")
    run.add_argument("notebooks", nargs="*", help="notebook files or folders (default: every notebook of the course)")
    run.add_argument("--profile", choices=["quick", "full"], default=None, help="quick or full (default: $MMCOURSE_PROFILE, else full)")
    run.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default 3600)")
    run.add_argument("--inplace", action="store_true", help="write the outputs back into each notebook that passes")
    run.add_argument("--output", type=Path, default=None, help="write executed copies into this folder")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
