# make board-package: the torch-free board wheel and a board's tarball (deploy/package/build.py).
#   BOARD=ultra96v2 | zcu104 | pynq-z2 (default ultra96v2), BOARD=all for every board;
#   BOARD_ARTIFACTS="a.npz b.npz" ships those instead of every models/artifacts/*.npz.
# Included by the top Makefile, which defines VPY.

BOARD ?= ultra96v2
BOARD_ARTIFACTS ?=

.PHONY: board-package

board-package:
	$(VPY) deploy/package/build.py \
		$(if $(filter all,$(BOARD)),--all-boards,--board $(BOARD)) \
		$(if $(strip $(BOARD_ARTIFACTS)),--artifacts $(BOARD_ARTIFACTS))
