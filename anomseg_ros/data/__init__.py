"""Datasets and image files (ROS-free)."""
