"""No unsafe loads: every `torch.load` pins `weights_only=True`; pickles are read only from checksum-verified
files; checkpoints live in a private folder, never the shared temp folder."""
import ast, gc, os, pickle, tempfile
from functools import partial
from pathlib import Path
import pytest
import dlcourse

PKG = Path(dlcourse.__file__).parent
# (module, function) pairs allowed to unpickle, and why
VERIFIED = {('data.py', 'read_cifar10'): "CIFAR-10's python batches, from the registry's sha256-verified archive",
            ('text.py', 'load_word_vectors'): "a gensim .kv file, only after `check_file` matched the caller's checksum"}

def _calls(path):
    "(function name, call node) for every call in the module at `path`."
    tree = ast.parse(path.read_text())
    def walk(node, fn):
        for ch in ast.iter_child_nodes(node):
            f = ch.name if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn is None else fn   # the top-level function
            if isinstance(ch, ast.Call): yield f, ch
            yield from walk(ch, f)
    yield from walk(tree, None)

def _name(call):
    f = call.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name): return f'{f.value.id}.{f.attr}'
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) and isinstance(f.value.value, ast.Name):
        return f'{f.value.value.id}.{f.value.attr}.{f.attr}'
    return getattr(f, 'id', None)

def _kw(call, name):
    k = next((k for k in call.keywords if k.arg == name), None)
    return k.value.value if k is not None and isinstance(k.value, ast.Constant) else None

def unsafe_loads(pkg=PKG):
    "Every load in the package that could run code from a file: 'file:function: call'."
    bad = []
    for p in sorted(pkg.glob('*.py')):
        for fn, c in _calls(p):
            n = _name(c)
            where = f"{p.name}:{fn}: {n}"
            if n in ('torch.load', 'load') and n == 'torch.load' and _kw(c, 'weights_only') is not True: bad.append(where)
            elif n in ('pickle.load', 'pickle.loads', 'KeyedVectors.load', 'Word2Vec.load', 'joblib.load', 'dill.load') \
                 and (p.name, fn) not in VERIFIED: bad.append(where)
            elif n in ('np.load', 'numpy.load') and _kw(c, 'allow_pickle') is not False and any(k.arg == 'allow_pickle' for k in c.keywords): bad.append(where)
    return bad

def test_no_unpinned_or_unverified_loads():
    assert unsafe_loads() == []

def test_the_grep_can_fail(tmp_path):
    (tmp_path/'m.py').write_text("import torch, pickle, numpy as np\n"
                                 "def f(p):\n    torch.load(p)\n    torch.load(p, weights_only=False)\n    pickle.load(open(p, 'rb'))\n"
                                 "    np.load(p, allow_pickle=True)\n    torch.load(p, weights_only=True)\n")
    assert unsafe_loads(tmp_path) == ['m.py:f: torch.load', 'm.py:f: torch.load', 'm.py:f: pickle.load', 'm.py:f: np.load']

class _Boom:
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))

def test_a_pickled_kv_file_is_never_run(tmp_path):
    from dlcourse.text import load_word_vectors
    b = _Boom(); b.marker = tmp_path/'pwned'
    (tmp_path/'v.kv').write_bytes(pickle.dumps(b))
    with pytest.raises(ValueError, match='is a pickle'): load_word_vectors(tmp_path/'v.kv')
    with pytest.raises(ValueError, match='does not match'): load_word_vectors(tmp_path/'v.kv', checksum='sha256:' + '0' * 64)
    assert not (tmp_path/'pwned').exists()

@pytest.fixture(scope='module')
def dls():
    from dlcourse.images import image_dls, load_images
    return image_dls(load_images('digits'), bs=64, device='cpu', augment=None)

def test_checkpoints_are_private_and_removed(dls, tmp_path, monkeypatch):
    from dlcourse.train import run, make_learner, mlp
    shared = Path(tempfile.gettempdir())/'models'
    planted = tmp_path/'victim.txt'; planted.write_text('keep me')
    shared.mkdir(exist_ok=True)
    link = shared/'best.pth'
    created = not link.exists() and not link.is_symlink()
    if created: link.symlink_to(planted)                      # the attack of the issue: a link where fastai used to write
    try:
        row, learn = run(partial(mlp, hidden=(16,)), dls, epochs=2, lr=3e-3, save_best=True, quiet=True)
        assert planted.read_text() == 'keep me'
        p = learn.path
        assert p != Path(tempfile.gettempdir()) and p.name.startswith('dlcourse-learner-') and oct(p.stat().st_mode)[-3:] == '700'
        other = make_learner(mlp(), dls, quiet=True)
        assert other.path != p                               # two learners never share a folder
        assert (p/'models'/'best.pth').exists()
        del learn, other; gc.collect()
        assert not p.exists()                                # removed with its learner
    finally:
        if created: link.unlink()

def test_save_best_loads_back_the_best_epoch(dls):
    import torch
    from dlcourse.train import run, mlp
    row, learn = run(partial(mlp, hidden=(16,)), dls, epochs=3, lr=3e-3, save_best=True, quiet=True)
    best = min(learn.history.valid_loss)
    assert abs(row['valid_loss'] - best) < 1e-5
    sd = torch.load(learn.path/'models'/'best.pth', weights_only=True)           # a plain state dict
    assert all(torch.equal(sd[k], v) for k, v in learn.model.state_dict().items())
