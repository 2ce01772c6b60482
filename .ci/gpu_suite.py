"""The GPU run kit: every `#| gpu` cell of the course in one command, within a global deadline (default 9 minutes).

    python3 .ci/gpu_suite.py [--stage] [--out DIR] [--deadline 540] [--only 11_resnet ...] [--list] [--dry-run]

It finds every code cell flagged `#| gpu` in nbs/*.ipynb. A comment line `# kit: ...` in the cell's directive block
tunes it: `# kit: 120 s` (its time budget; default 90 s), `# kit: 300 s, shared` (it may share the GPU with other
shared cells: small models whose timing is not the result), `# kit: off (reason)` (never run by the kit, e.g. hours of
training or data that is not staged). Each notebook runs in its own process (execnb's `CaptureShell`, as
`.ci/execute_nb.py` runs notebooks; `IN_TEST` set): first the cells before its last kit cell that carry no flag (`#| slow`,
other `#| gpu` and `#| eval: false` cells are skipped; in the real run they are steered to the CPU with
DLCOURSE_DEVICE=cpu), then its `#| gpu` cells, each under its budget (SIGALRM), holding a lock on the GPU: exclusive
for timed cells, shared for `shared` ones. Notebooks run side by side (their CPU set-up overlaps the GPU work).
After every GPU cell, `OUT/<notebook>.json` is rewritten (cell id, sha256 of the source, status, seconds, outputs), so
whatever finished comes back even if the deadline stops the rest; `OUT/suite.log` has the log. `.ci/gpu_splice.py`
puts the outputs into the notebooks here. At most 8 files come back from the device: <= 6 notebooks + the log.

`--dry-run` rehearses the same command on this CPU: it builds a fresh venv (`.gpu/dryrun-venv`) that sees only the
GPU machine's packages (.ci/gpu_machine.txt, symlinked from this environment: no reinstall), installs the wheel
bundle into it with `pip install --no-index --no-deps --target`, and runs every kit cell with DLCOURSE_DRY_RUN=1, so
the cells read `dlcourse.style.kit_scale()` == 'smoke' and train on generated fixtures. CI runs it (.ci/run).

## The device calls (the first GPU session; 15 minutes of device time in all)

Here, before any call (no device time): `python .ci/gpu_bundle.py` (.gpu/wheels, 8.2 MiB), `python .ci/gpu_data.py split`
(.gpu/chunk0 26.7 MiB, .gpu/chunk1 32.6 MiB) and `python .ci/gpu_suite.py --dry-run` (green). The repo (~8.5 MiB)
travels with each call; the tool's limit is 64 MiB a call, so the data takes two calls, back to back: a machine stays
warm for only 30 s after a call, and a fresh one is bare.

1. run(carry=[".gpu/wheels", ".gpu/chunk0"], timeout_s=120,
       command="python3 .ci/gpu_suite.py --stage")
   A fresh machine (1-2 min start). Installs the wheels into .gpu/site, checks part 0's sha256 and keeps it under
   .gpu/data; prints 'waiting for cifar10-jpeg.zip.part1' and 'missing: the CIFAR-10 parts' and exits 4: expected,
   part 1 comes with call 2. ~20 s of work, ~2.5 min in all.
2. AT ONCE (within 30 s), run(carry=[".gpu/chunk1"], timeout_s=600,
       command="PYTHONUNBUFFERED=1 python3 .ci/gpu_suite.py --stage --out $OUT")
   Checks part 1, joins the zip and checks it against the registry's sha256, then runs the suite: 540 s deadline from
   the command's start, so it ends by ~9.2 min with the results under $OUT. ~10 min in all.
   If the machine was bare (a fresh start: it prints 'missing: the wheels' and exits 4 within seconds), send call 1 again AT
   ONCE (the machine is warm now), then call 2 with `--deadline 420`: the retry costs ~3 min, and 2.5 + 3 + 0.5 + 8 fits.
3. Here: `python .ci/gpu_splice.py <files_at>` (the folder the tool gives back): it puts the outputs into the notebooks
   (refusing cells whose source changed since), runs nbdev_clean on them, and prints a table of what came back.
   Then give_back() unless a rerun follows at once; commit the notebooks.
"""
import argparse, contextlib, fcntl, hashlib, json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT/'.gpu'
DEFAULT_BUDGET = 90
KIT_RE = re.compile(r'#\s*kit:\s*(.*)', re.I)

# ---------------------------------------------------------------------------------------------------------------------
# finding the cells (pure JSON: the parent needs neither execnb nor torch)
def src_of(cell) -> str:
    s = cell['source'] if isinstance(cell, dict) else cell.source
    return ''.join(s) if isinstance(s, list) else s

def source_sha(cell) -> str:
    "The sha256 of a cell's source: the splice refuses a cell whose source changed since the run."
    return hashlib.sha256(src_of(cell).encode()).hexdigest()

def directives(src:str) -> tuple:
    "(flags, kit text) of a cell: the `#| ...` words of its leading comment block, and its `# kit: ...` text ('' if none)."
    flags, kit = set(), ''
    for l in src.splitlines():
        s = l.strip()
        if not s: continue
        if not s.startswith('#'): break
        if m := re.match(r'#\s*\|\s*(.*)', s): flags |= set(m.group(1).replace(':', ': ').split())
        elif m := KIT_RE.match(s): kit = m.group(1).strip()
    return flags, kit

def kit_spec(kit:str) -> dict:
    "{'on', 'budget', 'shared', 'why'} from a `# kit:` text: 'off (why)', '120 s', '300 s, shared'."
    if kit.lower().startswith('off'): return dict(on=False, budget=0, shared=False, why=kit[3:].strip(' -:()') or 'off')
    m = re.search(r'(\d+(?:\.\d+)?)\s*s\b', kit)
    return dict(on=True, budget=float(m.group(1)) if m else DEFAULT_BUDGET, shared='shared' in kit.lower(), why='')

def gpu_cells(nb_path:Path) -> list:
    "[(index, cell id, kit spec)] of the `#| gpu` code cells of a notebook."
    nb = json.loads(Path(nb_path).read_text())
    out = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        flags, kit = directives(src_of(c))
        if 'gpu' in flags: out.append((i, c.get('id'), kit_spec(kit)))
    return out

def find(nbs_dir:Path=ROOT/'nbs', only=()) -> dict:
    "{notebook path: its gpu cells} for every notebook with at least one `#| gpu` cell (`only`: stems or prefixes)."
    res = {}
    for p in sorted(Path(nbs_dir).glob('*.ipynb')):
        if only and not any(p.stem == o or p.stem.startswith(o) for o in only): continue
        if cells := gpu_cells(p): res[p] = cells
    return res

def _names(src:str):
    "(defined, used) top-level names of a cell's code, magics and shell lines left out; None if it does not parse."
    import ast
    code = '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines())
    try: tree = ast.parse(code)
    except SyntaxError: return None
    defined, used = set(), set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name): (defined if isinstance(n.ctx, (ast.Store, ast.Del)) else used).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): defined.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for a in n.names: defined.add('*' if a.name == '*' else (a.asname or a.name.split('.')[0]))
    return defined, used

def _cheap(src:str) -> bool:
    "Only imports, definitions, docstrings and constants at the top level: always run (the namespace needs them)."
    import ast
    code = '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines())
    try: tree = ast.parse(code)
    except SyntaxError: return True
    return all(isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) or
               isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in tree.body)

def setup_cells(cells:list, kit_idx:list) -> list:
    """The indices of the cells the kit cells need, before the last of them: every `#| export` cell, every cell of only
    imports and definitions (and the set-up cell's magics), and, walking back, each cell that defines a name a needed
    cell uses (no flagged cell: `#| slow`, `#| gpu`, `#| eval: false`). The notebook's tests are not rerun there."""
    cand = []
    for i, c in enumerate(cells[:max(kit_idx) + 1]):
        if (c['cell_type'] if isinstance(c, dict) else c.cell_type) != 'code' or i in kit_idx: continue
        s = src_of(c)
        if 'nbdev_export' + '(' in s: continue
        flags, _ = directives(s)
        if flags & {'slow', 'gpu'} or {'eval:', 'false'} <= flags: continue
        cand.append(i)
    keep = {i for i in cand if 'export' in directives(src_of(cells[i]))[0] or _cheap(src_of(cells[i]))}
    need = set()   # names the kit cells use and do not define (the definitions' bodies resolve at call time)
    for i in kit_idx:
        r = _names(src_of(cells[i])); need |= (r[1] - r[0]) if r else set()
    for i in sorted(set(cand) - keep, reverse=True):
        r = _names(src_of(cells[i]))
        if r is None or r[0] & need:
            keep.add(i); need |= (r[1] - r[0]) if r else set()
    return sorted(keep)

# ---------------------------------------------------------------------------------------------------------------------
# the worker: one notebook in one process
@contextlib.contextmanager
def gpu_lock(shared:bool):
    GPU.mkdir(exist_ok=True)
    with open(GPU/'gpu.lock', 'w') as f:
        fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try: yield
        finally: fcntl.flock(f, fcntl.LOCK_UN)

GATE = GPU/'gate'   # one file per notebook whose exclusive cells have not run yet; shared cells wait for it to be empty

def close_gate(stems):
    if GATE.exists(): shutil.rmtree(GATE)
    GATE.mkdir(parents=True)
    for s in stems: (GATE/s).touch()

def open_gate(stem): (GATE/stem).unlink(missing_ok=True)

def wait_gate(deadline:float, me:str=''):
    while GATE.exists() and any(f.name != me for f in GATE.iterdir()) and time.time() < deadline - 30: time.sleep(1)

class KitTimeout(Exception): pass

@contextlib.contextmanager
def alarm(seconds:float):
    def boom(*_): raise KitTimeout(f"stopped by the kit after its budget of {seconds:.0f} s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1))
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)

def env_info() -> dict:
    import platform, torch
    d = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.cuda.is_available(),
             dry_run=bool(os.environ.get('DLCOURSE_DRY_RUN')))
    if torch.cuda.is_available(): d['gpu'] = torch.cuda.get_device_name(0)
    return d

def write_json(path:Path, obj):
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)   # atomic: a kill never leaves half a file

def worker(nb_path:Path, out:Path, deadline:float, dry:bool):
    os.environ.setdefault('IN_TEST', '1')
    import warnings; warnings.filterwarnings('ignore', category=FutureWarning)
    warnings.filterwarnings('ignore', message='Attempting to work in a virtualenv')   # IPython from the bundle, in the dry run's venv
    import torch
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    import fastprogress; fastprogress.fastprogress.NO_BAR = True
    from fastcore.xtras import working_directory
    nb = read_nb(nb_path)
    cuda = torch.cuda.is_available()
    kit = {i: spec for i, _, spec in gpu_cells(nb_path)}
    todo = [i for i, s in kit.items() if s['on']]
    res = dict(notebook=f"nbs/{nb_path.name}", env=env_info(), started=time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
               cells=[dict(idx=i, id=nb.cells[i].get('id'), sha256=source_sha(nb.cells[i]), status='pending' if s['on'] else 'off',
                           why=s['why'], budget=s['budget'], shared=s['shared']) for i, s in kit.items()])
    dest = out/f"{nb_path.stem}.json"
    write_json(dest, res)
    log = lambda m: print(f"[{nb_path.stem} {time.time() - T0:5.0f}s] {m}", flush=True)
    if not todo: log('no kit cell'); return 0
    if not cuda and not dry:
        for c in res['cells']: c['status'] = 'skipped' if c['status'] == 'pending' else c['status']
        res['note'] = 'CUDA is not available: nothing run (use --dry-run to rehearse on a CPU)'
        write_json(dest, res); log(res['note']); return 0
    sh = CaptureShell(nb_path)
    entry = {c['idx']: c for c in res['cells']}
    setup = set(setup_cells(nb.cells, todo))
    log(f"set-up: {len(setup)} cells ({', '.join(map(str, sorted(setup)))})")
    with working_directory(nb_path.parent):
        for i, cell in enumerate(nb.cells[:max(todo) + 1]):
            if i not in todo and i not in setup: continue
            if i not in todo:
                if not dry: os.environ['DLCOURSE_DEVICE'] = 'cpu'   # the set-up's smoke tests stay off the GPU
                sh.cell(cell)
                if sh.exc:
                    msg = f"set-up cell {i} failed: {sh.exc[0].__name__ if isinstance(sh.exc, tuple) else type(sh.exc).__name__}"
                    log(msg); res['error'] = msg
                    res['traceback'] = ''.join(o.get('text', '') if isinstance(o.get('text'), str) else ''.join(o.get('text', []))
                                               for o in cell.get('outputs', []))[-4000:] or repr(sh.exc)
                    for c in res['cells']: c['status'] = 'not run' if c['status'] == 'pending' else c['status']
                    write_json(dest, res); return 1
                continue
            os.environ.pop('DLCOURSE_DEVICE', None)
            e = entry[i]
            left = deadline - time.time() - 5
            if left < 10:
                e['status'] = 'no time'; write_json(dest, res); log(f"cell {i}: no time left"); continue
            log(f"cell {i}: waiting for the GPU ({'shared' if e['shared'] else 'exclusive'})")
            if e['shared']: wait_gate(deadline, nb_path.stem)   # the timed (exclusive) cells of every notebook go first
            with gpu_lock(e['shared']):
                log(f"cell {i}: running (budget {e['budget']:.0f} s)")
                t = time.time()
                cell.outputs = []
                with alarm(min(e['budget'], deadline - time.time() - 5)): sh.cell(cell)
                e['seconds'] = round(time.time() - t, 1)
            exc = sh.exc
            if exc is None: e['status'] = 'ok'
            else:
                name = exc[0].__name__ if isinstance(exc, tuple) else type(exc).__name__
                e['status'] = 'timeout' if name == 'KitTimeout' else f'error: {name}'
            e['outputs'] = [dict(o) for o in cell.get('outputs', [])]
            write_json(dest, res)
            log(f"cell {i}: {e['status']} in {e['seconds']} s")
            if not any(not entry[j]['shared'] for j in todo if j > i): open_gate(nb_path.stem)
    res['finished'] = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())
    write_json(dest, res)
    return 0

# ---------------------------------------------------------------------------------------------------------------------
# the environment: the GPU machine's (real run), or a CPU rehearsal of it (dry run)
def install_wheels(site:Path, wheels:Path=GPU/'wheels', python=sys.executable) -> bool:
    "Install the bundle into `site` with pip --no-index --no-deps --target (once: a marker lists the wheels)."
    ws = sorted(wheels.glob('*.whl'))
    mark = site/'.kit-wheels'
    if mark.exists() and (not ws or mark.read_text() == '\n'.join(w.name for w in ws)): return True
    if not ws: return False
    if site.exists(): shutil.rmtree(site)
    subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile', '--no-cache-dir',
                    '--disable-pip-version-check', '--target', str(site), *map(str, ws)], check=True)
    mark.write_text('\n'.join(w.name for w in ws))
    return True

def machine_packages() -> set:
    lines = (ROOT/'.ci/gpu_machine.txt').read_text().splitlines()
    return {re.sub(r'[-_.]+', '-', l.strip()).lower() for l in lines if l.strip() and not l.startswith('#')}

def dry_venv(dest:Path=GPU/'dryrun-venv') -> Path:
    """A fresh venv that sees only the GPU machine's packages from THIS environment (symlinks, no reinstall) plus the
    wheel bundle installed as on the machine. Returns its python."""
    from importlib.metadata import distributions
    if dest.exists(): shutil.rmtree(dest)
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(dest)], check=True)
    py = dest/'bin'/'python'
    site = Path(subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               capture_output=True, text=True, check=True).stdout.strip())
    links = dest/'machine'; links.mkdir()
    want, n = machine_packages(), 0
    for d in distributions():
        name = re.sub(r'[-_.]+', '-', (d.metadata['Name'] or '')).lower()
        if name not in want: continue
        base = Path(d.locate_file(''))
        tops = {Path(f).parts[0] for f in (d.files or []) if not str(f).startswith('..')}
        for t in tops:
            src = base/t
            if src.exists() and not (links/t).exists() and t not in ('bin', '__pycache__'): (links/t).symlink_to(src); n += 1
    (site/'machine.pth').write_text(str(links) + '\n')
    kit_site = GPU/'dryrun-site'   # kept between dry runs while the wheels are the same (a marker lists them)
    install_wheels(kit_site, python=sys.executable)   # pip of this environment installs into the target folder
    (site/'kit.pth').write_text(str(kit_site) + '\n')
    return py

# ---------------------------------------------------------------------------------------------------------------------
T0 = time.time()

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=os.environ.get('OUT') or str(GPU/'out'), help='results folder (default: $OUT, else .gpu/out)')
    ap.add_argument('--deadline', type=float, default=540, help='seconds from the start for everything (default 540: 9 min)')
    ap.add_argument('--only', nargs='*', default=(), help='notebook stems or prefixes (default: every notebook with gpu cells)')
    ap.add_argument('--stage', action='store_true', help='first install the wheels and stage the data chunks that came along')
    ap.add_argument('--dry-run', action='store_true', help='rehearse on this CPU at smoke scale, in a venv like the GPU machine')
    ap.add_argument('--jobs', type=int, default=0, help='notebooks at a time (default: all; dry run: 2)')
    ap.add_argument('--list', action='store_true', help='list the gpu cells and their budgets, run nothing')
    ap.add_argument('--worker', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    deadline = T0 + a.deadline
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    if a.worker:
        sys.exit(worker(Path(a.worker), out, float(os.environ['KIT_DEADLINE']), bool(os.environ.get('DLCOURSE_DRY_RUN'))))
    found = find(only=a.only)
    if a.list:
        for p, cells in found.items():
            nbc = json.loads(p.read_text())['cells']
            on = [i for i, _, s in cells if s['on']]
            if on: print(f"{p.name}: set-up cells {setup_cells(nbc, on)}")
            for i, cid, s in cells:
                print(f"{p.name:28} cell {i:3} {cid}  " + (f"{s['budget']:.0f} s{', shared' if s['shared'] else ''}" if s['on'] else f"off: {s['why']}"))
        return 0
    env = dict(os.environ, PYTHONUNBUFFERED='1', MPLBACKEND='Agg', KIT_DEADLINE=str(deadline),
               DLCOURSE_DATA=str(GPU/'data'/'cache'), DLCOURSE_LOCAL_DATA=str(GPU/'data'/'local'))
    py = sys.executable
    if a.dry_run:
        t = time.time(); py = str(dry_venv())
        env.update(DLCOURSE_DRY_RUN='1', DLCOURSE_THREADS=env.get('DLCOURSE_THREADS', '1'))
        env.pop('PYTHONPATH', None); env['PYTHONPATH'] = str(ROOT)
        print(f"dry run: venv of the GPU machine's packages + the bundle in {time.time() - t:.1f}s ({py})", flush=True)
    else:
        site = GPU/'site'
        ok = install_wheels(site)
        env['PYTHONPATH'] = os.pathsep.join([str(site), str(ROOT)])
        env.setdefault('DLCOURSE_THREADS', '1')   # the GPU does the work; a dozen processes share 16 cores
        missing = [] if ok else ['the wheels (.gpu/wheels)']
        if a.stage:
            sys.path.insert(0, str(ROOT/'.ci'))
            import gpu_data
            if not gpu_data.stage(): missing.append('the CIFAR-10 parts (see above)')
        if missing:
            print(f"missing: {', '.join(missing)}"); return 4
    if not found: print('no gpu cells'); return 0
    jobs = a.jobs or (2 if a.dry_run else len(found))
    order = sorted(found, key=lambda p: all(s['shared'] or not s['on'] for _, _, s in found[p]))   # timed (exclusive) ones first
    logf = open(out/'suite.log', 'a')
    def say(m):
        line = f"[suite {time.time() - T0:5.0f}s] {m}"; print(line, flush=True); logf.write(line + '\n'); logf.flush()
    say(f"{len(order)} notebooks, {sum(s['on'] for c in found.values() for _, _, s in c)} kit cells, deadline {a.deadline:.0f} s"
        f"{' (dry run)' if a.dry_run else ''}")
    close_gate([p.stem for p in order if any(s['on'] and not s['shared'] for _, _, s in found[p])])
    if not a.dry_run:   # decode the staged CIFAR-10 copy once, before the notebooks' processes want it
        t = time.time()
        r = subprocess.run([py, '-c', "from dlcourse.images import decoded_images; decoded_images('cifar10-jpeg')"], env=env, cwd=ROOT)
        say(f"decoded cifar10-jpeg in {time.time() - t:.0f} s (exit {r.returncode})")
    running, pending, rcs = {}, list(order), {}
    while pending or running:
        while pending and len(running) < jobs:
            p = pending.pop(0)
            running[p] = subprocess.Popen([py, __file__, '--worker', str(p), '--out', str(out)], env=env, cwd=ROOT,
                                          stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
            say(f"started {p.name}")
        for p, proc in list(running.items()):
            if proc.poll() is not None:
                rcs[p.name] = proc.returncode; del running[p]; open_gate(p.stem); say(f"{p.name}: exit {proc.returncode}")
        if time.time() > deadline:
            for p, proc in running.items():
                with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
                rcs[p.name] = 'killed at the deadline'; say(f"{p.name}: killed at the deadline")
            running = {}; pending and say(f"not started: {', '.join(p.name for p in pending)}"); break
        time.sleep(0.5)
    logf.close()
    if a.dry_run: print(''.join(l for l in (out/'suite.log').open() if not l.startswith('[suite')), end='')
    bad = 0
    for p in order:
        f = out/f"{p.stem}.json"
        r = json.loads(f.read_text()) if f.exists() else dict(cells=[])
        if rcs.get(p.name) not in (0, None) or not f.exists():   # a worker that died before writing (e.g. an import error)
            print(f"{p.stem}: worker {'exit ' + str(rcs.get(p.name)) if p.name in rcs else 'not run'}"
                  f"{'' if f.exists() else ', no results written'} (see {out/'suite.log'})"); bad += 1
        for c in r['cells']:
            print(f"{p.stem:18} cell {c['idx']:3}: {c['status']:12} {c.get('seconds', '')}")
            bad += c['status'] not in ('ok', 'off')
        if r.get('error'): print(f"{p.stem}: {r['error']}\n{r.get('traceback', '')}"); bad += 1
    print(f"suite: {time.time() - T0:.0f} s, {'all kit cells ok' if not bad else f'{bad} problem(s)'}; results in {out}")
    return 1 if bad else 0

if __name__ == '__main__': sys.exit(main())
