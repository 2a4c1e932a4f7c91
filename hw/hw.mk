# hw: the accelerator's targets (hw/README.md). Included at the end of the top Makefile, whose
# RUN / VPY / VENV / PYTEST_ARGS it uses.
HW_VERILOG := build/verilog/pow2det_accel.v

.PHONY: verilog synth bench-hw bench-boards bench-pow2x2 test-rtl

# Amaranth -> Verilog of the default AccelConfig (override fields: HW_SET="--set max_strip=16").
verilog:
	$(RUN) $(VPY) -m hw.gen -o $(HW_VERILOG) $(HW_SET)

# yosys synth_xilinx -family xcup; prints LUT/FF/CARRY/DSP/BRAM beside the ZU3EG (takes minutes).
synth: verilog
	$(RUN) $(VPY) -m hw.synth --verilog $(HW_VERILOG)

# Cycle model per layer of Yolo-Fastest(-XL) at 512x512, model vs RTL, Verilator speed;
# writes bench/results/hw.json (uses build/synth/resources.json when `make synth` has run).
bench-hw:
	$(RUN) $(VPY) bench/accelerator.py

# Per board of deploy/boards: Verilog of its AccelConfig, yosys synth_xilinx (xc7 / xcup), resources
# vs the part, logic levels, fps at its clock; bench/results/boards.{json,png} (minutes a board).
bench-boards:
	$(RUN) $(VPY) bench/boards.py $(BOARDS_ARGS)

# Only the accelerator's tests (they are also part of `make test`).
test-rtl:
	$(RUN) $(VENV)/bin/pytest tests/test_hw_units.py tests/test_hw_blocks.py tests/test_rtl_accel.py $(PYTEST_ARGS)

# pow2x2 in the dense engine: a second shifter per PE vs the second pass hw/ builds (yosys LUTs
# of both datapaths side by side); bench/results/pow2x2_cost.json.
bench-pow2x2:
	$(RUN) $(VPY) bench/pow2x2_cost.py
