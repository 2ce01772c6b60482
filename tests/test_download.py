"""The download path of `dlcourse.data.fetch`, against a real HTTP server on 127.0.0.1 serving fixture archives."""
import http.server, threading, socket, shutil
from dataclasses import replace
from pathlib import Path
import pytest
from dlcourse.data import fetch, make_fixture, DownloadError, ChecksumError, read_imdb

class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate = False
    def log_message(self, *a): pass
    def do_GET(self):
        self.server.requests.append(self.path)
        p = Path(self.server.root)/self.path.lstrip('/')
        if not p.is_file(): self.send_error(404); return
        data = p.read_bytes()
        self.send_response(200); self.send_header('Content-Length', str(len(data))); self.end_headers()
        self.wfile.write(data[:len(data) // 2] if self.server.truncate else data)

@pytest.fixture
def server(tmp_path):
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    srv.root, srv.requests, srv.truncate = tmp_path/'served', [], False
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    yield srv
    srv.shutdown(); srv.server_close()

@pytest.fixture
def imdb(tmp_path, server):
    "A fixture IMDB archive served at http://127.0.0.1:PORT/aclImdb_v1.tar.gz, and its DatasetInfo pointing there."
    info = make_fixture('imdb', tmp_path/'made')
    (tmp_path/'served').mkdir()
    shutil.copy(tmp_path/'made'/'imdb'/'aclImdb_v1.tar.gz', tmp_path/'served')
    url = f'http://127.0.0.1:{server.server_address[1]}/aclImdb_v1.tar.gz'
    return replace(info, resources=(replace(info.resources[0], urls=(url,)),))

def test_good_download_is_verified_and_extracted(tmp_path, server, imdb, monkeypatch):
    monkeypatch.delenv('DLCOURSE_LOCAL_DATA', raising=False)
    cache = tmp_path/'cache'
    out = fetch(imdb, cache=cache, progress=False)
    folder = out['aclImdb_v1.tar.gz']
    assert folder == cache/'imdb'/'aclImdb_v1' and folder.is_dir()
    texts, labels = read_imdb(folder, 'train')
    assert len(texts) == 40 and sorted(set(labels)) == [0, 1]
    assert (cache/'imdb'/'aclImdb_v1.tar.gz').is_file() and not list((cache/'imdb').glob('*.part'))
    assert server.requests == ['/aclImdb_v1.tar.gz']

def test_cached_file_makes_no_request(tmp_path, server, imdb, monkeypatch):
    monkeypatch.delenv('DLCOURSE_LOCAL_DATA', raising=False)
    fetch(imdb, cache=tmp_path/'cache', progress=False)
    server.requests.clear()
    fetch(imdb, cache=tmp_path/'cache', progress=False)
    assert server.requests == []

def test_wrong_checksum_removes_file_and_leaves_no_folder(tmp_path, server, imdb, monkeypatch):
    monkeypatch.delenv('DLCOURSE_LOCAL_DATA', raising=False)
    bad = replace(imdb, resources=(replace(imdb.resources[0], sha256='0' * 64),))
    cache = tmp_path/'cache'
    with pytest.raises(DownloadError, match='checksum mismatch'):
        fetch(bad, cache=cache, progress=False)
    assert not (cache/'imdb'/'aclImdb_v1.tar.gz').exists()
    assert not (cache/'imdb'/'aclImdb_v1').exists()
    assert not [p for p in (cache/'imdb').iterdir()]             # no .part file, no partial extraction

def test_truncated_transfer_is_an_error(tmp_path, server, imdb, monkeypatch):
    monkeypatch.delenv('DLCOURSE_LOCAL_DATA', raising=False)
    server.truncate = True
    with pytest.raises(DownloadError) as e:
        fetch(imdb, cache=tmp_path/'cache', progress=False)
    assert 'truncated' in str(e.value) or 'IncompleteRead' in str(e.value) or 'incomplete' in str(e.value).lower()
    assert not (tmp_path/'cache'/'imdb'/'aclImdb_v1.tar.gz').exists()

def test_server_down_gives_the_offline_message(tmp_path, imdb, monkeypatch):
    monkeypatch.delenv('DLCOURSE_LOCAL_DATA', raising=False)
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]   # a port nobody listens on
    down = replace(imdb, resources=(replace(imdb.resources[0], urls=(f'http://127.0.0.1:{port}/aclImdb_v1.tar.gz',)),))
    cache = tmp_path/'cache'
    with pytest.raises(DownloadError) as e:
        fetch(down, cache=cache, progress=False)
    msg = str(e.value)
    assert f'127.0.0.1:{port}' in msg                              # the URL that was tried
    assert down.resources[0].checksum in msg                       # the checksum the file must have
    assert str(cache/'imdb'/'aclImdb_v1.tar.gz') in msg            # where to put it by hand

def test_local_copy_is_used_and_checked(tmp_path, imdb, monkeypatch):
    local = tmp_path/'made'                                         # holds imdb/aclImdb_v1.tar.gz
    monkeypatch.setenv('DLCOURSE_LOCAL_DATA', str(local))
    no_url = replace(imdb, resources=(replace(imdb.resources[0], urls=()),))
    out = fetch(no_url, cache=tmp_path/'cache', progress=False)
    assert out['aclImdb_v1.tar.gz'].is_dir()
    (local/'imdb'/'aclImdb_v1.tar.gz').write_bytes(b'not the archive')
    with pytest.raises(ChecksumError, match='does not match'):
        fetch(replace(no_url, name='imdb'), cache=tmp_path/'cache2', progress=False)
