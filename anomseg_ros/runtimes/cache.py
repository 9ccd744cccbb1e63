"""The OpenVINO IR cache: PyTorch checkpoints converted once, written atomically, verified
before every use (ROS-free).

An entry is a folder ``<cache_dir()>/<key>/`` holding ``model.xml``, ``model.bin`` and
``manifest.json``. It is built in a temporary folder beside it, each file flushed to disk,
then renamed into place in one step, so an entry is either whole or absent: a conversion
killed half-way leaves only a temporary folder, removed at a later start.

Before use, an entry is verified against its manifest: the format, the package version, the
revision of the export, the SHA-256 of the checkpoint it was made from, the backbone, the
input size, the IR's precision and the SHA-256 of both IR files. One that does not verify is
rebuilt, with one warning that says why. A cache folder that cannot be written (read-only,
full) means the model is converted into a temporary folder and runs uncached, with one
warning; never a failed start.

What the check defends against, and what it cannot:

- a half-written, truncated or bit-flipped entry, and an entry of another package version or
  export revision: its hashes or fields do not match, so it is rebuilt;
- another model's IR put under this key (copied, renamed, or swapped for one file only): the
  manifest's checkpoint hash, which is compared with the hash of the checkpoint being loaded,
  or the hashes of the files do not match, and the IR's own metadata (backbone, classes) is
  compared with the checkpoint's once loaded;
- it cannot defend against someone who can write the cache folder and writes a consistent
  entry on purpose (an IR, and a manifest with its hashes). That person can also replace the
  user's checkpoint or code. The folder is created private to the user (mode 0700); keep it so,
  or point ``XDG_CACHE_HOME`` at a folder only you can write.
"""
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from typing import Callable, Optional, Tuple

from anomseg_ros import __version__
from anomseg_ros.logs import get_logger

log = get_logger('anomseg_ros.runtimes')

MANIFEST_FORMAT = 'anomseg_ros.ir_cache/1'
FILES = ('model.xml', 'model.bin')
TEMPORARY_PREFIX = '.tmp-'


def cache_dir() -> str:
    """Where converted and compiled OpenVINO models are kept, so a second start skips both."""
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'anomseg_ros', 'openvino')


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _writable_root(root: str) -> Optional[str]:
    """``root`` made (private to the user) if it can hold a new entry; else None and why."""
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        probe = os.path.join(root, f'{TEMPORARY_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex}')
        with open(probe, 'wb') as stream:
            stream.write(b'\0' * 4096)
            stream.flush()
            os.fsync(stream.fileno())
        os.remove(probe)
        return None
    except OSError as exc:
        return f'{type(exc).__name__}: {exc.strerror or exc}'


def _remove_stale_temporaries(root: str) -> None:
    """Temporary folders of conversions whose process is gone (killed half-way)."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(TEMPORARY_PREFIX):
            continue
        try:
            pid = int(name[len(TEMPORARY_PREFIX):].split('-')[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class IrCache:
    """Entries under ``root`` (default ``cache_dir()``); ``fields`` are what an entry must
    match besides its files' hashes (checkpoint hash, backbone, input size, ...)."""

    def __init__(self, root: Optional[str] = None):
        self.root = root or cache_dir()

    @property
    def compiled_dir(self) -> Optional[str]:
        """Where OpenVINO keeps compiled blobs (its own CACHE_DIR), or None when the cache
        folder cannot be written."""
        folder = os.path.join(self.root, 'compiled')
        return folder if _writable_root(folder) is None else None

    def manifest(self, fields: dict) -> dict:
        return {'format': MANIFEST_FORMAT, 'package_version': __version__, **fields}

    def verify(self, entry: str, fields: dict) -> Optional[str]:
        """None when ``entry`` is whole and made from what ``fields`` describe, else why not."""
        path = os.path.join(entry, 'manifest.json')
        if not os.path.isdir(entry):
            return 'not cached yet'
        try:
            with open(path) as stream:
                recorded = json.load(stream)
        except (OSError, ValueError) as exc:
            return f'its manifest cannot be read ({type(exc).__name__})'
        if not isinstance(recorded, dict):
            return 'its manifest is not a JSON object'
        for key, value in self.manifest(fields).items():
            if recorded.get(key) != value:
                return f'it was made for {key} {recorded.get(key)!r}, not {value!r}'
        for name in FILES:
            file = os.path.join(entry, name)
            if not os.path.isfile(file):
                return f'{name} is missing'
            if file_sha256(file) != recorded.get('sha256', {}).get(name):
                return f'{name} does not match the hash in its manifest (truncated, damaged ' \
                       f'or replaced)'
        return None

    def get(self, key: str, fields: dict, build: Callable[[str], None]) -> Tuple[str, str]:
        """``(xml path, note)`` of a verified entry ``key``, built by ``build(xml_path)`` when
        there is none or it does not verify. ``note`` is '' for a cache hit or a first build,
        else the one line that was warned (rebuilt, or uncached)."""
        entry = os.path.join(self.root, key)
        problem = self.verify(entry, fields)
        if problem is None:
            return os.path.join(entry, FILES[0]), ''
        first_build = problem == 'not cached yet'
        if first_build:
            log.info(f'converting the model to OpenVINO ({key}): the first start with this '
                     f'checkpoint and input size; later starts read {self.root}')
        note = '' if first_build else \
            f'the cached OpenVINO model {entry} was rebuilt: {problem}'
        unwritable = _writable_root(self.root)
        if unwritable is not None:
            note = f'the OpenVINO cache folder {self.root} cannot be written ({unwritable}): ' \
                   f'the model is converted for this run only (start-up takes longer each time)'
            log.warning(note)
            folder = tempfile.mkdtemp(prefix='anomseg_ir_')
            build(os.path.join(folder, FILES[0]))
            return os.path.join(folder, FILES[0]), note
        _remove_stale_temporaries(self.root)
        temporary = os.path.join(self.root, f'{TEMPORARY_PREFIX}{os.getpid()}-{uuid.uuid4().hex}')
        os.makedirs(temporary, mode=0o700)
        try:
            build(os.path.join(temporary, FILES[0]))
            hashes = {}
            for name in FILES:
                _fsync(os.path.join(temporary, name))
                hashes[name] = file_sha256(os.path.join(temporary, name))
            manifest = os.path.join(temporary, 'manifest.json')
            with open(manifest, 'w') as stream:
                json.dump({**self.manifest(fields), 'sha256': hashes}, stream, indent=1)
                stream.flush()
                os.fsync(stream.fileno())
            if os.path.isdir(entry):
                shutil.rmtree(entry, ignore_errors=True)  # it did not verify
            try:
                os.rename(temporary, entry)  # one step: the entry is whole or absent
            except OSError:  # another process put a whole one there meanwhile
                if self.verify(entry, fields) is not None:
                    raise
                shutil.rmtree(temporary, ignore_errors=True)
            _fsync(self.root)
        except OSError as exc:  # the disk filled up while writing: run uncached
            shutil.rmtree(temporary, ignore_errors=True)
            note = f'the OpenVINO cache folder {self.root} cannot be written ' \
                   f'({type(exc).__name__}: {exc.strerror or exc}): the model is converted ' \
                   f'for this run only'
            log.warning(note)
            folder = tempfile.mkdtemp(prefix='anomseg_ir_')
            build(os.path.join(folder, FILES[0]))
            return os.path.join(folder, FILES[0]), note
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        if note:
            log.warning(note)
        return os.path.join(entry, FILES[0]), note
