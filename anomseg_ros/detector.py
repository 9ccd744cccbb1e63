"""``python -m anomseg_ros.detector`` (and ``ros2 run anomseg_ros detector``): the detector node
in a process that ends cleanly on every signal (``anomseg_ros.ros.process``). Nothing heavy is
imported before the signals are taken over."""
from anomseg_ros.ros.process import main

if __name__ == '__main__':
    main()
