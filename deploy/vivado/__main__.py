"""``python -m deploy.vivado scripts | bitstream | deploy --board NAME`` (deploy/deploy.mk).

* ``scripts``: the Vivado Tcl and config.json into ``build/deploy/<board>/`` (no Vivado needed);
* ``bitstream``: the scripts, the Verilog and the Vivado build (one line and exit 2 without
  ``vivado`` on PATH);
* ``deploy --host user@address [--dry-run]``: the board package onto the board, installed and
  self-tested.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from deploy import boards
from deploy.vivado import bitstream, remote, tcl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deploy.vivado", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    names = ", ".join(boards.board_names())
    common.add_argument("--board", action="append", required=True,
                        help=f"a board ({names}) or 'all'; repeatable")  # fmt: skip
    common.add_argument("--out", type=Path, default=tcl.BUILD_ROOT,
                        help="root of the per-board folders (default build/deploy)")  # fmt: skip
    sub.add_parser("scripts", parents=[common], help="write the Vivado Tcl only")
    b = sub.add_parser("bitstream", parents=[common], help="scripts, Verilog, Vivado")
    b.add_argument("--verilog", type=Path, help="use this Verilog instead of elaborating")
    b.add_argument("--vivado", default="vivado", help="the Vivado command (default vivado)")
    d = sub.add_parser("deploy", parents=[common], help="package, copy, install, self-test")
    d.add_argument("--host", default="", help="user@address of the board")
    d.add_argument("--dry-run", action="store_true", help="print the commands only")
    d.add_argument("--remote-dir", default=remote.REMOTE_DIR, help="folder on the board")
    d.add_argument("--sudo", default=remote.SUDO, help="how to become root on the board")
    d.add_argument("--ssh-opts", default="", help="options for ssh and scp (one string)")
    args = ap.parse_args(argv)
    names = boards.board_names() if "all" in args.board else args.board
    try:
        chosen = [boards.load(n) for n in names]
    except boards.BoardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for board in chosen:
        if args.cmd == "scripts":
            for p in tcl.write_scripts(board, args.out):
                print(f"wrote {bitstream.rel(p)}")
            continue
        if args.cmd == "bitstream":
            rc = bitstream.build(board, args.out, args.verilog, args.vivado)
        else:
            rc = remote.run(board.name, args.host, args.dry_run, args.remote_dir, args.sudo,
                            shlex.split(args.ssh_opts), args.out)  # fmt: skip
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
