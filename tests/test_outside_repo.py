"""Two cheap chapters run the way a reader runs them outside the repository: copied alone into an empty folder (no
settings.ini, no nbs/, no export cells to find a project), with only the installed library, default settings (no
IN_TEST, no DLCOURSE_RUN), every cell in order as "Run all" does. Full-scale cells must print their one line, not run."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHEAP = ['12_init.ipynb', '20_char_lm.ipynb']   # ~30 s each on one CPU thread

RUN_ALL = """import sys, json
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
nb = read_nb(sys.argv[1]); sh = CaptureShell(sys.argv[1]); sh.run_all(nb, exc_stop=True)
print(json.dumps([''.join(''.join(o.get('text', '') or o.get('data', {}).get('text/plain', '')) for o in c.outputs) for c in nb.cells if c.cell_type == 'code']))"""

def _env(cwd):
    env = {k: v for k, v in os.environ.items() if k not in ('IN_TEST', 'DLCOURSE_RUN', 'PYTEST_CURRENT_TEST', 'PYTHONPATH')}
    env.update(DLCOURSE_THREADS='1', MPLBACKEND='Agg')
    ok = subprocess.run([sys.executable, '-c', 'import dlcourse.style'], cwd=cwd, env=env, capture_output=True).returncode == 0
    if not ok: env['PYTHONPATH'] = str(ROOT)   # a checkout without `pip install -e .`: the package folder stands in for it
    return env

@pytest.mark.nbdev
@pytest.mark.parametrize('name', CHEAP)
def test_chapter_runs_in_an_empty_folder(tmp_path, name):
    nb = tmp_path/name
    nb.write_text((ROOT/'nbs'/name).read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    r = subprocess.run([sys.executable, '-c', RUN_ALL, str(nb)], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{name} failed outside the repo:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    outs = json.loads(r.stdout.splitlines()[-1])
    src = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
    from dlcourse.style import cell_flags
    flagged = [i for i, s in enumerate(src) if cell_flags(s.splitlines())]
    assert flagged, f"{name} has no full-scale cell: pick a chapter that has one"
    for i in flagged: assert outs[i].startswith('Not run') and len(outs[i].strip().splitlines()) == 1, (i, outs[i][:300])
