"""The ``shiftdet`` console command: imports the app only after a Ctrl-C can be answered with
one line (importing OpenCV and NumPy takes a moment, and a console script's own import of the
app would turn a Ctrl-C in it into a traceback)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    try:
        from sw import app
    except KeyboardInterrupt:
        print("interrupted during start-up: nothing written", file=sys.stderr)
        return 130
    return app.main(argv)


if __name__ == "__main__":
    sys.exit(main())
