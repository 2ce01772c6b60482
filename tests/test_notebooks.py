"""What a reader sees: every committed notebook's saved outputs are clean and fit the page, no notebook depends on
being inside the repo, and the landing page's links lead to pages the site will have."""
import base64, io, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
CHAPTERS = [p for p in NBS if p.name != 'index.ipynb']
MAX_W = 700
BAR = re.compile(r'[█▉▊▋▌▍▎▏]|\b0\.00% \[|\|\s*\d+/\d+ \[|<progress')
WARN = re.compile(r'\b\w*Warning\b|warnings\.warn\(')
PATH = re.compile(r'(?<![\w.~])/(work|tmp|home)/')

def _src(x): return ''.join(x) if isinstance(x, list) else x
def _cells(p): return json.loads(p.read_text())['cells']
def _outputs(p):
    for i, c in enumerate(_cells(p)):
        for o in c.get('outputs', []): yield i, o
def _texts(o):
    if 'text' in o: yield _src(o['text'])
    for k, v in o.get('data', {}).items():
        if k.startswith('text/') or k == 'application/json': yield _src(v) if isinstance(v, (str, list)) else json.dumps(v)

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_outputs_are_clean(nb):
    bad = []
    for i, o in _outputs(nb):
        if o.get('output_type') == 'stream' and o.get('name') == 'stderr': bad.append(f'cell {i}: a stderr stream')
        if o.get('output_type') == 'error': bad.append(f'cell {i}: a traceback')
        for t in _texts(o):
            if '\r' in t: bad.append(f'cell {i}: a carriage return (progress-bar debris)')
            if m := BAR.search(t): bad.append(f'cell {i}: progress-bar text {m.group(0)!r}')
            if m := WARN.search(t): bad.append(f'cell {i}: warning text {t[max(0, m.start()-60):m.end()+40]!r}')
            if m := PATH.search(t): bad.append(f'cell {i}: a machine path {t[max(0, m.start()-20):m.end()+40]!r}')
    assert not bad, f"{nb.name}: clean these outputs (python /work/tools/site15_transform.py, or re-run the cell):\n" + '\n'.join(bad)

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_figures_fit_the_page(nb):
    "Every PNG is shown at most 700 px wide: its `width` metadata (a retina PNG has 2x pixels, shown at half) or its pixel width."
    from PIL import Image
    wide = []
    for i, o in _outputs(nb):
        if png := o.get('data', {}).get('image/png'):
            w = Image.open(io.BytesIO(base64.b64decode(_src(png)))).width
            shown = (o.get('metadata', {}).get('image/png') or {}).get('width', w)
            if shown > MAX_W or w > 2 * MAX_W: wide.append(f'cell {i}: shown {shown} px ({w} px of pixels)')
    assert not wide, f"{nb.name}: PNG outputs wider than {MAX_W} px (use dlcourse.style.figsize):\n" + '\n'.join(wide)

@pytest.mark.parametrize('nb', CHAPTERS, ids=lambda p: p.name)
def test_runs_outside_the_repo(nb):
    "No export cells (they need the repo); the hidden setup cell installs the library in Colab and loads the Run-all guard."
    cells = [c for c in _cells(nb) if c['cell_type'] == 'code']
    export = [i for i, c in enumerate(cells) if 'nbdev_export' + '(' in _src(c['source']) or re.search(r'^\s*(import nbdev|from nbdev\b)', _src(c['source']), re.M)]
    assert not export, f"{nb.name}: remove the nbdev export cells {export}"
    setup = [i for i, c in enumerate(cells) if re.search(r'^%load_ext dlcourse.style\s*$', _src(c['source']), re.M)]
    assert len(setup) == 1 and 'google.colab' in _src(cells[setup[0]]['source']), f"{nb.name}: needs the one setup cell"
    assert setup[0] <= 1, f"{nb.name}: the setup cell must come first (after `#| default_exp`)"

def _page(nb_name: str) -> str:
    "The page nbdev makes for a notebook: `10_lenet.ipynb` -> `lenet.html` (nbdev.doclinks._nbpath2html)."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb_name.lower()).rsplit('.', 1)[0] + '.html'

@pytest.mark.nbdev
def test_page_names_are_nbdevs():
    from nbdev.doclinks import _nbpath2html
    for p in NBS: assert _page(p.name) == _nbpath2html(Path(p.name)).name
    assert _page('10_lenet.ipynb') == 'lenet.html' and _page('00a_experiments.ipynb') == 'experiments.html'

def test_index_links_resolve():
    text = '\n'.join(_src(c['source']) for c in _cells(ROOT/'nbs'/'index.ipynb') if c['cell_type'] == 'markdown')
    links = re.findall(r'\]\(([^)\s]+)\)', text)
    pages = {_page(p.name) for p in NBS} | {'index.html'}
    repo = 'https://github.com/dlcourse/dlcourse/blob/main/nbs/'
    colab = 'https://colab.research.google.com/github/dlcourse/dlcourse/blob/main/nbs/'
    docs = 'https://dlcourse.github.io/dlcourse/'   # settings.ini doc_host + doc_baseurl: links that work on the site and in README.md
    bad = []
    for l in links:
        if l.startswith(docs): l = l[len(docs):]
        if l.startswith(('http://', 'https://')):
            for pre in (repo, colab):
                if l.startswith(pre) and not (ROOT/'nbs'/l[len(pre):]).exists(): bad.append(l)
        elif not l.startswith('#') and l.split('#')[0] not in pages: bad.append(l)
    assert not bad, f"links in nbs/index.ipynb that the site will not have (use the .html page names): {bad}"
    linked = {l.split('#')[0].replace(docs, '') for l in links}
    missing = [p.name for p in CHAPTERS if _page(p.name) not in linked]
    assert not missing, f"chapters the index does not link: {missing}"

def test_sidebar_lists_every_notebook():
    "settings.ini has custom_sidebar = True: a notebook missing from nbs/sidebar.yml has no way in on the site."
    import yaml
    def names(items):
        for it in items:
            if isinstance(it, str): yield it
            elif isinstance(it, dict): yield from names(it.get('contents', []))
    listed = set(names(yaml.safe_load((ROOT/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']))
    assert {p.name for p in NBS} <= listed, f"not in nbs/sidebar.yml: {sorted({p.name for p in NBS} - listed)}"
    assert listed <= {p.name for p in NBS}, f"nbs/sidebar.yml lists missing notebooks: {sorted(listed - {p.name for p in NBS})}"
