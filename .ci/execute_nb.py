"""Execute a notebook top to bottom IN PLACE, flagged #| slow cells included (#| gpu cells too when CUDA is available), keeping outputs.
Usage (from the repo root): python .ci/execute_nb.py nbs/10_lenet.ipynb [--skip-flags] [--gpu]
Then run `nbdev_clean --fname nbs/10_lenet.ipynb`. Outputs of every cell are saved in the notebook, so the docs show them.
--skip-flags runs only the smoke cells (what nbdev_test runs) but still saves their outputs."""
import sys, os, argparse, time, warnings
os.environ.setdefault('IN_TEST', '1')   # quiet learners (no epoch tables or bars in saved outputs) and one torch thread per process
warnings.filterwarnings('ignore', category=FutureWarning)   # library deprecation notices are not for readers
import torch
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
import fastprogress; fastprogress.fastprogress.NO_BAR = True   # keep progress bars out of saved outputs
from fastcore.xtras import working_directory

p = argparse.ArgumentParser(); p.add_argument('nb'); p.add_argument('--skip-flags', action='store_true')
p.add_argument('--gpu', action='store_true', help='also run #| gpu cells (default: only when CUDA is available)')
a = p.parse_args()
nb_path = Path(a.nb).absolute()
nb = read_nb(nb_path)
def pre(cell):
    if cell.cell_type != 'code': return True
    if 'nbdev_export' + '(' in cell.source: return True
    flags = {l.strip().replace('#|', '').strip() for l in cell.source.splitlines() if l.strip().startswith('#|')}
    if a.skip_flags and flags & {'slow', 'gpu'}: return True
    if 'eval: false' in flags: return True                 # never run (e.g. a module's `if __name__ == '__main__'`), as in nbdev_test
    if 'gpu' in flags and not (a.gpu or torch.cuda.is_available()): return True   # never start a GPU recipe on a CPU by accident
    return False
for cell in nb.cells:                                      # a cell that now prints nothing must not keep an old output
    if cell.cell_type == 'code' and not pre(cell): cell.outputs, cell.execution_count = [], None
sh = CaptureShell(nb_path)
t = time.time()
with working_directory(nb_path.parent):
    sh.run_all(nb, exc_stop=True, preproc=pre)
write_nb(nb, nb_path)
print(f"executed {nb_path.name} in {time.time()-t:.1f}s; outputs saved")
