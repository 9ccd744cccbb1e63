"""Shared fixtures: the real reference data (skipped when absent) and an isolated ROS 2 graph."""
import os
import random

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get('ANOMSEG_SHARED_DATA',
                             os.path.join(os.path.dirname(REPO), 'shared', 'data'))

# One ROS domain per test session, discovery on this machine only: tests never see other
# sessions' nodes, and send nothing off the machine.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')


@pytest.fixture(scope='session')
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f'reference data folder {SHARED_DATA} is absent (it exists only on the '
                    f'developers\' and CI machines; set ANOMSEG_SHARED_DATA to point elsewhere)')
    return SHARED_DATA


@pytest.fixture(scope='session')
def random_checkpoint(tmp_path_factory):
    """A small anomseg checkpoint of an untrained ERFNet (fixed seed), input 128x64."""
    import torch
    from anomseg_ros.backbones import create_backbone
    from anomseg_ros.checkpoint import ModelInfo, save_checkpoint
    torch.manual_seed(0)
    model = create_backbone('erfnet', num_classes=20)
    path = str(tmp_path_factory.mktemp('ckpt') / 'erfnet_random.pt')
    save_checkpoint(path, model, ModelInfo(input_size_hw=(64, 128), pretrained=False))
    return path


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def rclpy_context():
    import rclpy
    from anomseg_ros.ros.dds import configure_dds
    configure_dds(localhost_only=True)
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture(scope='session')
def outlier_dir(tmp_path_factory):
    """Three RGBA outlier cut-outs (ellipses), as anomseg synth's outliers/."""
    import cv2
    import numpy as np
    root = tmp_path_factory.mktemp('outliers')
    for i in range(3):
        bgra = np.zeros((12, 16, 4), np.uint8)
        bgra[..., :3] = (40 * i, 200, 255 - 60 * i)
        cv2.ellipse(bgra, (8, 6), (7, 5), 0, 0, 360, (40 * i, 200, 255, 255), -1)
        cv2.imwrite(str(root / f'{i}.png'), bgra)
    return str(root)
