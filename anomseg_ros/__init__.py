"""anomseg_ros: real-time pixel-wise road anomaly segmentation with a ROS 2 node.

The core (``backbones``, ``scoring``, ``pipeline``, ``evaluation``, ``data``) imports no ROS;
``anomseg_ros.ros`` holds the thin ROS 2 adapters.
"""

__version__ = '0.1.0'
