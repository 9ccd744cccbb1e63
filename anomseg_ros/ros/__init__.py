"""Thin ROS 2 adapters around the ROS-free core."""
