"""Fleet replay: many recorded drives (rosbag2 folders) scored offline by the node's own
``Detector``, one result line per bag, resumable, on Ray or in this process.

- ``bags``: which bags a command means (globs, folders, list files) and their fingerprints.
- ``scoring``: one bag through the detector: pooled histograms, flagged share, obstacles, and
  the frames worth labelling.
- ``store``: the output folder: ``results.jsonl``, the per-bag histograms, pooled metrics,
  ``summary.md`` and the mined frames.
- ``engine``: the bags over Ray actors (one model per worker) or in-process, same results.
- ``compare``: the regression gate between two output folders.
"""
