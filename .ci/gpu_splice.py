"""Put the outputs a GPU run brought back into the notebooks here: `python .ci/gpu_splice.py DIR [--dry] [--keep-failed]`.

DIR holds the `<notebook>.json` files of `.ci/gpu_suite.py` (the folder the device tool gives back). Each cell is found by
its id and must have the source it had there (sha256): a cell whose source changed since, or that is gone, is refused and
that notebook is left untouched (exit 1). Cells that ran ('ok') get their outputs; cells that timed out or failed keep
theirs unless `--keep-failed`. Then the output hygiene of the repo: `nbdev_clean` on each changed notebook, and, where
the site tool is there, /work/tools/site15_transform.py (progress-bar debris, machine paths, PNGs wider than 700 px).
"""
import argparse, hashlib, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE_TOOL = Path('/work/tools/site15_transform.py')

def _src(c) -> str: return ''.join(c['source']) if isinstance(c['source'], list) else c['source']

class Mismatch(Exception): pass

def splice(result:dict, nb:dict, keep_failed:bool=False) -> list:
    "Put `result`'s outputs into notebook `nb` (a dict, changed in place); the ids of the cells changed. `Mismatch` if any cell differs."
    by_id = {c.get('id'): c for c in nb['cells']}
    plan = []
    for r in result['cells']:
        if r['status'] != 'ok' and not (keep_failed and r.get('outputs')): continue
        c = by_id.get(r['id'])
        if c is None: raise Mismatch(f"cell {r['id']} (index {r['idx']} there) is not in the notebook any more")
        if hashlib.sha256(_src(c).encode()).hexdigest() != r['sha256']:
            raise Mismatch(f"cell {r['id']} changed since the GPU run (its source is not the one that ran): run it again")
        plan.append((c, r))
    for c, r in plan: c['outputs'], c['execution_count'] = r['outputs'], None
    return [r['id'] for _, r in plan]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('dir', help="the folder with the suite's <notebook>.json files")
    ap.add_argument('--nbs', default=str(ROOT/'nbs'), help='the notebooks folder (default: nbs/)')
    ap.add_argument('--keep-failed', action='store_true', help='also splice the outputs of cells that timed out or failed')
    ap.add_argument('--dry', action='store_true', help='check and report, change nothing')
    ap.add_argument('--no-clean', action='store_true', help='skip nbdev_clean and the site tool')
    a = ap.parse_args(argv)
    bad, changed = 0, []
    for f in sorted(Path(a.dir).glob('*.json')):
        res = json.loads(f.read_text())
        if 'cells' not in res or 'notebook' not in res: continue
        nb_path = Path(a.nbs)/Path(res['notebook']).name
        for r in res['cells']: print(f"{nb_path.stem:18} {str(r.get('id')):10} {r['status']:14} {r.get('seconds', '')}")
        if res.get('error'): print(f"  {res['error']}")
        if not nb_path.exists(): print(f"{nb_path}: no such notebook"); bad += 1; continue
        nb = json.loads(nb_path.read_text())
        try: ids = splice(res, nb, a.keep_failed)
        except Mismatch as e: print(f"{nb_path.name}: REFUSED, left unchanged: {e}"); bad += 1; continue
        if ids and not a.dry:
            nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
            changed.append(nb_path); print(f"{nb_path.name}: outputs of {len(ids)} cell(s) spliced")
    if changed and not a.no_clean:
        for p in changed: subprocess.run(['nbdev_clean', '--fname', str(p)], check=True, cwd=ROOT)
        if SITE_TOOL.exists(): subprocess.run([sys.executable, str(SITE_TOOL), str(ROOT)], check=True)
    return 1 if bad else 0

if __name__ == '__main__': sys.exit(main())
