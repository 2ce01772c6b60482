"""Regenerate README.md from nbs/index.ipynb, as `nbdev_readme` does but without Quarto (which can't be installed here):
nbdev's own notebook processing (the same processors the docs use) writes _proc/, then pandoc (pypandoc-binary, pinned
in settings.ini) converts the processed index notebook to GitHub markdown.
  python .ci/make_readme.py           # write README.md
  python .ci/make_readme.py --check   # exit 1 if README.md is not what the notebook gives"""
import sys, json, re
import yaml
from pathlib import Path
from nbdev.config import get_config
from nbdev.serve import proc_nbs
import pypandoc

def render(root: Path) -> str:
    cfg = get_config(path=root)
    cache = proc_nbs(cfg.nbs_path, force=True, n_workers=0)           # processes every notebook: fails loudly if one can't be
    nb = json.loads((cache/cfg.readme_nb).read_text())
    fm = {}
    for c in nb['cells']:                                              # nbdev turns '# title' + '> description' into front matter
        if c['cell_type'] == 'raw':
            src = ''.join(c['source']).strip().strip('-')
            fm.update(yaml.safe_load(src) or {})
    nb['cells'] = [c for c in nb['cells'] if c['cell_type'] != 'raw']
    md = pypandoc.convert_text(json.dumps(nb), 'gfm-raw_html', format='ipynb', extra_args=['--wrap=none'])
    head = f"# {fm.get('title', cfg.lib_name)}\n\n"
    if fm.get('description'): head += f"> {fm['description']}\n\n"
    note = "<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n\n"
    return head + note + md.strip() + '\n'

if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    text = render(root)
    readme = root/'README.md'
    if '--check' in sys.argv:
        if readme.read_text() != text:
            sys.exit("README.md is out of date: run `python .ci/make_readme.py` and commit it")
        print("README.md is current")
    else:
        readme.write_text(text); print(f"wrote {readme}")
