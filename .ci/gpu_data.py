"""Stage the CIFAR-10 JPEG copy on the GPU machine in chunks, checked by hash on arrival.

The zip (62.2 MB) does not travel in one call beside the repo (~8.5 MB) and the wheels (~8 MiB): the tool carries at
most 64 MiB a call. Here: `python .ci/gpu_data.py split` cuts it into `.gpu/chunk0/` and `.gpu/chunk1/` (ignored by git),
each holding one part and a manifest (sha256 of every part and of the whole file, which is the registry's). There, each
call carries one chunk folder and runs `python3 .ci/gpu_data.py stage`: it checks the part's hash, moves it under
`.gpu/data/parts/` (ignored outputs stay on a warm machine between back-to-back calls), and once every part is there,
joins them into `.gpu/data/local/cifar10-jpeg/cifar10-jpeg.zip` and checks the whole file against the registry's sha256.
`DLCOURSE_LOCAL_DATA=.gpu/data/local` then serves it to `load_images('cifar10-jpeg')` (gpu_suite.py sets it).
"""
import argparse, hashlib, json, os, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT/'.gpu'
DATASET, FILE = 'cifar10-jpeg', 'cifar10-jpeg.zip'
SIZES = (28_000_000,)   # bytes of every part but the last: part 0 rides with the wheels, part 1 (34.2 MB) with the run

def sha256(p, bufsize=2**22) -> str:
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while b := f.read(bufsize): h.update(b)
    return h.hexdigest()

def registry_sha() -> str:
    sys.path.insert(0, str(ROOT))
    from dlcourse.data import get_info
    return get_info(DATASET).resources[0].sha256

def staged_zip(gpu:Path=GPU) -> Path: return gpu/'data'/'local'/DATASET/FILE

def source() -> Path:
    "The local copy to split: in a DLCOURSE_LOCAL_DATA folder, else /work/shared/data."
    dirs = [Path(p) for p in os.environ.get('DLCOURSE_LOCAL_DATA', '').split(os.pathsep) if p] + [Path('/work/shared/data')]
    for d in dirs:
        if (d/DATASET/FILE).exists(): return d/DATASET/FILE
    raise SystemExit(f"no local copy of {DATASET}/{FILE}: set DLCOURSE_LOCAL_DATA to a folder that holds it")

def split(src:Path, gpu:Path=GPU, sizes=SIZES, whole_sha:str|None=None) -> list:
    "Cut `src` into parts `gpu`/chunkN/FILE.partN with a manifest each; return the chunk folders."
    whole_sha = whole_sha or registry_sha()
    got = sha256(src)
    if got != whole_sha: raise SystemExit(f"{src}: sha256 {got} is not the registry's {whole_sha}")
    data, cuts, o = src.read_bytes(), [], 0
    for s in sizes: cuts.append((o, o + s)); o += s
    cuts.append((o, len(data)))
    parts = [data[a:b] for a, b in cuts]
    man = dict(file=FILE, dataset=DATASET, size=len(data), sha256=whole_sha,
               parts=[dict(name=f"{FILE}.part{i}", size=len(p), sha256=hashlib.sha256(p).hexdigest()) for i, p in enumerate(parts)])
    out = []
    for i, p in enumerate(parts):
        d = gpu/f'chunk{i}'
        if d.exists(): shutil.rmtree(d)
        d.mkdir(parents=True)
        (d/man['parts'][i]['name']).write_bytes(p)
        (d/'manifest.json').write_text(json.dumps(man, indent=1))
        out.append(d)
    return out

def stage(gpu:Path=GPU) -> bool:
    "Check and place every chunk present; join the parts when all are there. True when the staged zip is complete and verified."
    dest = staged_zip(gpu)
    if dest.exists() and dest.with_suffix('.ok').exists():
        print(f"staged: {dest.relative_to(gpu.parent)} (verified earlier)"); return True
    parts_dir, man = gpu/'data'/'parts', None
    parts_dir.mkdir(parents=True, exist_ok=True)
    for d in sorted(gpu.glob('chunk*')):
        man = json.loads((d/'manifest.json').read_text())
        for p in man['parts']:
            f = d/p['name']
            if not f.exists(): continue
            got = sha256(f)
            if got != p['sha256']: raise SystemExit(f"{f.name}: sha256 {got} != manifest {p['sha256']} (broken transfer: send it again)")
            shutil.copyfile(f, parts_dir/p['name'])   # the carried folder is replaced by the next call: keep a copy
            print(f"part ok: {p['name']} ({p['size'] / 1e6:.1f} MB)")
    man_file = parts_dir/'manifest.json'
    if man: man_file.write_text(json.dumps(man))
    if not man_file.exists(): print("no chunk here and none staged before"); return False
    man = json.loads(man_file.read_text())
    missing = [p['name'] for p in man['parts'] if not (parts_dir/p['name']).exists()]
    if missing: print(f"waiting for {', '.join(missing)} (a fresh machine starts bare: send every chunk again)"); return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, 'wb') as out:
        for p in man['parts']: out.write((parts_dir/p['name']).read_bytes())
    got, want = sha256(dest), man['sha256']
    if got != want or (want != registry_sha()): raise SystemExit(f"{dest.name}: sha256 {got}, manifest {want}: not the registry's file")
    dest.with_suffix('.ok').write_text(got)
    shutil.rmtree(parts_dir)
    print(f"staged: {dest.relative_to(gpu.parent)} ({dest.stat().st_size / 1e6:.1f} MB, sha256 = registry's)")
    return True

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('cmd', choices=('split', 'stage'))
    ap.add_argument('--src', help='the zip to split (default: from DLCOURSE_LOCAL_DATA or /work/shared/data)')
    a = ap.parse_args()
    if a.cmd == 'split':
        for d in split(Path(a.src) if a.src else source()):
            print(f"{d.relative_to(ROOT)}: {sum(f.stat().st_size for f in d.iterdir()) / 2**20:.1f} MiB")
    else: sys.exit(0 if stage() else 3)
