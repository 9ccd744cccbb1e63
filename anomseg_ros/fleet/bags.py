"""The bags a fleet command is given, and their names in its output folder; a bag's
fingerprint is ``rosbag_tools.bags.fingerprint``."""
import glob
import hashlib
import os
from typing import List, Tuple


def is_bag(path: str) -> bool:
    return os.path.isfile(os.path.join(path, 'metadata.yaml'))


def expand_bags(specs: List[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """``(bags, problems)`` for ``specs``: bag folders, folders holding bags (searched
    recursively), glob patterns, or text files listing one of those per line (``#``
    comments). Each bag once, in the order given; a spec that names nothing is a problem,
    ``(spec, what is wrong)``, not an error, so the fleet goes on with the rest."""
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
                problems.append((spec, 'a folder with no rosbag2 in it (no metadata.yaml)'))
            for path in found:
                add(path)
            return
        if os.path.isfile(spec) and depth == 0:
            try:
                with open(spec, encoding='utf-8') as handle:
                    lines = [line.split('#', 1)[0].strip() for line in handle]
            except (OSError, UnicodeDecodeError) as exc:
                problems.append((spec, f'the list of bags cannot be read ({exc})'))
                return
            base = os.path.dirname(os.path.abspath(spec))
            for line in filter(None, lines):
                expand(line if os.path.isabs(line) else os.path.join(base, line), depth + 1)
            return
        matches = sorted(glob.glob(spec))
        if not matches or matches == [spec]:
            what = 'is not a rosbag2 folder' if os.path.exists(spec) else 'does not exist'
            problems.append((spec, f'{what} and matches no bag'))
            return
        for match in matches:
            expand(match, depth + 1)

    for spec in specs:
        expand(spec)
    return bags, problems


def bag_id(path: str) -> str:
    """A file-name-safe name of a bag for the output folder: its folder name and a short hash
    of its full path (two drives both called ``rosbag2_2026_...`` stay apart)."""
    name = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in os.path.basename(path))
    return f'{name[:60]}-{hashlib.sha256(path.encode()).hexdigest()[:8]}'
