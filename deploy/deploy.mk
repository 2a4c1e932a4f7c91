# deploy: the board build and the board itself (deploy/README.md). Included by the top
# Makefile, which defines RUN and VPY; BOARD defaults as in deploy/package/package.mk.
#   make bitstream-scripts BOARD=ultra96v2|zcu104|pynq-z2|all   the Vivado Tcl only (no Vivado)
#   make bitstream BOARD=...        scripts, Verilog, Vivado -> build/deploy/<board>/pow2det.bit
#   make deploy BOARD=... HOST=user@address [DRY_RUN=1] [REMOTE_DIR=pow2det] [SSH_OPTS="-p 22"]
#               [SUDO="sudo -H"]

BOARD ?= ultra96v2
HOST ?=
DRY_RUN ?=
REMOTE_DIR ?= pow2det
SSH_OPTS ?=
# How to become root on the board (empty when HOST logs in as root).
SUDO ?= sudo -H
# Vivado's -jobs for synthesis and implementation (build.tcl reads $POW2DET_JOBS).
JOBS ?= $(shell nproc 2>/dev/null || echo 4)
# Root of the per-board folders (scripts, Verilog, Vivado project, outputs).
DEPLOY_OUT ?= build/deploy

.PHONY: bitstream bitstream-scripts deploy

bitstream-scripts:
	@$(RUN) $(VPY) -m deploy.vivado scripts --board $(BOARD) --out $(DEPLOY_OUT)

# Without vivado on PATH: one line (the scripts are written all the same), exit status 2.
bitstream:
	@POW2DET_JOBS=$(JOBS) $(RUN) $(VPY) -m deploy.vivado bitstream --board $(BOARD) --out $(DEPLOY_OUT)

deploy:
	@$(RUN) $(VPY) -m deploy.vivado deploy --board $(BOARD) --out $(DEPLOY_OUT) --host "$(HOST)" \
		--remote-dir "$(REMOTE_DIR)" --ssh-opts "$(SSH_OPTS)" --sudo "$(SUDO)" \
		$(if $(filter-out 0 no false,$(DRY_RUN)),--dry-run)
