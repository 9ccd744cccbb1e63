"""The bags a fleet command is given, and a fingerprint that says a bag is still the bag a
result line was made from."""
import glob
import hashlib
import os
from typing import List, Tuple

from anomseg_ros.errors import DatasetError

SAMPLE_BYTES = 1 << 20  # hashed from the head and the tail of each file


def is_bag(path: str) -> bool:
    return os.path.isfile(os.path.join(path, 'metadata.yaml'))


def expand_bags(specs: List[str]) -> Tuple[List[str], List[str]]:
    """``(bags, problems)`` for ``specs``: bag folders, folders holding bags (searched
    recursively), glob patterns, or text files listing one of those per line (``#``
    comments). Each bag once, in the order given; a spec that names nothing is a problem
    line, not an error, so the fleet goes on with the rest."""
    bags, problems, seen = [], [], set()

    def add(path):
        path = os.path.abspath(path)
        if path not in seen:
            seen.add(path)
            bags.append(path)

    def expand(spec, depth=0):
        if is_bag(spec):
            return add(spec)
        if os.path.isdir(spec):
            found = sorted(os.path.dirname(p) for p in glob.glob(
                os.path.join(spec, '**', 'metadata.yaml'), recursive=True))
            if not found:
                problems.append(f'{spec}: a folder with no rosbag2 in it (no metadata.yaml)')
            for path in found:
                add(path)
            return
        if os.path.isfile(spec) and depth == 0:
            try:
                with open(spec, encoding='utf-8') as handle:
                    lines = [line.split('#', 1)[0].strip() for line in handle]
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f'{spec}: the list of bags cannot be read ({exc})')
                return
            base = os.path.dirname(os.path.abspath(spec))
            for line in filter(None, lines):
                expand(line if os.path.isabs(line) else os.path.join(base, line), depth + 1)
            return
        matches = sorted(glob.glob(spec))
        if not matches or matches == [spec]:
            what = 'is not a rosbag2 folder' if os.path.exists(spec) else 'does not exist'
            problems.append(f'{spec}: {what} and matches no bag')
            return
        for match in matches:
            expand(match, depth + 1)

    for spec in specs:
        expand(spec)
    return bags, problems


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
                digest.update(handle.read(SAMPLE_BYTES))
                if size > 2 * SAMPLE_BYTES:
                    handle.seek(size - SAMPLE_BYTES)
                digest.update(handle.read(SAMPLE_BYTES))
    except OSError as exc:
        raise DatasetError(f'{path!r} cannot be read: {exc.strerror or exc}') from None
    return digest.hexdigest()


def bag_id(path: str) -> str:
    """A file-name-safe name of a bag for the output folder: its folder name and a short hash
    of its full path (two drives both called ``rosbag2_2026_...`` stay apart)."""
    name = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in os.path.basename(path))
    return f'{name[:60]}-{hashlib.sha256(path.encode()).hexdigest()[:8]}'
