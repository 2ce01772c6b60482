"""The `dlcourse` console command, end to end in a subprocess."""
import subprocess, sys, os
from pathlib import Path
import pandas as pd

def dlc(*args, cwd=None):
    exe = Path(sys.executable).parent/'dlcourse'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())']
    env = {**os.environ, 'MPLBACKEND': 'Agg'}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=600)

def test_list_shows_experiments():
    r = dlc('list')
    assert r.returncode == 0, r.stderr
    assert 'mlp-digits' in r.stdout and 'lenet-digits' in r.stdout

def test_run_writes_table_csv_and_plots(tmp_path):
    r = dlc('run', 'mlp-digits', '--epochs', '2', '--out', str(tmp_path/'out'))
    assert r.returncode == 0, r.stderr
    assert 'mlp256' in r.stdout and 'valid_accuracy' in r.stdout and 'data: embedded' in r.stdout
    df = pd.read_csv(tmp_path/'out'/'results.csv')
    assert df.name.tolist() == ['mlp16', 'mlp64', 'mlp256'] and (df.epochs == 2).all()
    assert (df.test_accuracy > 0.5).all()                       # they learned something in 2 epochs
    for f in ('history.csv', 'curves.png', 'compare.png'):
        assert (tmp_path/'out'/f).stat().st_size > 0

def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('dlcourse: error:'), r.stderr
    assert 'Traceback' not in r.stderr
    for n in needles: assert n in err[0], err[0]

def test_unknown_experiment():
    _one_line_error(dlc('run', 'no-such-thing'), "unknown experiment 'no-such-thing'", 'valid:', 'mlp-digits')

def test_bad_values():
    _one_line_error(dlc('run', 'mlp-digits', '--epochs', '-3'), 'positive integer')
    _one_line_error(dlc('run', 'mlp-digits', '--dataset', 'imdb'), 'valid: digits')
    _one_line_error(dlc('run', 'mlp-digits', '--scale', 'huge'), 'smoke', 'full')
    _one_line_error(dlc('bogus'), 'invalid choice')
    _one_line_error(dlc('fetch', 'mnist'), 'valid:', 'cifar10')

def test_fetch_offline_explains(tmp_path):
    env_cache = tmp_path/'cache'
    exe = Path(sys.executable).parent/'dlcourse'
    r = subprocess.run([str(exe), 'fetch', 'cifar10-jpeg'], capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'DLCOURSE_DATA': str(env_cache), 'DLCOURSE_LOCAL_DATA': ''})
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert str(env_cache/'cifar10-jpeg'/'cifar10-jpeg.zip') in r.stderr and 'sha256:05b4c8c8' in r.stderr

def test_commands_that_do_not_train_are_fast_and_import_no_torch():
    probe = ("import sys, time; t = time.perf_counter(); from dlcourse.cli import main; rc = main(sys.argv[1:]); "
             "print(f'{time.perf_counter() - t:.3f}', 'torch' in sys.modules, 'fastai' in sys.modules, file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k not in ('IN_TEST', 'DLCOURSE_THREADS', 'PYTEST_CURRENT_TEST')}
    for args in (['list'], ['datasets'], ['run', 'nope'], ['bogus']):
        r = subprocess.run([sys.executable, '-c', probe, *args], capture_output=True, text=True, env=env, timeout=60)
        secs, torch_loaded, fastai_loaded = r.stderr.split()[-3:]
        assert (torch_loaded, fastai_loaded) == ('False', 'False'), (args, r.stderr)
        assert float(secs) < 1.5, (args, secs)          # ~0.1-0.3 s on an idle 2-core machine; slack for a busy CI

# --- outputs: checked before training, written as one set, Ctrl-C and NaN (fault injection) ---
import json, shutil, tempfile, contextlib, io
import pytest
from functools import partial

def main_in_process(*args):
    from dlcourse.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()

def test_out_that_is_a_file_fails_before_training(tmp_path):
    f = tmp_path/'results'; f.write_text('x')
    r = dlc('run', 'mlp-digits', '--out', str(f))
    _one_line_error(r, 'exists and is not a folder')
    assert r.stdout == ''                                              # nothing printed, nothing trained
    _one_line_error(dlc('run', 'mlp-digits', '--out', str(f/'sub')), 'is a file, not a folder')

@contextlib.contextmanager
def tmpfs(path, opts):
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', str(path)], capture_output=True).returncode:
        pytest.skip('needs root to mount a tmpfs')
    try: yield path
    finally: subprocess.run(['umount', str(path)])

def test_read_only_out_fails_before_training(tmp_path):
    with tmpfs(tmp_path/'ro', 'ro,size=1m') as ro:
        r = dlc('run', 'mlp-digits', '--out', str(ro/'out'))
        _one_line_error(r, "can't create or write to", 'Read-only file system')
        assert r.stdout == ''

def test_full_disk_leaves_nothing(tmp_path):
    with tmpfs(tmp_path/'small', 'size=48k') as small:
        r = dlc('run', 'mlp-digits', '--epochs', '1', '--out', str(small/'out'))
        assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith('dlcourse: error:') and 'No space left on device' in r.stderr
        assert list(small.iterdir()) == []                             # no partial set, no staging folder

def test_reused_out_is_replaced_as_a_whole_with_a_manifest(tmp_path):
    out = tmp_path/'out'
    assert dlc('run', 'mlp-digits', '--epochs', '1', '--out', str(out)).returncode == 0
    (out/'stale.png').write_bytes(b'from another experiment')
    r = dlc('run', 'mlp-digits', '--epochs', '1', '--seed', '1', '--out', str(out))
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ['compare.png', 'curves.png', 'history.csv', 'manifest.json', 'model.json', 'model.pth', 'results.csv']
    man = json.loads((out/'manifest.json').read_text())
    assert man['complete'] is True and man['experiment'] == 'mlp-digits' and man['args']['seed'] == 1
    from dlcourse.data import file_hash
    assert sorted(man['files']) == [n for n in names if n != 'manifest.json']
    assert all(file_hash(out/f) == v['sha256'] for f, v in man['files'].items())
    assert [p.name for p in tmp_path.iterdir()] == ['out']             # no staging or old folder left beside it

def _two_variants(boom_lr=None, interrupt=False):
    "A study on digits: `ok` trains; `boom` diverges (SGD at `boom_lr`) or Ctrl-C arrives after `ok`."
    from dlcourse.train import compare, mlp, Variant
    from dlcourse.images import image_dls, load_images
    def study(dataset='digits', epochs=None, scale=None, seed=0, cfg=None, info=None, cache=None, device=None):
        dls = image_dls(load_images('digits'), bs=64, device='cpu', augment=None, seed=seed)
        df = compare({'ok': partial(mlp, hidden=(16,))}, dls, epochs=epochs or 2, lr=3e-3, seeds=(seed,), verbose=False)
        if interrupt: raise KeyboardInterrupt
        from dlcourse.train import concat_runs
        boom = compare({'boom': Variant(partial(mlp, hidden=(16,)), lr=boom_lr, opt='sgd')}, dls, epochs=epochs or 2, seeds=(seed,), verbose=False)
        return concat_runs([df, boom])
    return study

@pytest.fixture
def fake_study(monkeypatch):
    import dlcourse.train
    from dlcourse.experiments import EXPERIMENTS, ExperimentSpec
    def install(study):
        monkeypatch.setitem(EXPERIMENTS, 'two-digits', ExperimentSpec('two-digits', 'train:mlp_digits', '02_train', 'test', ('digits',)))
        monkeypatch.setattr(dlcourse.train, 'load_experiment', lambda name: study)
    return install

def test_ctrl_c_exits_130_and_keeps_the_old_set(tmp_path, fake_study):
    out = tmp_path/'out'; out.mkdir(); (out/'results.csv').write_text('old,results\n')
    fake_study(_two_variants(interrupt=True))
    rc, stdout, err = main_in_process('run', 'two-digits', '--out', str(out))
    assert rc == 130 and err.strip().splitlines() == [f"dlcourse: interrupted; nothing was written to {out}"]
    assert [p.name for p in out.iterdir()] == ['results.csv'] and (out/'results.csv').read_text() == 'old,results\n'
    assert [p.name for p in tmp_path.iterdir()] == ['out']             # the staging folder is gone

def test_nan_names_the_variant_and_keeps_the_others(tmp_path, fake_study):
    fake_study(_two_variants(boom_lr=1e8))
    rc, stdout, err = main_in_process('run', 'two-digits', '--epochs', '2', '--out', str(tmp_path/'out'))
    assert rc == 0, err
    lines = [l for l in err.splitlines() if 'diverged' in l]
    assert lines == ["dlcourse: boom (seed 0) diverged in epoch 1: the training loss became NaN or infinite; its row has status 'diverged' and no results"]
    df = pd.read_csv(tmp_path/'out'/'results.csv')
    assert df.name.tolist() == ['ok', 'boom'] and df.status.tolist() == ['ok', 'diverged']
    assert df.valid_accuracy.isna().tolist() == [False, True]
    assert json.loads((tmp_path/'out'/'model.json').read_text())['info']['name'] == 'ok'   # the diverged model is never kept
    assert 'status' in stdout and 'diverged' in stdout

def test_predict_from_a_saved_run(tmp_path):
    from PIL import Image
    from dlcourse.images import digits_data
    out = tmp_path/'run'
    assert dlc('run', 'mlp-digits', '--epochs', '2', '--out', str(out)).returncode == 0
    d = digits_data()
    files = []
    for i in range(3):
        files.append(tmp_path/f'img{i}.png')
        Image.fromarray(d.test[0][i].permute(1, 2, 0).numpy()).resize((48, 48)).save(files[-1])   # another size: resized
    r = dlc('predict', str(out), *map(str, files))
    assert r.returncode == 0, r.stderr
    rows = [l.split('\t') for l in r.stdout.strip().splitlines()]
    assert [x[0] for x in rows] == list(map(str, files)) and all(x[1] in list('0123456789') and 0 < float(x[2]) <= 1 for x in rows)
    assert sum(x[1] == str(int(y)) for x, y in zip(rows, d.test[1][:3])) >= 2
    _one_line_error(dlc('predict', str(out), 'no-such.png'), 'inputs must be image files', 'no-such.png')
    _one_line_error(dlc('predict', str(tmp_path), 'x'), 'holds no saved model')
