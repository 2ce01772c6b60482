"Sweeps for real: two worker processes on one SQLite file and on a real PostgreSQL server (started here on 127.0.0.1)."
import glob, os, shutil, socket, subprocess, sys, time
from pathlib import Path
import pytest
from dlcourse.sweep import sweep, grid_points, parse_space

SPACE = ['width=16,32,64', 'lr=1e-2,1e-5']            # 1e-5 learns nothing in 2 epochs: the median pruner stops such trials

def check(df):
    pts = grid_points(parse_space(SPACE))
    assert len(df) == len(pts)                                              # one row per trial
    got = sorted(zip(df.p_width, df.p_lr))
    assert got == sorted((p['width'], p['lr']) for p in pts)               # every grid point exactly once
    assert (df.state == 'pruned').sum() >= 1 and (df.state == 'complete').sum() >= 2
    assert {'trial', 'state', 'value', 'name', 'valid_accuracy', 'seconds', 'params'} <= set(df.columns)
    assert (df.loc[df.state == 'complete', 'value'] == df.loc[df.state == 'complete', 'valid_accuracy']).all()

def test_two_workers_sqlite(tmp_path):
    df = sweep('mlp-digits', SPACE, out=tmp_path, workers=2, epochs=2)
    check(df)
    assert (tmp_path/'sweep.db').exists() and (tmp_path/'results.csv').exists() and (tmp_path/'heatmap.png').exists()
    again = sweep('mlp-digits', SPACE, out=tmp_path, workers=2, epochs=2)   # a finished study runs nothing twice
    assert sorted(again.trial) == sorted(df.trial)

def _pg_bin():
    for d in [os.path.dirname(shutil.which('initdb') or ''), *sorted(glob.glob('/usr/lib/postgresql/*/bin'))]:
        if d and os.path.exists(os.path.join(d, 'pg_ctl')): return d
    return None

@pytest.fixture
def postgres(tmp_path):
    "A throw-away PostgreSQL server on 127.0.0.1 (a free port, a temp data folder), stopped afterwards."
    pytest.importorskip('psycopg', reason='psycopg[binary] (a dev requirement) is not installed')
    bindir = _pg_bin()
    if bindir is None: pytest.skip('PostgreSQL server binaries (initdb, pg_ctl) not found; .ci/run installs them')
    import tempfile
    d = Path(tempfile.mkdtemp(prefix='dlcourse-pg-')); d.chmod(0o755)     # pytest's own tmp folders are private to root
    as_user = ['runuser', '-u', 'nobody', '--'] if os.geteuid() == 0 else []   # initdb refuses to run as root
    if as_user: shutil.chown(d, 'nobody')
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    run = lambda *a: subprocess.run(as_user + list(a), check=True, capture_output=True, text=True)
    run(f'{bindir}/initdb', '-D', str(d/'data'), '-U', 'postgres', '--auth=trust')
    run(f'{bindir}/pg_ctl', '-D', str(d/'data'), '-l', str(d/'log'), '-w', '-o', f'-h 127.0.0.1 -p {port} -k {d}', 'start')
    try: yield f'postgresql://postgres@127.0.0.1:{port}/postgres'
    finally:
        run(f'{bindir}/pg_ctl', '-D', str(d/'data'), '-m', 'immediate', 'stop'); shutil.rmtree(d, ignore_errors=True)

def test_two_workers_postgres(postgres, tmp_path):
    df = sweep('mlp-digits', SPACE, url=postgres, out=tmp_path, workers=2, epochs=2)
    check(df)
    assert not (tmp_path/'sweep.db').exists()

def test_cli_sweep_random_then_nothing_twice(tmp_path):
    "`dlcourse sweep` with random search: the trials asked for, a table printed; run again, no new trial."
    from dlcourse.cli import main
    args = ['sweep', 'mlp-digits', '--space', 'width=int:8:64', '--space', 'lr=log:1e-3:3e-2', '--sampler', 'random',
            '--trials', '2', '--epochs', '1', '--out', str(tmp_path), '--no-prune']
    assert main(args) == 0
    import pandas as pd
    df = pd.read_csv(tmp_path/'results.csv')
    assert len(df) == 2 and df.p_width.between(8, 64).all() and (df.state == 'complete').all()
    assert main(args) == 0 and len(pd.read_csv(tmp_path/'results.csv')) == 2

def test_killed_worker_is_failed_and_retried(tmp_path):
    "A worker killed mid-trial stops its heartbeat: the next sweep marks that trial failed and runs the point again."
    import optuna
    from optuna.trial import TrialState as S
    from dlcourse.sweep import open_study
    url, space = f"sqlite:///{tmp_path/'sweep.db'}", ['width=16', 'lr=3e-3']
    study = open_study('mlp-digits', parse_space(space), url, heartbeat=1, grace=2)
    worker = subprocess.Popen([sys.executable, '-m', 'dlcourse.sweep', 'mlp-digits', '--join', '--storage', url, '--space', space[0],
                               '--space', space[1], '--epochs', '500', '--heartbeat', '1', '--grace', '2', '--no-prune'])
    try:
        t0 = time.time()
        while not study.get_trials(states=(S.RUNNING,)) and time.time() - t0 < 120: time.sleep(0.5)
        time.sleep(1.5)
    finally: worker.kill(); worker.wait()
    assert study.get_trials(states=(S.RUNNING,)), 'the worker never started its trial'
    time.sleep(3)                                                           # longer than the grace period
    df = sweep('mlp-digits', space, url=url, out=tmp_path, epochs=1, prune=False, heartbeat=1, grace=2)
    assert [t.state for t in study.get_trials()] == [S.FAIL, S.COMPLETE]
    assert len(df) == 1 and df.state.tolist() == ['complete'] and (df.p_width == 16).all()
