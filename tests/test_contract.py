"""The experiment contract: every registered study runs offline at smoke scale and returns the one row layout;
no exported name is defined twice."""
import importlib, pkgutil, socket, time, inspect
import pytest
import dlcourse
from dlcourse.experiments import EXPERIMENTS, CONTRACT, load_experiment

MODULES = sorted(m.name for m in pkgutil.iter_modules(dlcourse.__path__) if not m.name.startswith('_'))

def test_no_exported_name_is_defined_twice():
    owners = {}
    for m in MODULES:
        for n in getattr(importlib.import_module(f'dlcourse.{m}'), '__all__', []): owners.setdefault(n, []).append(m)
    assert {n: ms for n, ms in owners.items() if len(ms) > 1} == {}

def test_every_study_is_in_the_table_and_follows_the_contract():
    marked = {}
    for m in MODULES:
        for n, f in vars(importlib.import_module(f'dlcourse.{m}')).items():
            if inspect.isfunction(f) and hasattr(f, 'experiment') and f.__module__ == f'dlcourse.{m}': marked[f.experiment.name] = f
    assert sorted(marked) == sorted(EXPERIMENTS)
    for name in EXPERIMENTS:
        f = load_experiment(name)
        ps = inspect.signature(f).parameters
        assert tuple(ps) == CONTRACT, name
        assert ps['dataset'].default == EXPERIMENTS[name].datasets[0], f"{name}: the table's first dataset is the default"

@pytest.fixture
def offline(monkeypatch, tmp_path):
    "No network, an empty cache, no local copies of real data: a smoke run must use generated fixtures only."
    monkeypatch.setenv('DLCOURSE_DATA', str(tmp_path/'empty-cache'))
    monkeypatch.setenv('DLCOURSE_LOCAL_DATA', '')
    monkeypatch.delenv('DLCOURSE_SCALE', raising=False)
    def no_network(*a, **k): raise AssertionError('a smoke run tried to open a network connection')
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    monkeypatch.setattr(socket, 'create_connection', no_network)

ROW_START = ['name', 'seed', 'epochs', 'initial_loss', 'train_loss']
ROW_END = ['seconds', 's_per_epoch', 'peak_mb', 'params', 'opt', 'lr', 'wd', 'device', 'device_name', 'dlcourse', 'torch']

@pytest.mark.parametrize('name', list(EXPERIMENTS))
def test_experiment_runs_offline_at_smoke_scale(name, offline, tmp_path):
    from dlcourse.train import run_experiment, id_columns, result_columns
    t0 = time.perf_counter()
    df = run_experiment(name, epochs=1, out=tmp_path/'out')
    secs = time.perf_counter() - t0
    cols = list(df.columns)
    assert len(df) >= 1
    for c in ROW_START + ROW_END + ['experiment', 'dataset', 'scale', 'data']: assert c in cols, c
    assert cols.index('name') < cols.index('seed') < cols.index('initial_loss') < cols.index('valid_loss') < cols.index('seconds')
    res = result_columns(df)
    assert 'valid_loss' in res and any(c.startswith('valid_') and c != 'valid_loss' for c in res), res
    assert not {'valid_acc', 'test_acc', 'train_acc'} & set(cols)          # metrics are named after the metric
    assert df.data.str.startswith(('fixture:', 'embedded:')).all() and (df.scale == 'smoke').all()
    assert (tmp_path/'out'/'results.csv').stat().st_size > 0
    assert secs < 30, f"{name} took {secs:.1f}s at smoke scale"
