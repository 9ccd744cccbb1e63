"""The synthetic road world: deterministic, fully labelled, anomalies only where drawn."""
import os

import numpy as np
import pytest

from anomseg_ros.cli.main import main
from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.data.images import read_label
from anomseg_ros.data.synthetic import anomalies, render_outlier, render_scene, \
    render_track_sample
from anomseg_ros.data.synthetic.anomalies import OUTLIER_SHAPES, OUTLIER_TEXTURES, \
    TEST_SHAPES, TEST_TEXTURES


@pytest.mark.parametrize('size_wh', [(1024, 512), (320, 240), (200, 100)])
def test_scene_is_deterministic_and_every_pixel_labelled(size_wh):
    image, label, _, _ = render_scene(np.random.default_rng(3), *size_wh)
    again, label_again, _, _ = render_scene(np.random.default_rng(3), *size_wh)
    assert image.shape == (size_wh[1], size_wh[0], 3) and label.shape == image.shape[:2]
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(label, label_again)
    assert set(np.unique(label)) <= set(range(19)) | {255}
    other, _, _, _ = render_scene(np.random.default_rng(4), *size_wh)
    assert not np.array_equal(image, other)


def test_scenes_cover_the_cityscapes_classes():
    seen = set()
    for seed in range(40):
        seen |= set(np.unique(render_scene(np.random.default_rng(seed), 512, 256)[1]).tolist())
    assert set(range(19)) <= seen, f'classes never drawn: {set(range(19)) - seen}'


@pytest.mark.parametrize('track', ['obstacle', 'anomaly', 'blended'])
def test_track_labels_mark_exactly_the_drawn_anomalies(track, monkeypatch):
    drawn = []
    original = anomalies.paste

    def recording_paste(image, label, rgb, mask, bottom_center, label_value, **kw):
        alpha = original(image, label, rgb, mask, bottom_center, label_value, **kw)
        drawn.append(alpha)
        return alpha
    monkeypatch.setattr(anomalies, 'paste', recording_paste)
    for seed in range(4):
        drawn.clear()
        image, label, info = render_track_sample(track, np.random.default_rng(seed), 512, 256)
        assert set(np.unique(label)) <= {0, 1, 255}
        assert info['anomaly_pixels'] == (label == 1).sum() > 0
        painted = np.max(drawn, axis=0) >= 0.5
        assert not (label == 1)[~painted].any(), 'anomaly label where nothing was drawn'
        if track == 'obstacle':  # like RoadObstacle21: off the road is void
            assert (label == 255).mean() > 0.3


def test_blended_objects_change_only_where_pasted():
    base, _, _, _ = render_scene(np.random.default_rng(7), 512, 256)
    image, label, _ = render_track_sample('blended', np.random.default_rng(7), 512, 256)
    changed = (image != base).any(axis=2)
    assert changed[label == 1].mean() > 0.9
    assert not changed[(label == 0)].any()


def test_outlier_family_is_disjoint_from_the_test_anomalies():
    assert not set(TEST_SHAPES) & set(OUTLIER_SHAPES)
    assert not set(TEST_TEXTURES) & set(OUTLIER_TEXTURES)
    cutout = render_outlier(np.random.default_rng(0))
    assert cutout.shape[2] == 4 and cutout[..., 3].any() and not cutout[..., 3].all()


def test_synth_writes_the_layouts_and_resumes(tmp_path, capsys):
    args = ['synth', str(tmp_path), '--train', '3', '--val', '2', '--obstacle', '2',
            '--anomaly', '2', '--blended', '2', '--outliers', '2', '--size', '128x64',
            '--workers', '1']
    assert main(args) == 0
    assert '13 written' in capsys.readouterr().out
    images = tmp_path / 'cityscapes' / 'leftImg8bit' / 'train' / 'synth0'
    labels = tmp_path / 'cityscapes' / 'gtFine' / 'train' / 'synth0'
    assert sorted(os.listdir(images))[0] == 'synth0_000000_000019_leftImg8bit.png'
    label = read_label(str(labels / 'synth0_000000_000019_gtFine_labelTrainIds.png'))
    assert label.shape == (64, 128)
    for track in ('obstacle', 'anomaly', 'blended'):
        dataset = AnomalyDataset(str(tmp_path / 'tracks' / track))
        assert len(dataset) == 2
        assert all((lab == 1).any() for _, _, lab in dataset)
    first = (images / 'synth0_000000_000019_leftImg8bit.png').read_bytes()
    (images / 'synth0_000001_000019_leftImg8bit.png').unlink()  # an interrupted run
    assert main(args) == 0
    assert '1 written, 12 already there' in capsys.readouterr().out
    assert (images / 'synth0_000000_000019_leftImg8bit.png').read_bytes() == first


def test_a_tram_shows_what_a_bus_has_not():
    """From behind a tram is a long box like a bus; its pantograph (labelled with it), rails
    and contact wire (image only, the rails stay road) are what tell the two apart."""
    from anomseg_ros.data.synthetic import objects, scene
    from anomseg_ros.data.synthetic.camera import Camera
    from anomseg_ros.data.synthetic.canvas import Canvas

    cam = Camera(512, 256, focal_px=450.0, horizon_px=110.0, height_m=1.5)
    street = scene.Street(road_left=-5.0, road_right=5.0, sidewalk_left=2.0, sidewalk_right=2.0,
                          terrain_left=0.0, terrain_right=0.0, curve=0.0, lanes=2)
    roof_row = cam.v(objects.TRAM_HEIGHT, 20.0)
    for draw, label in ((objects.train, objects.TRAIN), (objects.bus, objects.BUS)):
        canvas = Canvas(512, 256, np.random.default_rng(0))
        draw(canvas, cam, 0.0, 20.0)
        rows = np.nonzero((canvas.label == label).any(axis=1))[0]
        above_roof = rows.min() < roof_row - 5
        assert above_roof == (label == objects.TRAIN), 'only the tram reaches above its roof'

    canvas = Canvas(512, 256, np.random.default_rng(0))
    canvas.rect(0, cam.horizon_px, 512, 256, (90, 90, 90), objects.ROAD)
    before_image, before_label = canvas.image.copy(), canvas.label.copy()
    scene.tramway(canvas, cam, street, 0.0, 3.0, 20.0)
    np.testing.assert_array_equal(canvas.label, before_label)
    changed = (canvas.image != before_image).any(axis=2)
    rail_row = int(cam.v(0.0, 6.0))  # both rails cross this row, near the lane's centre
    rail_cols = np.nonzero(changed[rail_row])[0]
    assert len(rail_cols) and abs(rail_cols.mean() - cam.u(0.0, 6.0)) < 3
    assert rail_cols.min() < cam.u(0.0, 6.0) < rail_cols.max()
    beyond = int(cam.v(0.0, 30.0))  # past the tram the ground is untouched
    assert not changed[beyond:int(cam.v(0.0, 21.0))].any()
    assert changed[:int(cam.horizon_px)].any(), 'the contact wire above the road'


def test_an_approach_keeps_its_objects_and_renews_the_noise():
    from anomseg_ros.data.synthetic.tracks import render_approach
    from anomseg_ros.obstacles import find_obstacles, ObstacleTracker
    frames = list(render_approach('anomaly', np.random.default_rng(3), frames=4, width=256,
                                  height=128))
    assert len(frames) == 4
    labels = [label for _, label, _ in frames]
    assert all((label == 1).any() for label in labels)
    # the objects grow a little and stay where they were: consecutive labels overlap
    for a, b in zip(labels, labels[1:]):
        inter = ((a == 1) & (b == 1)).sum()
        assert inter / max((a == 1).sum(), (b == 1).sum()) > 0.6
        assert (b == 1).sum() >= (a == 1).sum() * 0.95
    # without motion, two frames differ by their own sensor noise only
    still = [image.astype(np.float32) for image, _, _ in render_approach(
        'anomaly', np.random.default_rng(3), frames=2, width=256, height=128, zoom=0.0)]
    difference = np.abs(still[0] - still[1])
    assert 0.5 < difference.mean() < 12
    # the labelled objects persist for the tracker: confirmed from the k-th frame on
    tracker = ObstacleTracker(3, 4)
    confirmed = [tracker.update(find_obstacles(label == 1, label.astype(np.float32),
                                               min_area=4)) for label in labels]
    assert not confirmed[0] and not confirmed[1] and confirmed[2] and confirmed[3]
    with pytest.raises(ValueError, match='at least one frame'):
        next(render_approach('anomaly', np.random.default_rng(0), frames=0))
