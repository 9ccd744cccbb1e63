"""The RViz layout for the topics a launch actually uses (ROS-free: text in, file out)."""
import os
import tempfile

TEMPLATE_IMAGE = '/camera/image_raw'
TEMPLATE_NAMESPACE = '/anomseg/'


def rviz_config_text(template: str, *, image: str, namespace: str) -> str:
    """``template`` (written for image /camera/image_raw and namespace anomseg) with the topics
    of ``image`` and ``namespace``."""
    prefix = '/' + namespace.strip('/') + '/' if namespace.strip('/') else '/'
    image = image if image.startswith('/') else prefix + image
    return (template.replace(f'Value: {TEMPLATE_IMAGE}', f'Value: {image}')
            .replace(f'Value: {TEMPLATE_NAMESPACE}', f'Value: {prefix}'))


def write_rviz_config(template_path: str, *, image: str, namespace: str) -> str:
    """A copy of the layout at ``template_path`` for these topics, in a temporary file."""
    with open(template_path, encoding='utf-8') as template:
        text = rviz_config_text(template.read(), image=image, namespace=namespace)
    handle, path = tempfile.mkstemp(prefix='anomseg_', suffix='.rviz')
    with os.fdopen(handle, 'w', encoding='utf-8') as config:
        config.write(text)
    return path
