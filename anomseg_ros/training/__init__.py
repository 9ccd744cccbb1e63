"""Training (ROS-free): segmentation backbones on Cityscapes in the manner of torchvision's
segmentation reference (``train(TrainConfig(...))``), and the learned anomaly methods on a
trained model (``train_anomaly.train_anomaly(AnomalyTrainConfig(...), Method.Options(...))``);
transforms, losses and the epoch loop."""
from anomseg_ros.training.config import AnomalyTrainConfig, TrainConfig
from anomseg_ros.training.train import train

__all__ = ['AnomalyTrainConfig', 'TrainConfig', 'train']
