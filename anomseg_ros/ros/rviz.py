"""The RViz layout for the topics a launch actually uses (ROS-free: text in, file out)."""
import hashlib
import os

TEMPLATE_IMAGE = '/camera/image_raw'
TEMPLATE_NAMESPACE = '/anomseg/'


def rviz_config_text(template: str, *, image: str, namespace: str) -> str:
    """``template`` (written for image /camera/image_raw and namespace anomseg) with the topics
    of ``image`` and ``namespace``: each ``Value:`` line is rewritten once, so an image topic
    under ``/anomseg/`` is not rewritten again as an output."""
    prefix = '/' + namespace.strip('/') + '/' if namespace.strip('/') else '/'
    image = image if image.startswith('/') else prefix + image
    lines = []
    for line in template.splitlines(keepends=True):
        head, found, value = line.partition('Value: ')
        topic = value.rstrip('\r\n')
        if found and topic == TEMPLATE_IMAGE:
            line = f'{head}Value: {image}{value[len(topic):]}'
        elif found and topic.startswith(TEMPLATE_NAMESPACE):
            line = f'{head}Value: {prefix}{topic[len(TEMPLATE_NAMESPACE):]}{value[len(topic):]}'
        lines.append(line)
    return ''.join(lines)


def write_rviz_config(template_path: str, *, image: str, namespace: str) -> str:
    """The layout at ``template_path`` for these topics, in the user's cache folder under a
    name made from them: the same launch writes the same file again, none is left behind per
    launch."""
    with open(template_path, encoding='utf-8') as template:
        text = rviz_config_text(template.read(), image=image, namespace=namespace)
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    folder = os.path.join(base, 'anomseg_ros', 'rviz')
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = os.path.join(folder, f'anomseg_{digest}.rviz')
    temporary = f'{path}.{os.getpid()}.tmp'
    with open(temporary, 'w', encoding='utf-8') as config:
        config.write(text)
    os.replace(temporary, path)
    return path
