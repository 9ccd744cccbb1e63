"""With the Cityscapes ERFNet of ../shared/data, reproduce REFERENCE.md on RoadAnomaly21."""
import pytest

from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.evaluation.anomaly import evaluate_anomaly
from anomseg_ros.pipeline import Detector

# ../shared/data/REFERENCE.md, RoadAnomaly21 row: (AuPRC, FPR95) in %
REFERENCE_ROAD_ANOMALY21 = {'msp': (28.89, 66.86), 'maxlogit': (39.41, 62.19),
                            'maxentropy': (31.06, 67.03)}


@pytest.mark.slow
def test_road_anomaly21_matches_reference_within_one_point(shared_data):
    detector = Detector.from_checkpoint(f'{shared_data}/weights/erfnet_cityscapes_approx.pth',
                                        device='cpu', input_size_hw=(512, 1024))
    dataset = AnomalyDataset(f'{shared_data}/Validation_Dataset/RoadAnomaly21')
    assert len(dataset) == 10
    results = evaluate_anomaly(detector, dataset, list(REFERENCE_ROAD_ANOMALY21),
                               resolution='network')
    for scorer, (auprc, fpr95) in REFERENCE_ROAD_ANOMALY21.items():
        assert 100 * results[scorer]['auprc'] == pytest.approx(auprc, abs=1.0), scorer
        assert 100 * results[scorer]['fpr95'] == pytest.approx(fpr95, abs=1.0), scorer
