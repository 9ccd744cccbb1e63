"""Training (ROS-free): segmentation backbones on Cityscapes in the manner of torchvision's
segmentation reference (``train(TrainConfig(...))``), and the learned anomaly methods on a
trained model (``train_anomaly``); transforms, losses and the epoch loop."""
from anomseg_ros.training.config import TrainConfig
from anomseg_ros.training.train import train

__all__ = ['TrainConfig', 'train']
