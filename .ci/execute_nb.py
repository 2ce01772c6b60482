"""Execute a notebook top to bottom IN PLACE, flagged (#| slow / #| gpu) cells included, keeping outputs.
Usage (from the repo root): python .ci/execute_nb.py nbs/10_lenet.ipynb [--skip-flags] [--timeout 3000]
Then run `nbdev_clean --fname nbs/10_lenet.ipynb`. Outputs of every cell are saved in the notebook, so the docs show them.
--skip-flags runs only the smoke cells (what nbdev_test runs) but still saves their outputs."""
import sys, os, argparse, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
import fastprogress; fastprogress.fastprogress.NO_BAR = True   # keep progress bars out of saved outputs
from fastcore.xtras import working_directory

p = argparse.ArgumentParser(); p.add_argument('nb'); p.add_argument('--skip-flags', action='store_true')
p.add_argument('--timeout', type=int, default=None)
a = p.parse_args()
nb_path = Path(a.nb).absolute()
nb = read_nb(nb_path)
def pre(cell):
    if cell.cell_type != 'code': return True
    if 'nbdev_export' + '(' in cell.source: return True
    if a.skip_flags and any(l.strip().startswith(('#| slow', '#|slow', '#| gpu', '#|gpu')) for l in cell.source.splitlines()): return True
    return False
sh = CaptureShell(nb_path)
t = time.time()
with working_directory(nb_path.parent):
    sh.run_all(nb, exc_stop=True, preproc=pre)
write_nb(nb, nb_path)
print(f"executed {nb_path.name} in {time.time()-t:.1f}s; outputs saved")
