"""ROS messages built from numpy and the package's objects: ``sensor_msgs/Image`` from arrays,
``vision_msgs`` detections and class tables. Reading messages (any encoding, stamps) is
``data/messages.py``'s, ROS-free.
"""
import array as pyarray

import numpy as np

from anomseg_ros.data.messages import ARRAY_ENCODINGS


def byte_array(buffer) -> pyarray.array:
    """A message's ``uint8[]`` field from any buffer, in one copy. The generated setters take
    an ``array.array('B')`` as it is, while ``bytes`` go through a Python check of every byte
    where field checks run (Humble and Jazzy unless Python runs with -O; Kilted with
    ROS_PYTHON_CHECK_FIELDS=1; ros2/rosidl_python#156): 250 ms for a 1024x512 rgb8 frame."""
    data = pyarray.array('B')
    data.frombytes(memoryview(buffer).cast('B'))
    return data


def array_to_image_msg(array: np.ndarray, encoding: str, header=None):
    """A numpy image as ``sensor_msgs/Image``: rgb8 (H,W,3) uint8, mono8 (H,W) uint8 or 32FC1
    (H,W) float32."""
    from sensor_msgs.msg import Image
    dtype, channels = ARRAY_ENCODINGS[encoding]
    ndim = 3 if channels > 1 else 2
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.ndim != ndim:
        raise ValueError(f'{encoding} needs a {ndim}-d array, got shape {array.shape}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(np.little_endian is False)
    msg.step = array.strides[0]
    msg.data = byte_array(array)
    return msg


def compressed_image_msg(header, fmt: str, data: bytes):
    """A ``sensor_msgs/CompressedImage`` of encoded bytes (``outputs.compress``)."""
    from sensor_msgs.msg import CompressedImage
    msg = CompressedImage(header=header, format=fmt)
    msg.data = byte_array(data)
    return msg


def vision_msgs_available() -> bool:
    """Whether ``vision_msgs`` (a ROS package, not a PyPI wheel) can be imported."""
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


ANOMALY_CLASS_ID = 'anomaly'


def obstacles_to_detections(obstacles, header=None, ids=None):
    """Obstacles as a ``vision_msgs/Detection2DArray``: one ``Detection2D`` per connected
    component, its bbox centre and size in input pixels, one hypothesis (class id
    ``"anomaly"``, score = the component's mean anomaly score, on the scorer's scale), its
    ``id`` (``ids[i]`` when given, e.g. a track id; else its rank by size), and the frame's
    header."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
    msg = Detection2DArray()
    if header is not None:
        msg.header = header
    for index, obstacle in enumerate(obstacles):
        detection = Detection2D()
        if header is not None:
            detection.header = header
        detection.bbox.center.position.x = obstacle.x + obstacle.width / 2.0
        detection.bbox.center.position.y = obstacle.y + obstacle.height / 2.0
        detection.bbox.size_x = float(obstacle.width)
        detection.bbox.size_y = float(obstacle.height)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = ANOMALY_CLASS_ID
        hypothesis.hypothesis.score = float(obstacle.mean_score)
        detection.results = [hypothesis]
        detection.id = str(ids[index] if ids is not None else index)
        msg.detections.append(detection)
    return msg


def label_info_msg(class_names, header=None, threshold: float = 0.0):
    """The class table of ``semantic`` as ``vision_msgs/LabelInfo``: trainId -> name, and the
    void value 255."""
    from vision_msgs.msg import LabelInfo, VisionClass
    msg = LabelInfo(threshold=float(threshold))
    if header is not None:
        msg.header = header
    msg.class_map = [VisionClass(class_id=index, class_name=name)
                     for index, name in enumerate(class_names)]
    msg.class_map.append(VisionClass(class_id=255, class_name='void'))
    return msg
