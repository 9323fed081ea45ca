"""``python -m softhsm_fixtures build DIR``: build a fixture set and print where it is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from softhsm_fixtures.build import build_fixtures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softhsm_fixtures", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="create the test PKI and SoftHSM2 tokens in DIR")
    build.add_argument("directory", type=Path)
    args = parser.parse_args(argv)

    fixtures = build_fixtures(args.directory)
    print(f"export SOFTHSM2_CONF={fixtures.env.conf}")
    print(f"# module: {fixtures.module}")
    for token in fixtures.tokens:
        print(f"# {token.label}  serial={token.serial}  PIN={token.pin}  certificates={len(token.certs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
