import os
os.environ.setdefault('MPLBACKEND', 'Agg')

def pytest_configure(config):
    config.addinivalue_line('markers', 'nbdev: drives the nbdev 2 / execnb toolchain (skipped by CI after fastai/fastcore are upgraded)')
