"Data-parallel training for real: two gloo ranks on the CPU (one torch thread each) against one process."
import os, sys, textwrap
from functools import partial
import pandas as pd, pytest, torch
from dlcourse.distrib import launch
from dlcourse.images import image_dls, load_images
from dlcourse.train import run, mlp

PROBE = '''
import os, sys, torch
from functools import partial
from dlcourse.distrib import data_parallel, world, distrib_main
from dlcourse.images import image_dls, load_images
from dlcourse.train import run, mlp
out = sys.argv[1]
with data_parallel(cpu=True, batch=sys.argv[2]):
    dls = image_dls(load_images('digits'), bs=128, augment=None, device='cpu', seed=0)
    row, learn = run(partial(mlp, hidden=(32,)), dls, epochs=2, lr=3e-3, quiet=True)
rank, n = world()
torch.save(dict(w=[p.detach() for p in learn.model.parameters()], row=row), f'{out}/rank{rank}.pt')
distrib_main(['mlp-digits', '--epochs', '1', '--out', f'{out}/cli'])   # the launcher for a registered experiment
'''

@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    d = tmp_path_factory.mktemp('ddp'); (d/'probe.py').write_text(PROBE)
    r = launch(2, [str(d), 'global'], target=str(d/'probe.py'))
    return d, r

def test_two_ranks_match_one_process(two_ranks):
    d, _ = two_ranks
    r0, r1 = torch.load(d/'rank0.pt', weights_only=False), torch.load(d/'rank1.pt', weights_only=False)
    for a, b in zip(r0['w'], r1['w']): assert torch.equal(a, b)                 # all-reduce keeps the copies identical
    dls = image_dls(load_images('digits'), bs=128, augment=None, device='cpu', seed=0)
    row, learn = run(partial(mlp, hidden=(32,)), dls, epochs=2, lr=3e-3, quiet=True)  # one process, the combined batches
    diff = max((a - p.detach()).abs().max().item() for a, p in zip(r0['w'], learn.model.parameters()))
    assert diff <= 1e-5, diff
    assert abs(r0['row']['valid_loss'] - row['valid_loss']) < 1e-5             # metrics over the whole validation set
    assert r0['row']['valid_loss'] == r1['row']['valid_loss']

def test_launcher_rank0_writes(two_ranks):
    d, r = two_ranks
    df = pd.read_csv(d/'cli'/'results.csv')
    assert len(df) == 3 and set(df.world_size) == {2} and set(df.batch_rule) == {'global'}
    assert r.stdout.count('mlp16') == 1                                          # one rank prints
    assert '%|' not in r.stderr                                                  # no progress bars from any rank
