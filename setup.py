"""ament_python / setuptools build of anomseg_ros (colcon build and pip install -e . alike)."""
from glob import glob
import os
import re

from setuptools import find_packages, setup

PACKAGE = 'anomseg_ros'
# one version, the package's own: package.xml is checked against it (test_packaging)
VERSION = re.search(r"__version__ = '([^']+)'",
                    open(os.path.join(os.path.dirname(os.path.abspath(__file__)), PACKAGE,
                                      '__init__.py')).read()).group(1)


def _data_files():
    files = [
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
    ]
    for folder in ('launch', 'config', 'models'):
        paths = [p for p in glob(f'{folder}/*') if os.path.isfile(p)]
        if paths:
            files.append((f'share/{PACKAGE}/{folder}', paths))
    return files


setup(
    name=PACKAGE,
    version=VERSION,
    packages=find_packages(include=['anomseg_ros', 'anomseg_ros.*', 'rosbag_tools']),
    data_files=_data_files(),
    install_requires=['setuptools'],
    # pip install anomseg_ros[fleet]: anomseg fleet on Ray (without it, in one process) and
    # the SegmentMeIfYouCan export; requirements.txt holds the whole test environment
    extras_require={'fleet': ['ray>=2.40', 'h5py']},
    zip_safe=False,
    maintainer='anomseg_ros developers',
    maintainer_email='anomseg@example.com',
    description='Real-time road anomaly segmentation for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'detector = anomseg_ros.detector:main',
            'managed_detector = anomseg_ros.managed_detector:main',
            'anomseg = anomseg_ros.cli.main:main',
        ],
    },
)
