"""``python -m anomseg_ros.managed_detector`` (and ``ros2 run anomseg_ros managed_detector``): the
detector as a managed (lifecycle) node, unconfigured until a lifecycle manager (nav2's,
Autoware's, ``ros2 lifecycle set``) configures and activates it."""
from anomseg_ros.ros.process import main as run


def main(args=None) -> None:
    run(args, managed=True)


if __name__ == '__main__':
    main()
