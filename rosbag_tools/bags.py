"""Datasets as rosbag2 files and back, with integer nanosecond stamps.

A dataset bag holds the camera on ``/camera/image_raw`` (``sensor_msgs/Image`` rgb8, or
``sensor_msgs/CompressedImage`` png on request) and, where the dataset has them, the ground
truth as mono8 images on ``/ground_truth/anomaly`` (0 inlier, 1 anomaly, 255 void) and
``/ground_truth/semantic`` (trainIds). Messages of one frame share their header stamp.
"""
import dataclasses
import os
from typing import Dict, Iterable, Iterator, Optional, Tuple

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from anomseg_ros.errors import DatasetError, ImageFormatError
from anomseg_ros.ros.conversions import compressed_msg_to_rgb, image_msg_to_array

IMAGE_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = '/camera/image_raw/compressed'
ANOMALY_TOPIC = '/ground_truth/anomaly'
SEMANTIC_TOPIC = '/ground_truth/semantic'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
Image = TYPESTORE.types['sensor_msgs/msg/Image']
CompressedImage = TYPESTORE.types['sensor_msgs/msg/CompressedImage']
Header = TYPESTORE.types['std_msgs/msg/Header']
Time = TYPESTORE.types['builtin_interfaces/msg/Time']
START_NS = 1_700_000_000_000_000_000  # stamps of a dataset bag start here


@dataclasses.dataclass
class BagFrame:
    """One camera frame of a bag with the ground truth stamped like it (None when absent)."""

    stamp_ns: int
    image: np.ndarray
    anomaly: Optional[np.ndarray] = None
    semantic: Optional[np.ndarray] = None
    frame_id: str = 'camera'


def _header(stamp_ns: int, frame_id: str):
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_message(array: np.ndarray, stamp_ns: int, frame_id: str = 'camera'):
    """rgb8 for (H,W,3) uint8, mono8 for (H,W) uint8, 32FC1 for (H,W) float32."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.float32 and array.ndim == 2:
        encoding = '32FC1'
    elif array.dtype == np.uint8 and array.ndim in (2, 3):
        encoding = 'rgb8' if array.ndim == 3 else 'mono8'
    else:
        raise ImageFormatError(f'cannot store a {array.dtype} array of shape {array.shape}')
    return Image(header=_header(stamp_ns, frame_id), height=array.shape[0],
                 width=array.shape[1], encoding=encoding, is_bigendian=0,
                 step=array.strides[0], data=array.reshape(-1).view(np.uint8))


def message_array(msg) -> np.ndarray:
    """The numpy image of a deserialised Image or CompressedImage message."""
    if msg.__msgtype__ == CompressedImage.__msgtype__:
        return compressed_msg_to_rgb(msg)
    return image_msg_to_array(msg)[0]


def _refuse_existing(out: str) -> None:
    if os.path.exists(out):
        raise DatasetError(f'{out!r} already exists; a bag is never overwritten: remove it or '
                           f'choose another path')


class BagWriter:
    """A rosbags Writer with one connection per topic, created on first use."""

    def __init__(self, out: str, storage: str):
        if storage not in STORAGES:
            raise DatasetError(f'unknown storage {storage!r}; choose {", ".join(STORAGES)}')
        _refuse_existing(out)
        self.writer = Writer(out, version=9, storage_plugin=STORAGES[storage])
        self.connections: Dict[str, object] = {}

    def __enter__(self):
        self.writer.open()
        return self

    def __exit__(self, *exc):
        self.writer.close()

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msg.__msgtype__,
                                                                 typestore=TYPESTORE)
        self.writer.write(self.connections[topic], stamp_ns,
                          TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def write_dataset_bag(frames: Iterable[Tuple[np.ndarray, Optional[np.ndarray],
                                             Optional[np.ndarray]]],
                      out: str, *, rate_hz: float = 10.0, storage: str = 'mcap',
                      compressed: bool = False, frame_id: str = 'camera',
                      start_ns: int = START_NS) -> int:
    """Write ``(rgb, anomaly label or None, semantic label or None)`` frames to a new bag at
    ``out``, stamped ``rate_hz`` apart; returns the number of frames."""
    if rate_hz <= 0:
        raise DatasetError(f'rate must be positive, got {rate_hz} Hz')
    period_ns = int(round(1e9 / rate_hz))
    count = 0
    with BagWriter(out, storage) as bag:
        for index, (image, anomaly, semantic) in enumerate(frames):
            stamp_ns = start_ns + index * period_ns
            if compressed:
                ok, png = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                msg = CompressedImage(header=_header(stamp_ns, frame_id), format='rgb8; png',
                                      data=png.reshape(-1))
                bag.write(COMPRESSED_TOPIC, msg, stamp_ns)
            else:
                bag.write(IMAGE_TOPIC, image_message(image, stamp_ns, frame_id), stamp_ns)
            for topic, label in ((ANOMALY_TOPIC, anomaly), (SEMANTIC_TOPIC, semantic)):
                if label is not None:
                    bag.write(topic, image_message(label, stamp_ns, frame_id), stamp_ns)
            count += 1
    return count


def write_image_bag(messages: Iterable[Tuple[str, np.ndarray, int]], out: str, *,
                    storage: str = 'mcap', frame_id: str = 'camera') -> int:
    """Write ``(topic, array, stamp_ns)`` images (e.g. the node's outputs) to a new bag."""
    count = 0
    with BagWriter(out, storage) as bag:
        for topic, array, stamp_ns in messages:
            bag.write(topic, image_message(array, stamp_ns, frame_id), stamp_ns)
            count += 1
    return count


def read_frames(path: str, *, image_topic: Optional[str] = None) -> Iterator[BagFrame]:
    """The camera frames of a bag in stamp order, each with the ground truth of its stamp.

    Ground truth is matched by header stamp, so it may be written before or after its image.
    """
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError) as exc:
        raise DatasetError(f'{path!r} cannot be read as a rosbag2: {exc}') from None
    try:
        topics = {c.topic: c for c in reader.connections}
        image_topic = image_topic or next(
            (t for t in (IMAGE_TOPIC, COMPRESSED_TOPIC) if t in topics), None)
        if image_topic not in topics:
            raise DatasetError(f'{path!r} has no camera topic {image_topic or IMAGE_TOPIC}; its '
                               f'topics: {", ".join(sorted(topics)) or "none"}')
        truth: Dict[str, Dict[int, np.ndarray]] = {ANOMALY_TOPIC: {}, SEMANTIC_TOPIC: {}}
        wanted = [topics[t] for t in truth if t in topics]
        # (an empty list would mean every connection to rosbags)
        for connection, _, raw in reader.messages(connections=wanted) if wanted else ():
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            truth[connection.topic][_stamp_ns(msg)] = message_array(msg)
        for connection, _, raw in reader.messages(connections=[topics[image_topic]]):
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            stamp_ns = _stamp_ns(msg)
            yield BagFrame(stamp_ns, message_array(msg), truth[ANOMALY_TOPIC].get(stamp_ns),
                           truth[SEMANTIC_TOPIC].get(stamp_ns), msg.header.frame_id)
    finally:
        reader.close()


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
