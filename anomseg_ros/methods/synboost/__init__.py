"""SynBoost (paper 002): re-synthesis from the predicted labels, an uncertainty-guided
dissimilarity network and a grid-searched ensemble, on top of a frozen segmentation model.

``maps.py`` (H, D, V), ``networks.py`` (feature extractor, generator, dissimilarity network),
``model.py`` (the whole network), ``data.py`` (the training data generator), ``ensemble.py``
(the grid search) and ``method.py`` (the registered method and its scorers)."""
from anomseg_ros.methods.synboost import method  # noqa: F401  (registers it)
