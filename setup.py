"""Package metadata for dlcourse, read from settings.ini (nbdev 2 layout).

Pins, and why:
- fastai >=2.7.14, fastcore >=1.5.29: no upper bound for users (`pip install dlcourse` keeps a newer fastai);
  CI re-runs pytest and the main job after upgrading both to the newest releases (.ci/run).
- dev only: nbdev >=2.4.2,<2.5 and execnb <0.2 (nbdev 3 refuses settings.ini; nbdev 2.4.x needs execnb 0.1),
  fastcore <1.15 (nbdev 2.4.x breaks with fastcore 1.15+) and so fastai <=2.8.7 (the newest that accepts it);
  jupyterlab to run the chapters.
- pypandoc-binary ==1.17 (dev only): the pandoc that turns the processed index notebook into README.md;
  pinned so the generated README does not change with the pandoc version.
- torch / torchvision: unpinned, taken from the package registry (their CUDA builds also run on CPU).
"""
from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = 'version description keywords author author_email'.split()
missing = [o for o in expected if o not in cfg]
if missing: raise KeyError(f"settings.ini is missing {missing}")

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['0 - Pre-Planning', '1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable']
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
lic = licenses[cfg['license']]
min_python = cfg['min_python']
console_scripts = cfg.get('console_scripts', '').split()

setuptools.setup(
    name=cfg['lib_name'],
    license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1],
                 'Natural Language :: ' + cfg['language'].title()]
                + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['dlcourse', 'dlcourse.*']),
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': console_scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    version=cfg['version'], description=cfg['description'], keywords=cfg['keywords'],
    author=cfg['author'], author_email=cfg['author_email'],
)
