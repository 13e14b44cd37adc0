"""Weight names, cache, download (against a real local HTTP server) and loading rules (spec §1.8)."""
from __future__ import annotations

import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from cellpose.net import CPnet, save_weights
from cellpose.net import weights as W


@pytest.fixture(scope="module")
def weight_bytes():
    """A full-size random CPnet file (diam_mean 30), as bytes."""
    torch.manual_seed(5)
    buf = io.BytesIO()
    torch.save(CPnet().state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def server():
    """A real ThreadingHTTPServer on 127.0.0.1; ``routes[path] = (body, declared_length)``; ``hits`` logs paths."""
    routes, hits = {}, []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, declared = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(declared))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/models"
    yield base, routes, hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(path))
    monkeypatch.delenv("CELLPOSE_MODELS_URL", raising=False)
    return path


def _closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/models"


def test_download_into_cache_and_load(server, cache, monkeypatch, weight_bytes):
    base, routes, hits = server
    routes["/models/cyto3"] = (weight_bytes, len(weight_bytes))
    monkeypatch.setenv("CELLPOSE_MODELS_URL", base)
    path = W.resolve_model("cyto3", progress=True)
    assert path == cache / "cyto3" and path.read_bytes() == weight_bytes
    assert sorted(p.name for p in cache.iterdir()) == ["cyto3"]
    net, info = W.load_weights(path)
    assert info.n_keys == 313 and isinstance(net, CPnet) and net.diam_mean.item() == 30.0
    assert W.resolve_model("cyto3") == path and hits == ["/models/cyto3"]


def test_torch0_names_are_requested_by_file_name(server, cache, weight_bytes):
    base, routes, hits = server
    routes["/models/nucleitorch_0"] = (weight_bytes, len(weight_bytes))
    path = W.resolve_model("nuclei", base_url=base, progress=False)
    assert path.name == "nucleitorch_0" and hits == ["/models/nucleitorch_0"]


def test_truncated_download_leaves_nothing(server, cache, weight_bytes):
    base, routes, _ = server
    routes["/models/cyto3"] = (weight_bytes[:100_000], len(weight_bytes))
    with pytest.raises(W.WeightsUnavailableError, match="incomplete download") as err:
        W.resolve_model("cyto3", base_url=base, progress=False)
    assert isinstance(err.value.__cause__, W.DownloadError)
    assert list(cache.iterdir()) == []


def test_download_file_checks_length_directly(server, tmp_path):
    base, routes, _ = server
    routes["/models/blob"] = (b"x" * 5000, 9000)
    with pytest.raises(W.DownloadError, match="5000 of 9000"):
        W.download_file(f"{base}/blob", tmp_path / "d" / "blob", progress=False)
    assert list((tmp_path / "d").iterdir()) == []
    routes["/models/blob"] = (b"y" * 5000, 5000)
    dest = W.download_file(f"{base}/blob", tmp_path / "d" / "blob", progress=False)
    assert dest.read_bytes() == b"y" * 5000 and [p.name for p in (tmp_path / "d").iterdir()] == ["blob"]


def test_server_down_names_file_url_and_cache_path(cache):
    url = _closed_port_url()
    with pytest.raises(W.WeightsUnavailableError) as err:
        W.resolve_model("cyto2", base_url=url, progress=False)
    msg = str(err.value)
    assert "'cyto2torch_0'" in msg and f"{url}/cyto2torch_0" in msg and str(cache / "cyto2torch_0") in msg
    assert err.value.dest == cache / "cyto2torch_0"
    assert list(cache.iterdir()) == []


def test_http_404_is_unavailable(server, cache):
    base, _, hits = server
    with pytest.raises(W.WeightsUnavailableError, match="404"):
        W.resolve_model("tissuenet_cp3", base_url=base, progress=False)
    assert hits == ["/models/tissuenet_cp3"] and list(cache.iterdir()) == []


def test_unknown_name_is_an_error_not_cyto3(cache):
    with pytest.raises(W.UnknownModelError, match="'cyto4'"):
        W.resolve_model("cyto4")
    with pytest.raises(ValueError, match="no_such_file.pt"):
        W.resolve_model(cache / "no_such_file.pt")


def test_existing_path_is_returned_as_is(tmp_path, weight_bytes):
    path = tmp_path / "my_model"
    path.write_bytes(weight_bytes)
    assert W.resolve_model(str(path)) == path and W.resolve_model(path) == path


def test_cellpose4_file_rejected(tmp_path):
    path = tmp_path / "cpsam"
    torch.save({"W2": torch.zeros(3), "encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(W.WeightsFormatError, match="Cellpose-4"):
        W.load_weights(path)


@pytest.mark.parametrize("content", [b"not a torch file at all", b""])
def test_non_torch_file_named_in_error(tmp_path, content):
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    with pytest.raises(W.WeightsFormatError, match="junk.bin"):
        W.load_weights(path)


def test_other_torch_payloads_rejected(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "linear")
    with pytest.raises(W.WeightsFormatError, match="state_dict"):
        W.load_weights(tmp_path / "list")
    with pytest.raises(W.WeightsFormatError, match="not a Cellpose 3"):
        W.load_weights(tmp_path / "linear")
    with pytest.raises(FileNotFoundError):
        W.load_weights(tmp_path / "absent")


def _state_without(state, *prefixes):
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


@pytest.mark.parametrize("name, expected", [("nucleitorch_0", 17.0), ("custom", 30.0)])
def test_file_without_diams_keeps_code_diam_mean(tmp_path, weight_bytes, name, expected):
    state = torch.load(io.BytesIO(weight_bytes), weights_only=True)
    path = tmp_path / name
    torch.save(_state_without(state, "diam_"), path)
    net, info = W.load_weights(path)
    assert not info.diam_from_file
    assert net.diam_mean.item() == expected and net.diam_labels.item() == expected
    assert W.load_weights(path, diam_mean=21.0)[0].diam_labels.item() == 21.0


def test_diams_come_from_file(tmp_path):
    net = CPnet(diam_mean=17.0)
    net.diam_labels.fill_(23.5)
    net2, info = W.load_weights(save_weights(net, tmp_path / "custom"))
    assert info.diam_from_file and net2.diam_mean.item() == 17.0 and net2.diam_labels.item() == 23.5


def test_other_output_count_loads_everything_else(tmp_path):
    torch.manual_seed(6)
    other = CPnet(nout=2)
    net, info = W.load_weights(save_weights(other, tmp_path / "two"))
    assert not info.output_loaded and info.nout_file == 2 and net.output[2].weight.shape == (3, 32, 1, 1)
    theirs = other.state_dict()
    for k, v in net.state_dict().items():
        if not k.startswith("output."):
            assert torch.equal(v, theirs[k]), k


def test_missing_or_misshaped_tensors_rejected(tmp_path, weight_bytes):
    state = torch.load(io.BytesIO(weight_bytes), weights_only=True)
    torch.save(_state_without(state, "upsample.up.res_up_1.conv.conv_2.full"), tmp_path / "holes")
    with pytest.raises(W.WeightsFormatError, match="lacks 2"):
        W.load_weights(tmp_path / "holes")
    state["upsample.up.res_up_1.proj.1.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "shape")
    with pytest.raises(W.WeightsFormatError, match="res_up_1.proj.1.bias"):
        W.load_weights(tmp_path / "shape")


def test_unexpected_keys_are_ignored(tmp_path, weight_bytes):
    state = torch.load(io.BytesIO(weight_bytes), weights_only=True)
    state["extra.thing"] = torch.ones(4)
    torch.save(state, tmp_path / "extra")
    net, info = W.load_weights(tmp_path / "extra")
    assert info.unexpected == ("extra.thing",) and "extra.thing" not in net.state_dict()


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "w"
    path.write_bytes(b"old")
    save_weights(CPnet(diam_mean=19.0), path)
    assert [p.name for p in tmp_path.iterdir()] == ["w"]
    assert W.load_weights(path)[0].diam_mean.item() == 19.0


def test_names_and_urls(monkeypatch):
    assert [W.model_filename(n) for n in ("cyto", "cyto2", "nuclei", "cyto3", "CPx")] == [
        "cytotorch_0", "cyto2torch_0", "nucleitorch_0", "cyto3", "CPx"]
    assert W.diam_mean_for("nuclei") == 17.0 and W.diam_mean_for(Path("/m/nucleitorch_0")) == 17.0
    assert W.diam_mean_for("cyto3") == 30.0 and W.diam_mean_for("cyto3", default=25.0) == 25.0
    assert len(W.BUILTIN_MODELS) == 25 == len(set(W.BUILTIN_MODELS))
    assert W.is_builtin_name("denoise_cyto3") and W.is_builtin_name("aniso_nuclei")
    assert len(W.RESTORE_MODELS) == 38 and not W.is_builtin_name("cyto4")
    assert W.size_model_filename("nuclei") == "size_nucleitorch_0.npy"
    monkeypatch.delenv("CELLPOSE_MODELS_URL", raising=False)
    assert W.model_url("cyto") == "https://www.cellpose.org/models/cytotorch_0"
    monkeypatch.setenv("CELLPOSE_MODELS_URL", "http://mirror/x/")
    assert W.model_url("cyto3") == "http://mirror/x/cyto3"
    assert W.model_url("cyto3", base_url="http://arg") == "http://arg/cyto3"


def test_default_cache_dir_is_created(tmp_path, monkeypatch):
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.cache_dir() == tmp_path / ".cellpose" / "models" and W.cache_dir().is_dir()
