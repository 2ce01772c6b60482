"""The "Run all" guard of `dlcourse.style`: in Jupyter (no IN_TEST) a `#| slow` or `#| gpu` cell nobody asked for prints one
line instead of running; `DLCOURSE_RUN=slow` runs the slow one; `nbdev_test --flags slow` and `.ci/execute_nb.py` still run
the flagged cells they choose. Each way runs in a fresh process with a controlled environment."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

pytestmark = pytest.mark.nbdev   # every test here runs notebooks through execnb / nbdev

ROOT = Path(__file__).resolve().parent.parent

def _nb(folder: Path) -> Path:
    def code(s): return {'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': [], 'source': s}
    cells = [code('%load_ext dlcourse.style'),
             code("#| slow\nopen('slow.txt', 'w').write('ran')"),
             code("#| gpu\nopen('gpu.txt', 'w').write('ran')"),
             code("print('finished')")]
    p = folder/'guarded.ipynb'
    p.write_text(json.dumps({'cells': cells, 'metadata': {'kernelspec': {'name': 'python3', 'language': 'python', 'display_name': 'python3'}},
                             'nbformat': 4, 'nbformat_minor': 5}))
    return p

def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k not in ('IN_TEST', 'DLCOURSE_RUN', 'PYTEST_CURRENT_TEST')}
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
    env['CUDA_VISIBLE_DEVICES'] = ''   # a machine without CUDA, even on a GPU runner
    return {**env, **kw}

RUN_ALL = """import sys, json
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
nb = read_nb(sys.argv[1]); sh = CaptureShell(sys.argv[1]); sh.run_all(nb, exc_stop=True)
print(json.dumps([[o.get('text', '') or o.get('data', {}).get('text/plain', '') for o in c.outputs] for c in nb.cells]))"""

def _run_all(nb: Path, **env):
    r = subprocess.run([sys.executable, '-c', RUN_ALL, str(nb)], cwd=nb.parent, env=_env(**env), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [''.join(''.join(t) for t in outs) for outs in json.loads(r.stdout.splitlines()[-1])]

def test_run_all_skips_flagged_cells(tmp_path):
    outs = _run_all(_nb(tmp_path))
    assert not (tmp_path/'slow.txt').exists() and not (tmp_path/'gpu.txt').exists()
    for i, flag in ((1, 'slow'), (2, 'gpu')):
        assert len(outs[i].strip().splitlines()) == 1 and 'Not run' in outs[i] and f'DLCOURSE_RUN={flag}' in outs[i], outs[i]
    assert 'finished' in outs[3]

def test_run_all_runs_what_is_asked(tmp_path):
    outs = _run_all(_nb(tmp_path), DLCOURSE_RUN='slow gpu')
    assert (tmp_path/'slow.txt').read_text() == 'ran'
    assert not (tmp_path/'gpu.txt').exists(), "a #| gpu cell must not run without CUDA"
    assert 'CUDA' in outs[2]

def test_nbdev_test_flags(tmp_path):
    nb = _nb(tmp_path)
    code = ("import sys; from nbdev.test import test_nb; from pathlib import Path\n"
            "ok, _ = test_nb(Path(sys.argv[1]), skip_flags=['slow', 'gpu'], force_flags=sys.argv[2:]); sys.exit(0 if ok else 1)")
    r = subprocess.run([sys.executable, '-c', code, str(nb)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and not (tmp_path/'slow.txt').exists(), r.stderr[-2000:]   # plain nbdev_test: skipped
    r = subprocess.run([sys.executable, '-c', code, str(nb), 'slow'], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path/'slow.txt').read_text() == 'ran' and not (tmp_path/'gpu.txt').exists()   # --flags slow: it runs

def test_execute_nb_runs_slow_cells(tmp_path):
    nb = _nb(tmp_path)
    r = subprocess.run([sys.executable, str(ROOT/'.ci'/'execute_nb.py'), str(nb)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path/'slow.txt').read_text() == 'ran' and not (tmp_path/'gpu.txt').exists()
