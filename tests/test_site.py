"""The documentation site can be built and published: nbdev's config names the pages, the publish workflow is the
one nbdev projects use, and the test workflow runs what CI runs."""
from pathlib import Path
import configparser
import yaml

ROOT = Path(__file__).resolve().parent.parent

def _wf(name): return yaml.safe_load((ROOT/'.github'/'workflows'/name).read_text())

def test_deploy_workflow_publishes_with_quarto():
    wf = _wf('deploy.yaml')
    steps = [s.get('uses', '') for job in wf['jobs'].values() for s in job['steps']]
    assert any(s.startswith('fastai/workflows/quarto-ghp') for s in steps), steps
    assert 'main' in wf[True]['push']['branches']   # YAML reads the key `on` as True
    assert wf['permissions']['contents'] == 'write'

def test_test_workflow_runs_ci_script():
    wf = _wf('test.yaml')
    runs = [s.get('run', '') for job in wf['jobs'].values() for s in job['steps']]
    assert 'bash .ci/run' in runs, runs

def test_docs_config():
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    d = cfg['DEFAULT']
    assert d['doc_path'] == '_docs' and d['nbs_path'] == 'nbs' and d['custom_sidebar'] == 'True'
    site = yaml.safe_load((ROOT/'nbs'/'nbdev.yml').read_text())['website']['site-url']
    assert site == d['doc_host'] + d['doc_baseurl']   # the index links pages under this address
