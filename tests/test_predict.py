"""Use a trained model: predict, test_dl/get_preds, interpretation and a save/load round trip for the image,
text-classification and language-model families; NaN runs and pre-fit evaluation."""
import json, math
from functools import partial
import numpy as np, pandas as pd, pytest, torch
from fastai.callback.core import Callback
from fastai.interpret import ClassificationInterpretation
from dlcourse.train import run, compare, mlp, save_model, load_model, Variant, to_json, from_json
from dlcourse.images import image_dls, load_images
from dlcourse.text import text_clf_dls, lm_dls, Vocab, tokenize
from dlcourse.layers import RNNClassifier
from dlcourse.char_lm import lm_model

@pytest.fixture(scope='module')
def digits(): return load_images('digits')

@pytest.fixture(scope='module')
def image_run(digits):
    dls = image_dls(digits, bs=64, device='cpu', augment=None)
    return dls, run(partial(mlp, hidden=(32,)), dls, epochs=2, lr=3e-3, quiet=True)[1]

TEXTS = ['good film', 'bad film', 'great fun', 'awful plot', 'good fun', 'bad plot', 'a good good film', 'so bad and awful'] * 5
LABELS = [1, 0, 1, 0, 1, 0, 1, 0] * 5

@pytest.fixture(scope='module')
def text_run():
    dls = text_clf_dls((TEXTS, LABELS), (TEXTS[:8], LABELS[:8]), bs=4, device='cpu', classes=['neg', 'pos'])
    return dls, run(partial(RNNClassifier, len(dls.vocab), 2, emb_sz=8, hidden=8), dls, epochs=3, lr=1e-2, quiet=True)[1]

@pytest.fixture(scope='module')
def lm_run():
    v = Vocab.build([tokenize(t) for t in TEXTS])
    ids = torch.tensor([i for t in TEXTS for i in v.encode(tokenize(t))])
    dls = lm_dls(ids, ids[:40], bs=4, bptt=5, device='cpu', vocab=v)
    return dls, run(partial(lm_model, 'gru', len(v), emb=8, hidden=16, stateful=True), dls, epochs=2, lr=1e-2, quiet=True, metrics=[])[1]

def test_image_predict_normalises_like_training(image_run, digits):
    dls, learn = image_run
    label, idx, probs = learn.predict(digits.test[0][0])                    # a raw uint8 image
    assert label == dls.valid.classes[int(idx)] and probs.shape == (10,) and abs(float(probs.sum()) - 1) < 1e-5
    preds, targs = learn.get_preds(dl=dls.test)
    assert torch.allclose(probs, preds[0], atol=1e-6)                       # same as the normalised test loader
    p2, _ = learn.get_preds(dl=dls.test_dl(list(digits.test[0][:20])))
    assert torch.allclose(p2, preds[:20], atol=1e-6)
    assert (preds.argmax(1) == targs).float().mean() > 0.7

def test_interpretation_image(image_run, digits):
    dls, learn = image_run                                                  # TerminateOnNaN used to fail here
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    preds, targs = learn.get_preds(dl=dls.valid)
    assert cm.shape == (10, 10) and cm.sum() == len(digits.valid[0]) and cm.trace() == int((preds.argmax(1) == targs).sum())
    losses, idx = interp.top_losses(5)
    assert losses.shape == (5,) and (losses[:-1] >= losses[1:]).all()
    interp.plot_confusion_matrix()
    assert interp.most_confused()[0][2] >= 1

def test_text_predict_and_get_preds_in_item_order(text_run):
    dls, learn = text_run
    label, idx, probs = learn.predict('a good film')
    assert label in ('neg', 'pos') and probs.shape == (2,)
    items = ['good fun', 'awful awful plot', 'bad', 'a good good film that was great fun']
    preds, _ = learn.get_preds(dl=dls.test_dl(items))                       # the loader sorts by length; fastai reorders back
    for t, p in zip(items, preds): assert torch.allclose(learn.predict(t)[2], p, atol=1e-6), t
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.confusion_matrix().sum() == 8 and list(interp.vocab) == ['neg', 'pos']
    losses, idx, its = interp.top_losses(2, items=True)
    assert all(t in TEXTS[:8] for t in its)

def test_lm_predict_is_the_next_token_distribution(lm_run):
    dls, learn = lm_run
    dec, ids, probs = learn.predict('so bad')
    assert probs.shape == (2, len(dls.vocab)) and len(dec.split()) == 2
    dl = dls.test_dl(['so bad', 'good'])
    preds, _ = learn.get_preds(dl=dl)
    assert torch.allclose(dl.last(preds)[0], probs[-1], atol=1e-6)          # the state is reset per prompt
    assert torch.allclose(dl.last(preds)[1], learn.predict('good')[2][-1], atol=1e-6)

@pytest.mark.parametrize('family', ['image_run', 'text_run', 'lm_run'])
def test_save_load_round_trip(family, request, tmp_path, digits):
    dls, learn = request.getfixturevalue(family)
    items = {'image_run': list(digits.test[0][:7]), 'text_run': ['good fun', 'awful plot', 'unseen words here'],
             'lm_run': ['good', 'so bad and']}[family]
    before, _ = learn.get_preds(dl=dls.test_dl(items))
    save_model(learn, tmp_path, name=family)
    cfg = json.loads((tmp_path/'model.json').read_text())
    assert cfg['info'] == {'name': family} and sorted(p.name for p in tmp_path.iterdir()) == ['model.json', 'model.pth']
    back = load_model(tmp_path, device='cpu')
    after, _ = back.get_preds(dl=back.dls.test_dl(items))
    assert torch.allclose(before, after, atol=1e-6)
    assert back.predict(items[0])[0] == learn.predict(items[0])[0]

def test_model_files_name_only_allowed_code(tmp_path, image_run):
    dls, learn = image_run
    with pytest.raises(ValueError, match='lambda or local function'): save_model(learn, tmp_path, model_fn=lambda: mlp())
    assert from_json(to_json(partial(mlp, hidden=(8, 4)))).keywords == {'hidden': (8, 4)}
    save_model(learn, tmp_path)
    cfg = json.loads((tmp_path/'model.json').read_text())
    cfg['model'] = {'partial': 'os:system', 'args': ['touch pwned'], 'kwargs': {}}
    (tmp_path/'model.json').write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match='refusing to import'): load_model(tmp_path)

class CountEpochs(Callback):
    "Counts `after_epoch` events (an Optuna pruner relies on them firing for trained epochs only)."
    def __init__(self): self.n = 0
    def after_epoch(self): self.n += 1

def test_pre_fit_evaluation_is_not_an_epoch(digits):
    dls = image_dls(digits, bs=64, device='cpu', augment=None)
    c = CountEpochs()
    row, learn = run(partial(mlp, hidden=(16,)), dls, epochs=2, lr=3e-3, quiet=True, cbs=[c], save_best=True, patience=5)
    assert c.n == 2 and row['epochs'] == 2
    assert row['initial_loss'] > 2.0                                        # the untrained model, measured before the fit

def test_nan_marks_the_variant_and_keeps_the_others(digits):
    dls = image_dls(digits, bs=64, device='cpu', augment=None)
    df = compare({'ok': partial(mlp, hidden=(16,)), 'boom': Variant(partial(mlp, hidden=(16,)), lr=1e8, opt='sgd')}, dls, epochs=2, lr=3e-3, verbose=False)
    assert df.name.tolist() == ['ok', 'boom'] and df.status.tolist() == ['ok', 'diverged']
    boom = df.iloc[1]
    assert boom.diverged_epoch == 1 and boom.epochs == 0
    assert np.isnan([boom.valid_loss, boom.valid_accuracy, boom.test_accuracy, boom.train_loss]).all()  # nothing as if trained
    assert df.iloc[0].valid_accuracy > 0.5
