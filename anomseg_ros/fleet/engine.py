"""Where the bags are scored: Ray actors, each loading the model once, or this process.

With ``workers > 1`` (or a Ray ``address``, or ``RAY_ADDRESS`` set) the bags go to Ray actors:
local Ray on this machine's cores by default (``ray.init()``, no cluster needed), or the
cluster at ``address``. Each actor takes one bag at a time, so a fast worker takes more bags.
An actor killed while scoring a bag is restarted by Ray and the bag tried once more; a bag
that kills its worker twice gets an error line. With one worker, or where Ray is not
installed, the same ``BagScorer`` runs in this process: the numbers are the same.
"""
import os
from typing import Callable, List, Optional

from anomseg_ros.errors import ConfigError
from anomseg_ros.fleet.scoring import BagScorer, FleetConfig

ENGINES = ('auto', 'ray', 'process')


class _Worker:
    """A Ray actor's state: one model for all the bags it is given."""

    def __init__(self, config: FleetConfig, threads: int):
        import torch
        torch.set_num_threads(threads)
        self.scorer = BagScorer(config)

    def describe(self) -> dict:
        import resource
        described = self.scorer.describe()
        described['pid'] = os.getpid()
        described['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return described

    def score(self, path: str) -> dict:
        return self.scorer.score(path)


def ray_available() -> bool:
    import importlib.util
    return importlib.util.find_spec('ray') is not None


def choose_engine(engine: str, workers: int, address: Optional[str]) -> str:
    """``process`` or ``ray`` for what was asked: ``auto`` takes Ray for several workers or a
    cluster address when Ray is installed, and says nothing when it falls back for one."""
    if engine not in ENGINES:
        raise ConfigError(f'engine must be one of {", ".join(ENGINES)}, got {engine!r}')
    wants_ray = workers > 1 or bool(address or os.environ.get('RAY_ADDRESS'))
    if engine == 'ray' or (engine == 'auto' and wants_ray):
        if not ray_available():
            if engine == 'ray' or address:
                raise ConfigError('Ray is not installed: pip install "ray>=2.40", or run with '
                                  '`workers` 1 (in this process)')
            return 'process'
        return 'ray'
    return 'process'


def run_in_process(config: FleetConfig, bags: List[str], on_result: Callable,
                   on_start: Callable = None) -> List[dict]:
    """The same worker as a Ray actor's, here, on this process's threads."""
    import torch
    worker = _Worker(config, torch.get_num_threads())
    if on_start:
        on_start([dict(worker.describe(), engine='process')])
    for bag in bags:
        on_result(bag, worker.score(bag))
    return [dict(worker.describe(), engine='process')]


def run_on_ray(config: FleetConfig, bags: List[str], on_result: Callable, *, workers: int,
               address: Optional[str] = None, cpus_per_worker: Optional[float] = None,
               on_start: Callable = None) -> List[dict]:
    """Score ``bags`` on ``workers`` Ray actors; ``on_result(bag, result)`` runs here, in
    the order bags finish. Returns each worker's description (runtime, pid, peak memory)."""
    import ray
    started_here = not ray.is_initialized()
    if started_here:
        if address or os.environ.get('RAY_ADDRESS'):
            ray.init(address=address or None, logging_level='warning')
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                     logging_level='warning')
    try:
        total = ray.cluster_resources().get('CPU', 1)
        cpus = cpus_per_worker or max(1.0, total // workers)
        actor = ray.remote(num_cpus=cpus, max_restarts=1, max_task_retries=1)(_Worker)
        actors = [actor.remote(config, max(1, int(cpus))) for _ in range(workers)]
        described = ray.get([a.describe.remote() for a in actors])
        for entry in described:
            entry['engine'] = 'ray'
        if on_start:
            on_start(described)
        queue = list(bags)
        pending = {}

        def give(worker):
            bag = queue.pop(0)
            pending[worker.score.remote(bag)] = (bag, worker)

        for worker in actors[:len(queue)]:
            give(worker)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            bag, worker = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # the worker died twice on this bag
                result = {'status': 'error', 'seconds': None,
                          'error': f'the worker scoring it died ({type(exc).__name__}: '
                                   f'{str(exc).splitlines()[0][:200]})'}
                worker = actor.remote(config, max(1, int(cpus)))
            on_result(bag, result)
            if queue:
                give(worker)
        for index, a in enumerate(actors):
            try:
                described[index].update(ray.get(a.describe.remote(), timeout=30))
            except ray.exceptions.RayError:
                pass
        return described
    finally:
        if started_here:
            ray.shutdown()
