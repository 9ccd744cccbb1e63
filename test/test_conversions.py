"""ROS image messages to RGB arrays, and every malformed frame a camera can send."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from anomseg_ros.errors import ImageFormatError
from anomseg_ros.data.messages import compressed_msg_to_rgb, image_msg_to_rgb

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _msg(pixels, encoding, *, pad=0, data=None, height=None, width=None):
    rows = pixels.reshape(pixels.shape[0], -1)
    padded = np.pad(rows, ((0, 0), (0, pad)))
    return SimpleNamespace(height=pixels.shape[0] if height is None else height,
                           width=pixels.shape[1] if width is None else width,
                           encoding=encoding, step=padded.shape[1],
                           data=padded.tobytes() if data is None else data)


@pytest.mark.parametrize('encoding,pixels,expected', [
    ('rgb8', RGB, RGB),
    ('bgr8', RGB[..., ::-1], RGB),
    ('rgba8', np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
    ('bgra8', np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
    ('mono8', RGB[..., 0], np.repeat(RGB[..., :1], 3, axis=2)),
])
@pytest.mark.parametrize('pad', [0, 3])  # rows padded beyond width*channels
def test_supported_encodings_give_rgb(encoding, pixels, expected, pad):
    np.testing.assert_array_equal(image_msg_to_rgb(_msg(np.ascontiguousarray(pixels), encoding,
                                                        pad=pad)), expected)


@pytest.mark.parametrize('change,message', [
    (dict(encoding='16UC1'), 'unsupported encoding'),
    (dict(encoding='yuv422'), 'unsupported encoding'),
    (dict(encoding='mono16'), 'unsupported encoding'),
    (dict(encoding='bayer_rggb8'), 'unsupported encoding'),
    (dict(encoding='32FC1'), 'unsupported encoding'),
    (dict(data=RGB.tobytes()[:-1]), 'truncated'),  # one byte short
    (dict(data=RGB.tobytes() + b'x'), 'oversized'),  # one byte over
    (dict(height=0), 'empty image'),
    (dict(width=0), 'empty image'),
    (dict(data=RGB.tobytes()[:50]), 'truncated'),
    (dict(data=b''), 'truncated'),
    (dict(data=RGB.tobytes() + b'xx'), 'oversized'),
    (dict(width=9), 'step'),
])
def test_malformed_frames_say_what_is_wrong(change, message):
    """The frame kinds a probe of the node sent (each was refused in one line, and stays so)."""
    msg = _msg(RGB, 'rgb8')
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageFormatError, match=message):
        image_msg_to_rgb(msg)


def test_compressed_png_and_jpeg_decode_to_rgb():
    ok, png = cv2.imencode('.png', cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(
        compressed_msg_to_rgb(SimpleNamespace(format='png', data=png.tobytes())), RGB)
    ok, jpeg = cv2.imencode('.jpg', np.full((16, 16, 3), (0, 0, 255), np.uint8))  # BGR red
    decoded = compressed_msg_to_rgb(SimpleNamespace(format='jpeg', data=jpeg.tobytes()))
    assert decoded.shape == (16, 16, 3) and decoded[8, 8, 0] > 200 and decoded[8, 8, 2] < 50


@pytest.mark.parametrize('data', [b'', b'\x89PNG garbage', bytes(100)])
def test_undecodable_compressed_data_is_refused(data):
    with pytest.raises(ImageFormatError, match='compressed image'):
        compressed_msg_to_rgb(SimpleNamespace(format='jpeg', data=data))


def _scan_bomb(repeats):
    """A progressive JPEG whose last scan is repeated: small, and slow to decode."""
    flat = np.zeros((2048, 2048, 3), np.uint8)
    ok, encoded = cv2.imencode('.jpg', flat, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = encoded.tobytes()
    last, end = data.rfind(b'\xff\xda'), data.rfind(b'\xff\xd9')
    return data[:end] + data[last:end] * repeats + data[end:]


def test_a_jpeg_scan_bomb_is_refused_before_decoding():
    import time
    bomb = _scan_bomb(2000)
    assert len(bomb) < 2_000_000
    started = time.monotonic()
    with pytest.raises(ImageFormatError, match='2010 scans'):
        compressed_msg_to_rgb(SimpleNamespace(format='jpeg', data=bomb))
    assert time.monotonic() - started < 0.5
    # an ordinary progressive JPEG still decodes
    ok, jpeg = cv2.imencode('.jpg', RGB, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert compressed_msg_to_rgb(SimpleNamespace(format='jpeg', data=jpeg.tobytes())).shape == \
        RGB.shape


def test_a_library_error_is_one_line_with_its_reason():
    from anomseg_ros.errors import first_line
    openvino = ("Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'res.status == "
                "pugi::status_ok' failed at src/frontends/ir/src/input_model.cpp:219:\nError "
                "parsing start element tag at offset 47\n\n")
    assert first_line(RuntimeError(openvino)) == 'Error parsing start element tag at offset 47'
    assert first_line(RuntimeError('')) == '-'


@pytest.mark.parametrize('height,width', [(1, 1), (1, 100_000), (100_000, 1)])
def test_extreme_but_valid_shapes_decode(height, width):
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = _msg(pixels, 'rgb8')
    msg.is_bigendian = 1  # meaningless for 8-bit channels: read the same
    np.testing.assert_array_equal(image_msg_to_rgb(msg), pixels)


def test_one_encoding_table_and_one_stamp_arithmetic_for_node_client_and_bags():
    """The bag tools write and read the images the node publishes through the same table, and
    stamps go to nanoseconds and back the same way everywhere."""
    import types
    from anomseg_ros.data.messages import (ARRAY_ENCODINGS, array_encoding,
                                           image_msg_to_array, ns_to_sec_nanosec, stamp_to_ns)
    from rosbag_tools.bags import image_message
    rng = np.random.default_rng(0)
    arrays = {'rgb8': rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
              'mono8': rng.integers(0, 256, (5, 7), dtype=np.uint8),
              '32FC1': rng.random((5, 7), dtype=np.float32)}
    assert set(arrays) == set(ARRAY_ENCODINGS)
    for encoding, array in arrays.items():
        assert array_encoding(array) == encoding
        back, read = image_msg_to_array(image_message(array, 1_700_000_000_123_456_789))
        assert read == encoding
        np.testing.assert_array_equal(back, array)
    with pytest.raises(ImageFormatError, match='cannot store a int16'):
        array_encoding(np.zeros((2, 2), np.int16))
    sec, nanosec = ns_to_sec_nanosec(1_700_000_000_123_456_789)
    assert (sec, nanosec) == (1_700_000_000, 123_456_789)
    assert stamp_to_ns(types.SimpleNamespace(sec=sec, nanosec=nanosec)) == \
        1_700_000_000_123_456_789


@pytest.mark.parametrize('encoding,array', [
    ('rgb8', RGB), ('mono8', RGB[..., 0]), ('32FC1', RGB[..., 0].astype(np.float32) / 7)])
def test_outputs_hand_their_pixels_to_the_message_as_an_array_not_bytes(monkeypatch, encoding,
                                                                        array):
    """``bytes`` in a ``uint8[]`` field are checked byte by byte in Python where field checks
    run (Humble, Jazzy; Kilted with ROS_PYTHON_CHECK_FIELDS=1): 250 ms a 1024x512 frame. An
    ``array.array('B')`` is taken as it is. The pixels arrive unchanged either way."""
    import array as pyarray
    from sensor_msgs.msg import CompressedImage, Image
    from anomseg_ros.data.messages import image_msg_to_array
    from anomseg_ros.ros.conversions import array_to_image_msg, compressed_image_msg
    given = []
    for message in (Image, CompressedImage):
        field = message.data
        monkeypatch.setattr(message, 'data', property(field.fget, lambda msg, value, field=field: (
            given.append(type(value)), field.fset(msg, value))))
    msg = array_to_image_msg(np.ascontiguousarray(array), encoding)
    np.testing.assert_array_equal(image_msg_to_array(msg)[0], array)
    compressed = compressed_image_msg(msg.header, 'rgb8; png compressed bgr8', b'\x89PNG')
    assert bytes(compressed.data) == b'\x89PNG'
    assert set(given) == {pyarray.array}  # the constructors' empty defaults, and the pixels
