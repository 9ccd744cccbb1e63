"""Datasets as rosbag2 files and back, with integer nanosecond stamps.

A dataset bag holds the camera on ``/camera/image_raw`` (``sensor_msgs/Image`` rgb8, or
``sensor_msgs/CompressedImage`` png on request) and, where the dataset has them, the ground
truth as mono8 images on ``/ground_truth/anomaly`` (0 inlier, 1 anomaly, 255 void) and
``/ground_truth/semantic`` (trainIds). Messages of one frame share their header stamp. Each
camera message has its CRC-32 on ``<camera topic>/crc32`` (``std_msgs/UInt32``, same log
time): rosbags writes MCAP chunks without checksums, so without it a bag damaged in its pixel
data would read as a valid one.

Reading reports damage instead of hiding it (``BagDamage``): a frame whose checksum does not
match, that cannot be decoded, or whose stamp repeats an earlier frame's is skipped and
counted; a chunk the reader cannot read ends the bag there, said as such.
"""
import binascii
import collections
import dataclasses
import hashlib
import os
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from anomseg_ros.errors import DatasetError, ImageFormatError
from anomseg_ros.errors import first_line
from anomseg_ros.data.messages import (array_encoding, compressed_msg_to_rgb,
                                       image_msg_to_array, image_msg_to_rgb, INPUT_ENCODINGS,
                                       ns_to_sec_nanosec, stamp_to_ns)

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
UInt32 = TYPESTORE.types['std_msgs/msg/UInt32']
CHECKSUM_SUFFIX = '/crc32'
CAMERA_TYPES = (Image.__msgtype__, CompressedImage.__msgtype__)
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
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_message(array: np.ndarray, stamp_ns: int, frame_id: str = 'camera'):
    """rgb8 for (H,W,3) uint8, mono8 for (H,W) uint8, 32FC1 for (H,W) float32 (the node's
    ``ARRAY_ENCODINGS``)."""
    array = np.ascontiguousarray(array)
    encoding = array_encoding(array)
    return Image(header=_header(stamp_ns, frame_id), height=array.shape[0],
                 width=array.shape[1], encoding=encoding, is_bigendian=0,
                 step=array.strides[0], data=array.reshape(-1).view(np.uint8))


def message_array(msg) -> np.ndarray:
    """The numpy image of a deserialised Image or CompressedImage message: a camera frame
    (any encoding the node reads: rgb8, bgr8, ...) as RGB, others (mono8 labels, 32FC1 scores)
    as they are."""
    if msg.__msgtype__ == CompressedImage.__msgtype__:
        return compressed_msg_to_rgb(msg)
    if msg.encoding in INPUT_ENCODINGS and msg.encoding != 'mono8':
        return image_msg_to_rgb(msg)
    expected = int(msg.step) * int(msg.height)
    if len(msg.data) != expected:
        raise ImageFormatError(f'{msg.encoding} image with {len(msg.data)} bytes, expected '
                               f'step*height = {expected}')
    return image_msg_to_array(msg)[0]


@dataclasses.dataclass
class BagDamage:
    """What could not be read of a bag: frames skipped by reason, a few examples, and whether
    the reader stopped before the end (``truncated``: why)."""

    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: List[str] = dataclasses.field(default_factory=list)
    truncated: str = ''

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(example)

    def __bool__(self) -> bool:
        return bool(self.skipped) or bool(self.truncated)

    def summary(self) -> str:
        parts = [f'{count} frames {reason}' for reason, count in sorted(self.skipped.items())]
        if self.truncated:
            parts.append(f'read stopped early: {self.truncated}')
        return '; '.join(parts)

    def to_dict(self) -> dict:
        return {'skipped': dict(self.skipped), 'examples': self.examples,
                'truncated': self.truncated}


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
        raw = TYPESTORE.serialize_cdr(msg, msg.__msgtype__)
        self._write_raw(topic, msg.__msgtype__, raw, stamp_ns)
        if msg.__msgtype__ in CAMERA_TYPES:  # read_frames checks it (see the module doc)
            checksum = UInt32(data=binascii.crc32(raw))
            self._write_raw(topic + CHECKSUM_SUFFIX, UInt32.__msgtype__,
                            TYPESTORE.serialize_cdr(checksum, UInt32.__msgtype__), stamp_ns)

    def _write_raw(self, topic: str, msgtype: str, raw, stamp_ns: int) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                                 typestore=TYPESTORE)
        self.writer.write(self.connections[topic], stamp_ns, raw)


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


def read_frames(path: str, *, image_topic: Optional[str] = None,
                damage: Optional[BagDamage] = None) -> Iterator[BagFrame]:
    """The camera frames of a bag in stamp order, each with the ground truth of its stamp.

    Ground truth is matched by header stamp, so it may be written before or after its image.
    Frames that cannot be used are skipped and counted in ``damage`` (see the module doc);
    a camera topic that is missing or carries no images is one ``DatasetError``.
    """
    damage = damage if damage is not None else BagDamage()
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
        msgtype = topics[image_topic].msgtype
        if msgtype not in CAMERA_TYPES:
            raise DatasetError(f'{path!r}: topic {image_topic} carries {msgtype}, not '
                               f'{" or ".join(CAMERA_TYPES)}; give the camera topic')
        truth: Dict[str, Dict[int, np.ndarray]] = {ANOMALY_TOPIC: {}, SEMANTIC_TOPIC: {}}
        checksums: Dict[int, set] = collections.defaultdict(set)  # by log time
        repeated = set()  # stamps of two ground-truth messages of one topic
        checksum_topic = image_topic + CHECKSUM_SUFFIX
        wanted = [topics[t] for t in list(truth) + [checksum_topic] if t in topics]
        # (an empty list would mean every connection to rosbags)
        for connection, log_ns, raw in _messages(reader, wanted, damage, 'ground truth'):
            if connection.topic == checksum_topic:
                checksums[log_ns].add(TYPESTORE.deserialize_cdr(raw, connection.msgtype).data)
                continue
            try:
                msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                if _stamp_ns(msg) in truth[connection.topic]:
                    repeated.add(_stamp_ns(msg))
                truth[connection.topic][_stamp_ns(msg)] = message_array(msg)
            except Exception as exc:  # noqa: B902 - any damage of the bytes
                damage.skip(f'without readable {connection.topic}',
                            f'{connection.topic} at {log_ns}: {_reason(exc)}')
        seen = set()
        for connection, log_ns, raw in _messages(reader, [topics[image_topic]], damage,
                                                 image_topic):
            if log_ns in checksums and binascii.crc32(raw) not in checksums[log_ns]:
                damage.skip('damaged (checksum mismatch)', f'{image_topic} at {log_ns}')
                continue
            try:
                msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                image = message_array(msg)
            except Exception as exc:  # noqa: B902 - any damage of the bytes
                damage.skip('undecodable', f'{image_topic} at {log_ns}: {_reason(exc)}')
                continue
            stamp_ns = _stamp_ns(msg)
            if stamp_ns in seen or stamp_ns in repeated:  # whose ground truth is whose?
                damage.skip('with a repeated header stamp', f'{image_topic} stamp {stamp_ns}')
                continue
            seen.add(stamp_ns)
            yield BagFrame(stamp_ns, image, truth[ANOMALY_TOPIC].get(stamp_ns),
                           truth[SEMANTIC_TOPIC].get(stamp_ns), msg.header.frame_id)
    finally:
        reader.close()


def _messages(reader, connections, damage: BagDamage, what: str):
    """``reader.messages`` that ends, saying why in ``damage``, where the bag cannot be read
    further (a chunk whose checksum or size is wrong, a truncated file)."""
    if not connections:
        return
    iterator = reader.messages(connections=connections)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: B902 - ReaderError, struct / decompression errors
            damage.truncated = f'{what}: {_reason(exc)}'
            return
        yield item


def _reason(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {first_line(exc)}'


def _stamp_ns(msg) -> int:
    return stamp_to_ns(msg.header.stamp)


FINGERPRINT_SAMPLE = 1 << 20  # bytes hashed from the head and the tail of each file


def fingerprint(path: str) -> str:
    """SHA-256 over each file of the bag folder: its name, size, and its first and last MiB
    (all of a file up to 2 MiB). It changes when a bag is re-recorded, truncated or appended
    to, without reading hours of video; damage in the middle of a long file is what
    the bag's own CRC topic reports when it is read."""
    digest = hashlib.sha256()
    try:
        names = sorted(os.listdir(path))
        for name in names:
            file_path = os.path.join(path, name)
            if not os.path.isfile(file_path):
                continue
            size = os.path.getsize(file_path)
            digest.update(f'{name}\0{size}\0'.encode())
            with open(file_path, 'rb') as handle:
                digest.update(handle.read(FINGERPRINT_SAMPLE))
                if size > 2 * FINGERPRINT_SAMPLE:
                    handle.seek(size - FINGERPRINT_SAMPLE)
                digest.update(handle.read(FINGERPRINT_SAMPLE))
    except OSError as exc:
        raise DatasetError(f'{path!r} cannot be read: {exc.strerror or exc}') from None
    return digest.hexdigest()
