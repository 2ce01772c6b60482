"""Download the wheels the GPU machine lacks: what the `#| gpu` cells and the kit's runner import, for CPython 3.12 on
manylinux x86-64, into `.gpu/wheels` (ignored by git). Usage, from the repo root: `python .ci/gpu_bundle.py [--dest DIR]`.

The machine (see .ci/gpu_machine.txt) has torch, torchvision, pandas, matplotlib, scikit-learn, ... but no fastai stack and
no IPython. The bundle is the import closure of ROOTS in THIS environment (the dev extras' versions, read from the
installed packages), less what the machine has, less EXCLUDE:
- spacy and its tree: only `fastai.text` imports it, and no GPU cell does (tests/test_gpu_kit.py checks);
- python-fasthtml and its tree (a web framework with a compiled SQLite binding): fastprogress >= 1.1 imports it at import
  time, so the bundle carries fastprogress 1.0.3 (the last release without it; fastai 2.8.7 asks for >= 0.2.4).
Every wheel is pure Python (checked), so the same files also install into the CPU dry run (`gpu_suite.py --dry-run`).
"""
import argparse, subprocess, sys
from importlib.metadata import distribution, PackageNotFoundError
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTS = ('fastai', 'fastcore', 'fastdownload', 'fastprogress', 'execnb', 'ipython')  # the GPU cells' stack + the runner (execnb)
EXCLUDE = {'spacy', 'python-fasthtml'}     # and everything only they need
PINS = {'fastprogress': '1.0.3'}           # instead of the installed version (see the docstring)
EXTRA_DEPS = {}                            # requirements a pinned-down version adds: fastprogress 1.0.3 needs none beyond fastcore
TARGET = {'python_version': '3.12', 'python_full_version': '3.12.3', 'sys_platform': 'linux', 'platform_system': 'Linux',
          'platform_machine': 'x86_64', 'implementation_name': 'cpython', 'os_name': 'posix',
          'platform_python_implementation': 'CPython', 'extra': ''}

def canon(name:str) -> str:
    import re
    return re.sub(r'[-_.]+', '-', name).lower()

def machine_packages() -> set:
    "The packages of the GPU machine's image, from .ci/gpu_machine.txt."
    lines = (ROOT/'.ci/gpu_machine.txt').read_text().splitlines()
    return {canon(l.strip()) for l in lines if l.strip() and not l.startswith('#')}

def bundle(roots=ROOTS, exclude=EXCLUDE) -> dict:
    "{name: version} of the wheels to carry: the closure of `roots` (markers for the target) minus the machine's and `exclude`."
    from packaging.requirements import Requirement
    have, out, todo = machine_packages(), {}, list(roots)
    while todo:
        n = canon(todo.pop())
        if n in out or n in have or n in exclude: continue
        try: d = distribution(n)
        except PackageNotFoundError: raise SystemExit(f"{n} is not installed here: install the dev extras first (pip install -e '.[dev]')")
        out[n] = PINS.get(n, d.version)
        reqs = EXTRA_DEPS.get(n, []) if n in PINS else [r for r in (d.requires or [])]
        for r in reqs:
            r = Requirement(r)
            if r.marker is None or r.marker.evaluate(TARGET): todo.append(r.name)
    return dict(sorted(out.items()))

def download(pkgs:dict, dest:Path) -> list:
    "The wheels of `pkgs` in `dest` (downloaded when missing): pure-Python ones, for CPython 3.12 there and any CPython 3 here."
    dest.mkdir(parents=True, exist_ok=True)
    def have(n, v):
        stem = f"{canon(n).replace('-', '_')}-{v}-"
        return [p for p in dest.glob('*.whl') if p.name.lower().replace('-', '_').replace('_', '-').startswith(stem.replace('_', '-'))]
    need = [f"{n}=={v}" for n, v in pkgs.items() if not have(n, v)]
    if need:
        cmd = [sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '--python-version', '3.12',
               '--implementation', 'py', '--platform', 'any', '-d', str(dest), *need]   # pure-Python wheels only
        subprocess.run(cmd, check=True)
    wheels = sorted(w for n, v in pkgs.items() for w in have(n, v))
    stale = set(dest.glob('*.whl')) - set(wheels)
    for p in stale: p.unlink()   # one version of each package: two would stop the install
    impure = [w.name for w in wheels if not w.name.endswith('-none-any.whl')]
    if impure: raise SystemExit(f"not pure Python (the dry run could not use them): {impure}")
    return wheels

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dest', default=str(ROOT/'.gpu/wheels'), help='folder of the wheels (default: .gpu/wheels)')
    ap.add_argument('--list', action='store_true', help='print the pinned packages and stop')
    a = ap.parse_args()
    pkgs = bundle()
    if a.list: print('\n'.join(f"{n}=={v}" for n, v in pkgs.items())); sys.exit()
    wheels = download(pkgs, Path(a.dest))
    mib = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels in {a.dest}: {mib:.1f} MiB ({', '.join(f'{n}=={v}' for n, v in pkgs.items())})")
