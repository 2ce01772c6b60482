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
