"""Training of segmentation backbones on Cityscapes (ROS-free): transforms, losses, the
epoch loop and the ``train.py`` script in the manner of torchvision's segmentation reference."""
