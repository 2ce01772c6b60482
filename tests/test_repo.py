"""The repository agrees with itself: the library is what the notebooks export, the notebooks are clean, README.md is
what nbs/index.ipynb renders to, and the README's Quick start commands are the ones CI and users run."""
import re, shutil, subprocess, sys, filecmp, os, shlex
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def quick_start_blocks() -> list[str]:
    text = (ROOT/'README.md').read_text()
    section = text.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```\s*bash\n(.*?)```', section, re.S)

def _copy_repo(dest: Path) -> Path:
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split('\n')
    for f in filter(None, files):
        if f.startswith('.venv/') or not (ROOT/f).is_file(): continue
        (dest/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/f, dest/f)
    return dest

def _diff(a: Path, b: Path, pattern: str) -> list[str]:
    return [str(p.relative_to(a)) for p in sorted(a.glob(pattern)) if not filecmp.cmp(p, b/p.relative_to(a), shallow=False)]

def _bin(name): return str(Path(sys.executable).parent/name)

needs_git = pytest.mark.skipif(not (ROOT/'.git').exists(), reason='not a git checkout')

def test_quick_start_has_exactly_two_bash_blocks():
    blocks = quick_start_blocks()
    assert len(blocks) == 2, blocks
    assert 'dlcourse run' in blocks[0] and 'pip install' in blocks[0]
    assert 'nbdev_test' in blocks[1] and 'pytest' in blocks[1] and '.[dev]' in blocks[1]

def test_ci_runs_the_second_block():
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'quick_start' in ci or 'Quick start' in ci, "the CI script must take its command from the README"

@needs_git
@pytest.mark.nbdev
@pytest.mark.parametrize('tool,folder,pattern', [('nbdev_export', 'dlcourse', '*.py'), ('nbdev_clean', 'nbs', '*.ipynb')])
def test_nbdev_tools_change_nothing(tmp_path, tool, folder, pattern):
    "The library is what the notebooks export, and the notebooks are already clean."
    d = _copy_repo(tmp_path)
    subprocess.run([_bin(tool)], cwd=d, check=True, capture_output=True)
    changed = _diff(ROOT/folder, d/folder, pattern)
    assert not changed, f"run {tool} and commit: {changed}"

@needs_git
@pytest.mark.nbdev
def test_readme_is_generated_from_index(tmp_path):
    d = _copy_repo(tmp_path)
    r = subprocess.run([sys.executable, '.ci/make_readme.py', '--check'], cwd=d, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]

def test_main_job_runs(tmp_path):
    "The first Quick start block's `dlcourse run ...` (the install part is what this environment already did)."
    cmd = quick_start_blocks()[0].strip().split('&& ')[-1].strip()
    assert cmd.startswith('dlcourse run ')
    r = subprocess.run([_bin('dlcourse')] + shlex.split(cmd)[1:], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                       env={**os.environ, 'MPLBACKEND': 'Agg'})
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path/shlex.split(cmd)[shlex.split(cmd).index('--out') + 1]
    assert {'results.csv', 'history.csv', 'curves.png', 'compare.png'} <= {p.name for p in out.iterdir()}
    print(r.stdout)

def _directives(src):
    return {m.group(1) for m in re.finditer(r'^#\|\s*([\w-]+)', src, re.M)}

def test_flagged_cells_import_nothing():
    "nbdev's docs processing executes every cell that imports something: a full-scale (slow/gpu) cell must not, or building the docs would train."
    import ast, json
    bad = []
    for nbp in sorted((ROOT/'nbs').glob('*.ipynb')):
        for i, c in enumerate(json.loads(nbp.read_text())['cells']):
            src = ''.join(c['source'])
            if c['cell_type'] != 'code' or not _directives(src) & {'slow', 'gpu'}: continue
            try: tree = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!'))))
            except SyntaxError: continue
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)): bad.append(f"{nbp.name} cell {i}")
    assert not bad, "move the imports of these flagged cells into an unflagged cell of their own:\n" + '\n'.join(bad)
