# anomseg_ros: `make demo` and `make test` set up .venv first (everything from PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.anomseg-installed
# ROS 2 packages that are not on PyPI (launch, ros2cli, vision_msgs), built from a source
# snapshot for the tests when one is beside the checkout; without it those tests skip
ROS_SRC ?= ../shared/ros_src
ROS_STAMP := $(VENV)/.ros-src-installed
ROS_ENV := if [ -f $(VENV)/ros_ws/install/setup.sh ]; then . $(VENV)/ros_ws/install/setup.sh; fi;
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup demo test lint lint-types bench colcon clean

setup: $(STAMP)

# Re-run only when the dependency list or the package metadata changes.
$(STAMP): requirements.txt setup.py package.xml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation --use-pep517 -e .
	$(BIN)/python -c "import torch, torchvision, rclpy, anomseg_ros; print('environment ready: torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

$(ROS_STAMP): tools/install_ros_src.sh $(STAMP)
	bash tools/install_ros_src.sh $(ROS_SRC) $(VENV)
	if [ -d $(VENV)/ros_ws/install ]; then touch $(ROS_STAMP); fi

demo: setup
	$(BIN)/anomseg demo $(DEMO_ARGS)

# Two processes: the ONNX / OpenVINO / NNCF tests apart, since NNCF patches torch when imported.
# Training runs after OpenVINO (runtime auto on the CPU) in the first, as in users' scripts.
test: setup $(ROS_STAMP)
	$(ROS_ENV) $(BIN)/python -m pytest test -m "not runtimes"
	$(ROS_ENV) $(BIN)/python -m pytest test -m runtimes

# The core's modules whose public API is type-checked.
TYPED := anomseg_ros/errors.py anomseg_ros/registry.py anomseg_ros/sizes.py anomseg_ros/labels.py \
	anomseg_ros/checkpoint.py anomseg_ros/pipeline.py anomseg_ros/precision.py \
	anomseg_ros/preprocessing.py anomseg_ros/obstacles.py anomseg_ros/scoring \
	anomseg_ros/runtimes/registry.py anomseg_ros/backbones/registry.py \
	anomseg_ros/methods/base.py anomseg_ros/options.py anomseg_ros/ros/worker.py \
	anomseg_ros/ros/health.py

lint: setup
	$(BIN)/flake8 anomseg_ros rosbag_tools launch test bench setup.py
	$(BIN)/pydocstyle anomseg_ros rosbag_tools launch
	$(MAKE) lint-types

lint-types:
	$(BIN)/mypy $(TYPED)

bench: setup
	$(BIN)/python bench/bench_precision.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_scorers.py
	$(ROS_ENV) $(BIN)/python bench/bench_node.py
	$(ROS_ENV) $(BIN)/python bench/bench_node.py --precision int8
	$(ROS_ENV) $(BIN)/python bench/bench_node.py --sizes 512x256 --cameras 1,2,4
	$(ROS_ENV) $(BIN)/python bench/bench_dds.py
	$(BIN)/python bench/bench_overlap.py
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_soak.py
	$(BIN)/python bench/bench_backbones.py
	$(BIN)/python bench/bench_synboost.py
	$(BIN)/python bench/bench_fleet.py

colcon: setup
	$(BIN)/colcon build --base-paths . --build-base /tmp/anomseg_colcon/build --install-base /tmp/anomseg_colcon/install

clean:
	rm -rf $(VENV) build install log *.egg-info demo_out
