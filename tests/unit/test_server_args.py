import subprocess
import sys

import server
from testdata import PROJECT_DIR
from webui.settings import Settings

FLAGS = ["--model", "--loader", "--model-dir", "--listen", "--listen-host", "--listen-port", "--ctx-size", "--n-ctx",
         "--threads", "--gpu-layers", "--auto-launch", "--settings"]


def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, str(PROJECT_DIR / "server.py"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in FLAGS:
        assert flag in out


def test_defaults_bind_localhost_only(tmp_path):
    s = Settings.from_file(None, server.overrides_from_args(server.build_parser().parse_args([])))
    assert s.host == "127.0.0.1"
    assert s.listen_port == 7860
    s = Settings.from_file(None, server.overrides_from_args(server.build_parser().parse_args(["--listen"])))
    assert s.host == "0.0.0.0"


def test_flags_reach_the_load_options_and_settings_file_is_read(tmp_path):
    settings_file = tmp_path / "s.yaml"
    settings_file.write_text("listen_port: 9000\nload:\n  n_ctx: 1024\n  threads: 3\n")
    args = server.build_parser().parse_args(["--ctx-size", "2048", "--gpu-layers", "5", "--no-mmap",
                                             "--model", "x.gguf", "--loader", "llama.cpp"])
    s = Settings.from_file(settings_file, server.overrides_from_args(args))
    assert (s.listen_port, s.model, s.loader) == (9000, "x.gguf", "llama.cpp")
    assert (s.load.n_ctx, s.load.threads, s.load.n_gpu_layers, s.load.use_mmap) == (2048, 3, 5, False)


def test_model_given_as_a_path_sets_the_models_folder(tmp_path):
    f = tmp_path / "elsewhere" / "m.gguf"
    f.parent.mkdir()
    f.write_bytes(b"GGUF")
    over = server.overrides_from_args(server.build_parser().parse_args(["--model", str(f)]))
    assert over["model"] == "m.gguf" and over["model_dir"] == f.parent
