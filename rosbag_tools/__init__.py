"""rosbag2 tools of anomseg_ros, built on the ``rosbags`` library (no ROS install needed):
datasets to bags, bags back to frames, and recording the node's outputs."""
from rosbag_tools.bags import (ANOMALY_TOPIC, BagFrame, IMAGE_TOPIC, read_frames,
                               SEMANTIC_TOPIC, write_dataset_bag, write_image_bag)

__all__ = ['ANOMALY_TOPIC', 'BagFrame', 'IMAGE_TOPIC', 'SEMANTIC_TOPIC', 'read_frames',
           'write_dataset_bag', 'write_image_bag']
