"The GPU run kit (.ci/gpu_*.py): finding the cells, the set-up slice, the splice round trip, the bundle's contents. Fast: no run."
import hashlib, json, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'.ci'))
import gpu_suite, gpu_splice, gpu_bundle  # noqa: E402

def code(src, id): return dict(cell_type='code', id=id, metadata={}, execution_count=None, outputs=[], source=src.splitlines(True))
def md(src, id): return dict(cell_type='markdown', id=id, metadata={}, source=src.splitlines(True))

def tiny_nb():
    return dict(nbformat=4, nbformat_minor=5, metadata={}, cells=[
        code('#| hide\n%load_ext dlcourse.style', 'a0'),
        code('#| export\ndef f(x): return 2 * x', 'a1'),
        code('import math', 'a2'),
        code('data = list(range(3))\nassert len(data) == 3', 'a3'),
        code('unused = f(10)\nassert unused == 20', 'a4'),
        code('#| slow\nbig = f(10**6)', 'a5'),
        md('The GPU cell:', 'a6'),
        code('#| gpu\n# kit: 120 s, shared\nres = [f(d) for d in data]\nres', 'a7'),
        code('#| gpu\n# kit: off (hours)\nf(big)', 'a8')])

def test_directives_and_specs():
    test = gpu_suite.kit_spec
    assert test('120 s') == dict(on=True, budget=120., shared=False, why='')
    assert test('300 s, shared')['shared'] and test('300 s, shared')['budget'] == 300
    assert test('off (hours)') == dict(on=False, budget=0, shared=False, why='hours')
    assert test('')['budget'] == gpu_suite.DEFAULT_BUDGET
    flags, kit = gpu_suite.directives('#| gpu\n# kit: 60 s\nx = 1\n# kit: 5 s')
    assert flags == {'gpu'} and kit == '60 s'      # only the leading comment block counts

def test_setup_slice(tmp_path):
    nb = tiny_nb()
    p = tmp_path/'t.ipynb'; p.write_text(json.dumps(nb))
    cells = gpu_suite.gpu_cells(p)
    assert [(i, cid, s['on']) for i, cid, s in cells] == [(7, 'a7', True), (8, 'a8', False)]
    # setup + export + imports always; the cell defining `data` (used by the gpu cell); not the test of `unused`, not #| slow
    assert gpu_suite.setup_cells(nb['cells'], [7]) == [0, 1, 2, 3]

def test_course_gpu_cells_are_kit_ready():
    "Every kit cell of the course reads its scale from `kit_scale()` (so the CPU dry run is smoke) and has a budget."
    found = gpu_suite.find()
    assert any(p.stem == '11_resnet' for p in found)
    for p, cells in found.items():
        nb = json.loads(p.read_text())['cells']
        for i, cid, s in cells:
            src = gpu_suite.src_of(nb[i])
            if s['on']:
                assert "scale='full'" not in src and 'kit_scale()' in src, f"{p.name} cell {i}: use scale=kit_scale()"
                assert 0 < s['budget'] <= 540
            else: assert s['why'], f"{p.name} cell {i}: say why the kit skips it"
    on = sum(s['budget'] for c in found.values() for _, _, s in c if s['on'] and not s['shared'])
    assert on <= 540, f"the exclusive budgets add up to {on} s, more than the 9-minute deadline"

def result_for(nb, idx, outputs, status='ok'):
    c = nb['cells'][idx]
    return dict(notebook='nbs/t.ipynb', cells=[dict(idx=idx, id=c['id'], sha256=hashlib.sha256(''.join(c['source']).encode()).hexdigest(),
                                                     status=status, seconds=1.0, outputs=outputs)])

OUT = [dict(output_type='execute_result', data={'text/plain': ['[0, 2, 4]']}, metadata={}, execution_count=3)]

def test_splice_round_trip(tmp_path):
    nbs, res_dir = tmp_path/'nbs', tmp_path/'out'
    nbs.mkdir(); res_dir.mkdir()
    nb = tiny_nb(); (nbs/'t.ipynb').write_text(json.dumps(nb))
    (res_dir/'t.json').write_text(json.dumps(result_for(nb, 7, OUT)))
    assert gpu_splice.main([str(res_dir), '--nbs', str(nbs), '--no-clean']) == 0
    got = json.loads((nbs/'t.ipynb').read_text())
    assert got['cells'][7]['outputs'] == OUT and got['cells'][7]['execution_count'] is None
    assert [c['source'] for c in got['cells']] == [c['source'] for c in nb['cells']]   # nothing else changed
    assert all(c.get('outputs') in (None, []) for i, c in enumerate(got['cells']) if i != 7)

def test_splice_refuses_a_changed_cell(tmp_path):
    nbs, res_dir = tmp_path/'nbs', tmp_path/'out'
    nbs.mkdir(); res_dir.mkdir()
    nb = tiny_nb()
    (res_dir/'t.json').write_text(json.dumps(result_for(nb, 7, OUT)))
    nb['cells'][7]['source'] = ['#| gpu\n', 'res = 1']           # edited here after the run
    before = json.dumps(nb); (nbs/'t.ipynb').write_text(before)
    assert gpu_splice.main([str(res_dir), '--nbs', str(nbs), '--no-clean']) == 1
    assert (nbs/'t.ipynb').read_text() == before
    with pytest.raises(gpu_splice.Mismatch): gpu_splice.splice(result_for(tiny_nb(), 7, OUT) | {}, dict(cells=nb['cells']))
    gone = dict(cells=[c for c in tiny_nb()['cells'] if c['id'] != 'a7'])
    with pytest.raises(gpu_splice.Mismatch, match='not in the notebook'): gpu_splice.splice(result_for(tiny_nb(), 7, OUT), gone)

def test_splice_skips_failed_cells():
    nb = tiny_nb()
    assert gpu_splice.splice(result_for(nb, 7, OUT, status='timeout'), nb) == []
    assert gpu_splice.splice(result_for(nb, 7, OUT, status='timeout'), nb, keep_failed=True) == ['a7']

def test_bundle_has_no_spacy():
    "spacy is only for fastai.text: no notebook with gpu cells, and no module, imports it; the bundle leaves it (and fasthtml) out."
    for p in gpu_suite.find():
        assert 'fastai.text' not in p.read_text(), f"{p.name} imports fastai.text: the bundle would need spacy"
    assert not [m for m in (ROOT/'dlcourse').glob('*.py') if re.search(r'^\s*(from|import) fastai\.text', m.read_text(), re.M)]
    pkgs = gpu_bundle.bundle()
    assert {'fastai', 'fastcore', 'execnb', 'ipython'} <= set(pkgs)
    assert not {'spacy', 'thinc', 'python-fasthtml', 'apsw', 'torch', 'numpy', 'pandas'} & set(pkgs)
    assert pkgs['fastprogress'] == '1.0.3'
