"""The synthetic road world: procedural street scenes with Cityscapes labels, anomaly tracks in
the benchmarks' layouts, and a disjoint outlier family for training (ROS-free)."""
from anomseg_ros.data.synthetic.scene import render_scene
from anomseg_ros.data.synthetic.tracks import render_outlier, render_track_sample, TRACKS
from anomseg_ros.data.synthetic.writer import generate, PARTS

__all__ = ['render_scene', 'render_track_sample', 'render_outlier', 'generate', 'TRACKS',
           'PARTS']
