"""What a fleet run leaves for people: ``summary.md`` with ``summary.png``, ``mined.md``, and
the regression gate between two runs (``compare``)."""
import json
import os
from typing import Dict, List, Tuple

from anomseg_ros.errors import DatasetError

RUN = 'run.json'


def _pct(value, digits: int = 2) -> str:
    return '-' if value is None else f'{100 * value:.{digits}f}'


def _num(value, digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def pooled_table(pooled: Dict[str, dict]) -> List[str]:
    rows = ['| scorer | labelled bags | AuPRC | FPR95 | mask precision | mask recall | '
            'flagged % (all bags) |', '| --- | --- | --- | --- | --- | --- | --- |']
    for scorer, entry in pooled.items():
        rows.append(f'| {scorer} | {entry["labelled_bags"]} / {entry["bags"]} | '
                    f'{_pct(entry.get("auprc"))} | {_pct(entry.get("fpr95"))} | '
                    f'{_pct(entry.get("mask_precision"))} | {_pct(entry.get("mask_recall"))} | '
                    f'{_pct(entry.get("flagged_share"), 3)} |')
    return rows


def bag_table(lines: List[dict], scorer: str) -> List[str]:
    rows = [f'| bag | status | frames | frames/s | {scorer} AuPRC | FPR95 | flagged % | '
            f'obstacles / min |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for line in lines:
        entry = line.get('scorers', {}).get(scorer, {})
        fps = line['frames'] / line['seconds'] if line.get('seconds') and \
            line.get('frames') else None
        rows.append(f'| {os.path.basename(line["bag"])} | {line["status"]} | '
                    f'{line.get("frames", "-")} | {_num(fps, 1)} | {_pct(entry.get("auprc"))} | '
                    f'{_pct(entry.get("fpr95"))} | {_pct(entry.get("flagged_share"), 3)} | '
                    f'{_num(line.get("obstacles_per_minute"), 1)} |')
    return rows


def write_summary(out: str, lines: List[dict], pooled: Dict[str, dict], run: dict) -> str:
    """``summary.md`` and ``summary.png`` in ``out``; returns the markdown's path."""
    scorer = run['scorers'][0]
    failed = [line for line in lines if line['status'] == 'error']
    damaged = [line for line in lines if line['status'] == 'damaged']
    text = [f'# Fleet results: {len(lines)} bags', '',
            f'Weights `{run["weights"]}` (SHA-256 {run["weights_sha256"][:12]}), scorers '
            f'{", ".join(run["scorers"])}, {run["engine"]} with {run["workers"]} worker(s); '
            f'{run["frames"]} frames scored in this run in {run["seconds"]:.1f} s.', '',
            '## Pooled over all labelled bags', '', *pooled_table(pooled), '',
            '## Per bag', '', *bag_table(lines, scorer), '', '![per bag](summary.png)', '']
    if failed or damaged:
        text += ['## Bags that could not be scored, or only in part', '']
        text += [f'- `{line["bag"]}`: {line.get("error") or line.get("damage_text", "")}'
                 for line in failed + damaged]
        text.append('')
    path = os.path.join(out, 'summary.md')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(text))
    _plot(os.path.join(out, 'summary.png'), lines, scorer)
    return path


def _plot(path: str, lines: List[dict], scorer: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    scored = [line for line in lines if line['status'] != 'error']
    names = [os.path.basename(line['bag'])[:24] for line in scored]
    auprc = [100 * line['scorers'][scorer]['auprc'] if line['scorers'][scorer].get('auprc')
             is not None else float('nan') for line in scored]  # no bar without labels
    flagged = [100 * (line['scorers'][scorer].get('flagged_share') or 0) for line in scored]
    figure, axes = plt.subplots(1, 2, figsize=(max(8, 0.5 * len(names) + 4), 4))
    for axis, values, title in ((axes[0], auprc, f'{scorer} AuPRC % (labelled bags)'),
                                (axes[1], flagged, f'{scorer} flagged pixels %')):
        axis.bar(range(len(names)), values, color='#c0392b')
        axis.set_xticks(range(len(names)), names, rotation=70, fontsize=7, ha='right')
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def mined(lines: List[dict], top: int) -> List[dict]:
    """The fleet's ``top`` frames, largest obstacle on the road first, then the road's flagged
    share; each with its bag and stamp."""
    frames = [dict(candidate, bag=line['bag'], topic=line.get('image_topic'))
              for line in lines if line['status'] != 'error'
              for candidate in line.get('candidates', [])]
    frames.sort(key=lambda c: (-c['largest_obstacle_px'], -c['road_flagged_share'],
                               c['bag'], c['stamp_ns']))
    return frames[:top]


def write_mined(out: str, frames: List[dict]) -> str:
    with open(os.path.join(out, 'mined.jsonl'), 'w', encoding='utf-8') as handle:
        for frame in frames:
            handle.write(json.dumps(frame, sort_keys=True) + '\n')
    text = ['# Frames worth labelling', '',
            'Largest obstacle on the drivable region first (pixels of the obstacle mask inside '
            'the road), then the share of the road flagged. Each picture: the mask over the '
            'frame | the anomaly score.', '']
    for rank, frame in enumerate(frames, 1):
        text += [f'## {rank}. `{os.path.basename(frame["bag"])}` {frame["topic"] or ""} stamp '
                 f'{frame["stamp_ns"]}', '',
                 f'largest obstacle {frame["largest_obstacle_px"]} px, road flagged '
                 f'{100 * frame["road_flagged_share"]:.2f} %, {frame["obstacles"]} obstacles; '
                 f'bag `{frame["bag"]}`', '', f'![frame {rank}]({frame["thumbnail"]})', '']
    path = os.path.join(out, 'mined.md')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(text))
    return path


# --- the regression gate -----------------------------------------------------------------------

def load_run(folder: str) -> Tuple[dict, dict, Dict[str, dict]]:
    """``(run, pooled, lines by bag)`` of a finished fleet run's folder."""
    from anomseg_ros.fleet.store import ResultStore
    try:
        with open(os.path.join(folder, RUN), encoding='utf-8') as handle:
            run = json.load(handle)
        with open(os.path.join(folder, 'pooled.json'), encoding='utf-8') as handle:
            pooled = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DatasetError(f'{folder!r} holds no finished fleet run ({exc}); run anomseg '
                           f'fleet eval --out {folder} first') from None
    store = ResultStore(folder, create=False)
    lines = {line['bag']: line for line in store.current(run['bags'], run['config'])}
    return run, pooled, lines


METRICS = (('auprc', 'AuPRC', 1), ('fpr95', 'FPR95', -1))  # +1: higher is better


def compare(old_dir: str, new_dir: str, *, max_drop: float = 1.0) -> Tuple[List[str], List[str]]:
    """``(report lines, failures)``: per-bag and pooled changes in percentage points; a pooled
    metric that got worse by more than ``max_drop`` points, or a bag scored in OLD that
    failed or is missing in NEW, is a failure."""
    old_run, old_pooled, old_lines = load_run(old_dir)
    new_run, new_pooled, new_lines = load_run(new_dir)
    scorers = [s for s in old_run['scorers'] if s in new_run['scorers']]
    if not scorers:
        raise DatasetError(f'the runs share no scorer: {old_run["scorers"]} against '
                           f'{new_run["scorers"]}')
    report, failures = [], []
    report.append(f'OLD {old_dir}: weights {old_run["weights_sha256"][:12]}; NEW {new_dir}: '
                  f'weights {new_run["weights_sha256"][:12]}; gate: a pooled metric worse by '
                  f'more than {max_drop:g} points, or a bag newly failing')
    report.append('pooled (percentage points):')
    for scorer in scorers:
        for key, name, sign in METRICS:
            old, new = old_pooled.get(scorer, {}).get(key), new_pooled.get(scorer, {}).get(key)
            if old is None or new is None:
                continue
            change = 100 * (new - old)
            worse = -sign * change
            verdict = 'WORSE' if worse > max_drop else 'ok'
            report.append(f'  {scorer:<18} {name:<6} {100 * old:7.2f} -> {100 * new:7.2f} '
                          f'({change:+.2f}) {verdict}')
            if worse > max_drop:
                failures.append(f'pooled {scorer} {name} {100 * old:.2f} -> {100 * new:.2f} '
                                f'({change:+.2f} points, more than {max_drop:g} worse)')
    report.append('per bag:')
    for bag, old_line in old_lines.items():
        new_line = new_lines.get(bag)
        name = os.path.basename(bag)
        if new_line is None:
            report.append(f'  {name}: not in NEW')
            if old_line['status'] != 'error':
                failures.append(f'{bag}: scored in OLD, not in NEW')
            continue
        if new_line['status'] == 'error' and old_line['status'] != 'error':
            report.append(f'  {name}: NEWLY FAILS: {new_line.get("error")}')
            failures.append(f'{bag}: newly fails ({new_line.get("error")})')
            continue
        changes = []
        for scorer in scorers:
            for key, label, _ in METRICS:
                old = old_line.get('scorers', {}).get(scorer, {}).get(key)
                new = new_line.get('scorers', {}).get(scorer, {}).get(key)
                if old is not None and new is not None:
                    changes.append(f'{scorer} {label} {100 * (new - old):+.2f}')
        changed = '' if old_line.get('fingerprint') == new_line.get('fingerprint') else \
            ' (the bag changed between the runs)'
        report.append(f'  {name}: {new_line["status"]}; {", ".join(changes) or "unlabelled"}'
                      f'{changed}')
    return report, failures
