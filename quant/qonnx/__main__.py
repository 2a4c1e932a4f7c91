"""``python -m quant.qonnx export ART.npz OUT.onnx`` | ``import IN.onnx OUT.npz``.

Export writes the artifact as a QONNX model that runs in qonnx's executor to the same integers;
import writes a QONNX model as an artifact. A file that cannot be converted stops the command with
one line naming the problem (exit status 2)."""

from __future__ import annotations

import argparse
import sys

from quant.qonnx.common import QonnxError
from quant.qonnx.export import export_file
from quant.qonnx.importer import import_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quant.qonnx", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="artifact -> QONNX model (bit-exact in qonnx's executor)")
    e.add_argument("artifact", help="the model artifact (.npz)")
    e.add_argument("onnx", help="the QONNX file to write (atomically)")
    i = sub.add_parser("import", help="QONNX model -> artifact")
    i.add_argument("onnx", help="the QONNX file to read")
    i.add_argument("artifact", help="the artifact to write (validated, sealed, atomically)")
    args = ap.parse_args(argv)
    try:
        if args.command == "export":
            model = export_file(args.artifact, args.onnx)
            print(f"{args.onnx}: {len(model.graph.node)} ONNX nodes from {args.artifact}")
        else:
            imp = import_file(args.onnx, args.artifact)
            for note in imp.notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"{args.artifact}: {len(imp.artifact.nodes)} nodes from {args.onnx}")
    except QonnxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
