"""``python -m anomseg_ros.detector``: the detector node without ``ros2 run``."""
from anomseg_ros.ros.detector_node import main

if __name__ == '__main__':
    main()
