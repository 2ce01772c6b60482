"""The download path of `dlcourse.data.fetch`, against a real HTTP server on 127.0.0.1 serving fixture archives."""
import http.server, threading, socket, shutil, re
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
    t = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True); t.start()
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

# ---- downloads that can't hang or collide (stall, deadline, size cap, locks, markers, one-line errors) ----
import io, os, time, errno, tarfile, warnings, multiprocessing as mp
from dlcourse.data import (StalledError, OversizeError, ArchiveError, CacheNotWritableError, LockTimeout, file_lock,
                           MARKER, file_hash)

class _Faulty(_Handler):
    "Serves the file with a fault: `drip` s between bytes, `stall` s of silence after 100 bytes, `extra` bytes too many, `delay` s first."
    def do_GET(self):
        s = self.server; s.requests.append(self.path)
        data = (Path(s.root)/self.path.lstrip('/')).read_bytes()
        time.sleep(s.delay)
        self.send_response(200)
        if not s.extra: self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        try:
            if s.drip:
                for b in data: self.wfile.write(bytes([b])); self.wfile.flush(); time.sleep(s.drip)
            elif s.stall:
                self.wfile.write(data[:100]); self.wfile.flush(); time.sleep(s.stall); self.wfile.write(data[100:])
            else: self.wfile.write(data + b'x' * s.extra)
        except OSError: pass                                        # the client gave up: that is the point

@pytest.fixture
def faulty(tmp_path):
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Faulty)
    srv.root, srv.requests, srv.drip, srv.stall, srv.extra, srv.delay = tmp_path/'served', [], 0, 0, 0, 0
    (tmp_path/'served').mkdir(exist_ok=True)
    t = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True); t.start()
    yield srv
    srv.shutdown(); srv.server_close()

def _serve(tmp_path, srv, info, data=None):
    "`info` with its one resource served by `srv` (optionally with other bytes, registered with their own hash and size)."
    r = info.resources[0]; f = tmp_path/'served'/r.filename
    if data is None: shutil.copy(tmp_path/'made'/info.name/r.filename, f)
    else: f.write_bytes(data)
    r = replace(r, urls=(f'http://127.0.0.1:{srv.server_address[1]}/{r.filename}',), sha256=file_hash(f), size=f.stat().st_size)
    return replace(info, resources=(r,))

@pytest.fixture
def imdb2(tmp_path, faulty, monkeypatch):
    monkeypatch.delenv('DLCOURSE_LOCAL_DATA', raising=False)
    return _serve(tmp_path, faulty, make_fixture('imdb', tmp_path/'made'))

def _one_line(e): assert '\n' not in str(e.value), str(e.value)

def test_stall_timeout(tmp_path, faulty, imdb2):
    faulty.stall = 5
    t = time.perf_counter()
    with pytest.raises(DownloadError, match=r'no data for 0.3 s \(stall timeout'):
        fetch(imdb2, cache=tmp_path/'cache', progress=False, timeout=0.3)
    assert time.perf_counter() - t < 3
    assert not list((tmp_path/'cache'/'imdb').iterdir())             # no .part, no lock file

def test_deadline_stops_a_drip(tmp_path, faulty, imdb2, monkeypatch):
    faulty.drip = 0.02                                                # a byte every 20 ms: never a stall
    monkeypatch.setenv('DLCOURSE_DEADLINE', '0.5')                    # the limit from the environment
    t = time.perf_counter()
    with pytest.raises(DownloadError, match=r'not finished after 0.5 s'):
        fetch(imdb2, cache=tmp_path/'cache', progress=False, timeout=2)
    assert time.perf_counter() - t < 3
    monkeypatch.setenv('DLCOURSE_DEADLINE', 'soon')
    with pytest.raises(ValueError, match="DLCOURSE_DEADLINE='soon' is not valid: expected a number"):
        fetch(imdb2, cache=tmp_path/'cache', progress=False)

def test_more_bytes_than_registered(tmp_path, faulty, imdb2):
    faulty.extra = 10                                                 # no Content-Length, 10 bytes too many
    with pytest.raises(DownloadError, match='sent more than the registered'):
        fetch(imdb2, cache=tmp_path/'cache', progress=False)
    small = replace(imdb2, resources=(replace(imdb2.resources[0], size=100),))
    faulty.extra = 0                                                  # announces more than the registry says
    with pytest.raises(DownloadError, match=r'announces [\d,]+ bytes, more than the registered 100'):
        fetch(small, cache=tmp_path/'cache', progress=False)
    assert not (tmp_path/'cache'/'imdb'/'aclImdb_v1.tar.gz').exists()

def test_corrupt_archive_is_one_line(tmp_path, faulty, imdb2):
    good = (tmp_path/'served'/'aclImdb_v1.tar.gz').read_bytes()
    bad = _serve(tmp_path, faulty, imdb2, good[:len(good) // 2])     # registered as is: the checksum passes, extraction fails
    with pytest.raises(ArchiveError, match=r'aclImdb_v1.tar.gz is damaged .*delete it and fetch it again') as e:
        fetch(bad, cache=tmp_path/'cache', progress=False)
    _one_line(e)
    assert not list((tmp_path/'cache'/'imdb').glob('.*partial*')) and not (tmp_path/'cache'/'imdb'/'aclImdb_v1').exists()

def _tar(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as t:
        for name, kind in members:
            i = tarfile.TarInfo(name)
            if kind == 'sym': i.type, i.linkname = tarfile.SYMTYPE, '/etc/passwd'
            elif kind == 'hard': i.type, i.linkname = tarfile.LNKTYPE, 'aclImdb/a.txt'
            else: i.size = 2
            t.addfile(i, io.BytesIO(b'hi') if kind == 'file' else None)
    return buf.getvalue()

@pytest.mark.parametrize('member,kind,why', [('aclImdb/evil', 'sym', 'is a link'), ('aclImdb/h', 'hard', 'is a link'),
                                             ('/tmp/evil.txt', 'file', 'is an absolute path'), ('aclImdb/../../evil.txt', 'file', "is a '..' path")])
def test_unsafe_members_are_refused(tmp_path, faulty, imdb2, member, kind, why):
    bad = _serve(tmp_path, faulty, imdb2, _tar(('aclImdb/a.txt', 'file'), (member, kind)))
    with pytest.raises(ArchiveError, match=f"member '{re.escape(member)}' {re.escape(why)}; refusing") as e:
        fetch(bad, cache=tmp_path/'cache', progress=False)
    _one_line(e)
    assert not (tmp_path/'cache'/'imdb'/'aclImdb_v1').exists() and not (tmp_path/'evil.txt').exists()

def _fetch_in_child(info, cache, q):
    try: q.put(str(fetch(info, cache=cache, progress=False)['aclImdb_v1.tar.gz']))
    except BaseException as e: q.put(repr(e))

def test_two_processes_fetch_at_once(tmp_path, faulty, imdb2):
    faulty.delay = 0.5                                                # both start before either has the file
    cache = tmp_path/'cache'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)           # fork with the server thread running: fine here
        ctx = mp.get_context('fork'); q = ctx.Queue()
        ps = [ctx.Process(target=_fetch_in_child, args=(imdb2, cache, q)) for _ in range(2)]
        for p in ps: p.start()
        got = [q.get(timeout=30) for _ in ps]
        for p in ps: p.join(10)
    assert got == [str(cache/'imdb'/'aclImdb_v1')] * 2, got
    assert [p.exitcode for p in ps] == [0, 0]
    assert faulty.requests == ['/aclImdb_v1.tar.gz']                  # the second waited for the lock, then found the file
    assert sorted(p.name for p in (cache/'imdb').iterdir()) == ['aclImdb_v1', 'aclImdb_v1.tar.gz']   # no .part, lock or partial
    texts, labels = read_imdb(cache/'imdb'/'aclImdb_v1', 'train'); assert sorted(set(labels)) == [0, 1]

def test_lock_timeout(tmp_path, faulty, imdb2):
    dest = tmp_path/'cache'/'imdb'/'aclImdb_v1.tar.gz'
    with file_lock(dest):                                             # as if another process were downloading it
        with pytest.raises(LockTimeout, match='another process has held .* for over 0.2 s') as e:
            fetch(imdb2, cache=tmp_path/'cache', progress=False, lock_timeout=0.2)
    _one_line(e)
    assert fetch(imdb2, cache=tmp_path/'cache', progress=False)['aclImdb_v1.tar.gz'].is_dir()   # released

def test_damaged_folder_is_extracted_again(tmp_path, faulty, imdb2):
    cache = tmp_path/'cache'
    folder = fetch(imdb2, cache=cache, progress=False)['aclImdb_v1.tar.gz']
    assert (folder/MARKER).is_file()
    (folder/'decoded-v1.pt').write_bytes(b'a cache kept beside the data')
    assert fetch(imdb2, cache=cache, progress=False)['aclImdb_v1.tar.gz'] == folder and (folder/'decoded-v1.pt').exists()  # not re-extracted
    shutil.rmtree(folder/'aclImdb'/'train'/'pos')                     # read_imdb would silently return one class
    folder = fetch(imdb2, cache=cache, progress=False)['aclImdb_v1.tar.gz']
    assert sorted(set(read_imdb(folder, 'train')[1])) == [0, 1]
    assert faulty.requests == ['/aclImdb_v1.tar.gz']                  # from the cached archive, no new download

def test_debris_of_a_killed_fetch_is_removed(tmp_path, faulty, imdb2):
    d = tmp_path/'cache'/'imdb'; d.mkdir(parents=True)
    (d/'aclImdb_v1.tar.gz.part').write_bytes(b'half')                 # a download killed half-way
    (d/'.aclImdb_v1.partial-abc').mkdir(); (d/'.aclImdb_v1.partial-abc'/'x').write_text('x')   # a killed extraction
    (d/'.aclImdb_v1.tar.gz.lock').touch()                             # a lock file its dead holder left
    fetch(imdb2, cache=tmp_path/'cache', progress=False)
    assert sorted(p.name for p in d.iterdir()) == ['aclImdb_v1', 'aclImdb_v1.tar.gz']

def test_read_only_cache_is_one_line(tmp_path, faulty, imdb2, monkeypatch):
    cache = tmp_path/'ro'; (cache/'imdb').mkdir(parents=True); cache.chmod(0o555); (cache/'imdb').chmod(0o555)
    if os.geteuid() == 0:                                             # root ignores permissions: the file system says no instead
        real = os.open
        def ro_open(p, flags, *a, **k):
            if str(p).startswith(str(cache)) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR): raise OSError(errno.EROFS, 'Read-only file system')
            return real(p, flags, *a, **k)
        monkeypatch.setattr(os, 'open', ro_open)
    try:
        with pytest.raises(CacheNotWritableError, match=f'cache folder {re.escape(str(cache))}/imdb is not writable .*set DLCOURSE_DATA') as e:
            fetch(imdb2, cache=cache, progress=False)
        _one_line(e)
    finally: cache.chmod(0o755); (cache/'imdb').chmod(0o755)

def test_folder_extracted_before_markers_is_adopted_or_redone(tmp_path, faulty, imdb2):
    cache = tmp_path/'cache'
    folder = fetch(imdb2, cache=cache, progress=False)['aclImdb_v1.tar.gz']
    (folder/MARKER).unlink(); (folder/'decoded-v1.pt').write_bytes(b'cache')      # as an older dlcourse left it
    assert fetch(imdb2, cache=cache, progress=False)['aclImdb_v1.tar.gz'] == folder
    assert (folder/'decoded-v1.pt').exists() and (folder/MARKER).exists()          # checked against the archive, not re-extracted
    (folder/MARKER).unlink(); next((folder/'aclImdb'/'test'/'neg').iterdir()).unlink()
    fetch(imdb2, cache=cache, progress=False)
    assert not (folder/'decoded-v1.pt').exists() and len(read_imdb(folder, 'test')[0]) == 40   # a file was missing: extracted again
