"""Every bad input gets one clear line (an `InputError`) naming what is wrong and where, before any training."""
import os, sys, subprocess
from dataclasses import replace
from pathlib import Path
import pytest, torch
from torch import nn
from dlcourse.core import InputError, check_env, check_seed
from dlcourse.data import make_fixture, file_hash, read_trec, read_imdb, read_names, read_yelp
from dlcourse.text import Vocab, text_clf_dls, load_text_clf, UnknownTokenError
from dlcourse.images import image_dls, ImageData
from dlcourse.char_lm import char_vocab, name_dls
from dlcourse.train import run

def raises(match, fn, *a, exc=InputError, **kw):
    "Call `fn`; it must raise `exc` with a one-line message containing `match`."
    with pytest.raises(exc) as e: fn(*a, **kw)
    msg = str(e.value)
    assert '\n' not in msg and match in msg, msg
    return msg

TEXTS = ['good film', 'bad film', 'great fun', 'awful plot'] * 4

class Bag(nn.Module):
    def __init__(self, n_tok, n_out=2): super().__init__(); self.e, self.l = nn.EmbeddingBag(n_tok, 4), nn.Linear(4, n_out)
    def forward(self, x, lengths): return self.l(self.e(x))           # (bs, n_out)

def test_string_labels():
    raises("training labels: label 'pos' of item 0 is a string, not a class id; map labels to 0..C-1",
           text_clf_dls, (TEXTS, ['pos', 'neg'] * 8), (TEXTS[:2], [1, 0]), device='cpu')
    raises("validation labels: label 'neg' of item 1 is a string", text_clf_dls, (TEXTS, [1, 0] * 8), (TEXTS[:2], [1, 'neg']), device='cpu')
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    raises("train labels: label 'cat' of item 0 is a string", image_dls, ImageData((x, ['cat', 'dog'] * 2), (x, [0, 1] * 2), None, ['cat', 'dog']), bs=2, device='cpu')

def test_label_outside_the_classes_is_caught_before_training():
    dls = text_clf_dls((TEXTS, [0, 1] * 8), (TEXTS[:2], [0, 1]), (TEXTS[:3], [0, 5, 1]), bs=4, device='cpu')
    built = []
    def model(): built.append(1); return Bag(len(dls.vocab))
    raises("test set: label 5 of item 1 is outside the 2 classes 0..1", run, model, dls, 1)
    assert built == []                                                  # nothing was built or trained

def test_drop_last_with_a_batch_larger_than_the_data():
    dls = text_clf_dls((TEXTS, [0, 1] * 8), (TEXTS[:2], [0, 1]), bs=4, device='cpu')
    dls.train.bs, dls.train.drop_last = 64, True
    raises("the training loader yields no batches: 16 items, bs=64, drop_last=True", run, lambda: Bag(len(dls.vocab)), dls, 1)
    dls.train.bs = 0
    raises("the training batch size must be >= 1, got bs=0", run, lambda: Bag(len(dls.vocab)), dls, 1)

def test_character_seen_only_in_dev():
    v = char_vocab(['anna', 'bob'])
    raises("valid word 0 ('zoe') has 'z', which is not in the vocabulary", name_dls,
           dict(train=['anna', 'bob'], valid=['zoe'], test=['ann']), v, device='cpu', exc=UnknownTokenError)
    with pytest.raises(KeyError): v.encode(['z'])                        # still a KeyError for code that catches one

def test_word_seen_only_in_dev_maps_to_unk():
    dls = text_clf_dls((TEXTS, [0, 1] * 8), (['unseen words here'], [0]), bs=4, device='cpu')
    ids, lengths, y = dls.valid.one_batch()
    assert (ids == dls.vocab.unk_idx).all()                              # the text vocabulary has <unk>: no error needed

def _trec_with(tmp_path, extra:bytes, file='TREC_10.label'):
    fx = make_fixture('trec', tmp_path); p = tmp_path/'trec'/file; p.write_bytes(p.read_bytes() + extra)
    return replace(fx, resources=tuple(replace(r, sha256=file_hash(tmp_path/'trec'/r.filename), size=None) for r in fx.resources))

def test_trec_label_only_in_test(tmp_path):
    fx = _trec_with(tmp_path, b'WEIRD:x What is this ?\n')
    raises("TREC_10.label: question 30 has label 'WEIRD', which no training question has; valid: ABBR, DESC",
           load_text_clf, 'trec', info=fx, cache=tmp_path)

def test_malformed_trec_line_names_file_and_line(tmp_path):
    fx = _trec_with(tmp_path, b'What is missing here ?\n', 'train_5500.label')
    n = len((tmp_path/'trec'/'train_5500.label').read_bytes().splitlines())
    raises(f"train_5500.label:{n}: not a TREC line 'COARSE:fine question': 'What is missing here ?'", load_text_clf, 'trec', info=fx, cache=tmp_path)
    (tmp_path/'t.label').write_bytes(b'DESC:manner How ?\nNUM:count\n')
    raises("t.label:2: not a TREC line", read_trec, tmp_path/'t.label')

def test_non_utf8_files_name_file_and_line(tmp_path):
    root = tmp_path/'aclImdb'
    for lab in ('neg', 'pos'): (root/'train'/lab).mkdir(parents=True); (root/'train'/lab/'0_3.txt').write_text('fine')
    (root/'train'/'pos'/'1_9.txt').write_bytes(b'line one\ncaf\xe9')
    raises(f"{root/'train'/'pos'/'1_9.txt'}:2: not valid utf-8 (byte 0xe9 at offset 12); re-save the file as utf-8", read_imdb, root, 'train')
    (tmp_path/'names.txt').write_bytes(b'anna\nzo\xeb\n')
    raises("names.txt:2: not valid utf-8 (byte 0xeb", read_names, tmp_path/'names.txt')
    (tmp_path/'y').mkdir(); (tmp_path/'y'/'train.csv').write_bytes(b'"1","ok"\n"2","\xff"\n')
    raises("train.csv:2: not valid utf-8 (byte 0xff", read_yelp, tmp_path/'y')

def test_vocabulary_without_pad():
    raises("the vocabulary has no '<pad>' token", text_clf_dls, (TEXTS, [0, 1] * 8), (TEXTS[:2], [0, 1]), vocab=Vocab(['<unk>', 'good']), device='cpu')

def _py(code, **env):
    e = {k: v for k, v in os.environ.items() if k not in ('DLCOURSE_THREADS', 'IN_TEST')}   # these import torch at start: slow
    e.update(PYTHONPATH=str(Path(__file__).parents[1]), **env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=e, timeout=120, cwd=Path(__file__).parents[1])

@pytest.mark.parametrize('var,val,msg', [('DLCOURSE_THREADS', 'two', "DLCOURSE_THREADS='two' is not valid: expected an integer >= 1"),
                                         ('DLCOURSE_THREADS', '0', "DLCOURSE_THREADS='0' is not valid"),
                                         ('DLCOURSE_DEVICE', 'gpu', "DLCOURSE_DEVICE='gpu' is not a device; valid: cpu, cuda, cuda:N, mps"),
                                         ('DLCOURSE_SCALE', 'huge', "DLCOURSE_SCALE='huge' is not a scale; valid: smoke, full")])
def test_bad_environment_variables(monkeypatch, var, val, msg):
    monkeypatch.setenv(var, val)
    raises(msg, check_env)
    cli = _py("import sys; from dlcourse.cli import main; sys.exit(main(['run', 'mlp-digits', '--epochs', '1']))", **{var: val})
    assert cli.returncode == 2 and cli.stderr == f"dlcourse: error: {msg}" + cli.stderr.split(msg, 1)[1], cli.stderr
    assert cli.stderr.count('\n') == 1 and 'Traceback' not in cli.stderr

def test_bad_threads_is_no_traceback_at_import():
    r = _py("import dlcourse.core, dlcourse.data, dlcourse.cli; print('imported')", DLCOURSE_THREADS='two')
    assert r.returncode == 0 and r.stdout.strip() == 'imported', r.stderr

@pytest.mark.parametrize('seed', ['-1', '4294967296', '1.5'])
def test_seed_out_of_range_in_the_cli(seed):
    r = _py(f"import sys; from dlcourse.cli import main; sys.exit(main(['run', 'mlp-digits', '--seed', '{seed}']))")
    assert r.returncode == 2 and r.stderr == f"dlcourse: error: argument --seed: must be an integer in 0..4294967295, got '{seed}'\n", r.stderr
    raises('seed must be an integer in 0..4294967295', check_seed, -1)
