"""genzoo serve for a modality it has no code for: genzoo-notes (tests/notes_plugin), a
third-party audio family, served from a real process. Every format is the modality's (its
writers, one WAV alone, json), each equal to what ``genzoo sample`` writes; every format the
modality lacks is a one-line 422; the gallery plays the samples in Debian's Chromium."""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from _notes import NAME, build_weights, install_notes
from _serve import (CHROMIUM, NO_CHROMIUM, Server, assert_one_line_error, gallery, generate,
                    get, post, request)

from genzoo.errors import OptionError
from genzoo.samples import Modality, Samples
from genzoo.serve.formats import (Limits, default_format, file_bytes, holds_one, parse_request,
                                  served_formats)

SAMPLES = f"/v1/models/{NAME}/samples"


@pytest.fixture(scope="module")
def notes_site(tmp_path_factory) -> Path:
    """genzoo-notes installed in a site folder with ``notes-tiny``'s weights and card (for
    the server's and the CLI's processes, which get it on PYTHONPATH)."""
    site = tmp_path_factory.mktemp("notes") / "site"
    cards = install_notes(site)
    sys.path.insert(0, str(site))
    try:
        build_weights(cards)
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.split(".")[0] == "genzoo_notes"]:
            del sys.modules[name]
    return site


def _env(site: Path) -> dict[str, str]:
    paths = [str(site), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def server(notes_site, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"), "--models", f"{NAME},gan-mnist",
                 env=_env(notes_site))
    yield srv
    srv.stop()


def cli_sample(site: Path, *args: str) -> None:
    """``genzoo sample ARGS`` in its own process, as the server runs (one thread, levers off)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENZOO_LEVERS": "off", **_env(site)}
    result = subprocess.run([sys.executable, "-m", "genzoo", "sample", NAME, *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def read_wav(data: bytes) -> tuple[np.ndarray, int, int]:
    """A WAV file's (int16 frames, rate, channels)."""
    with wave.open(io.BytesIO(data)) as w:
        assert w.getsampwidth() == 2
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return frames, w.getframerate(), w.getnchannels()


def test_serving_info_comes_from_the_audio_modality(server):
    status, info = get(server.url + f"/v1/models/{NAME}")
    assert status == 200
    serving = info["serving"]
    assert serving["modality"] == "audio" and serving["formats"] == ["wav", "npz", "json"]
    assert serving["default_format"] == "wav" and serving["default_n"] == 1
    assert serving["stream"] is False and serving["conditions"] == ["pitch"]
    assert serving["sample"]["key"] == "audios" and serving["sample"]["json"] == "file"
    assert serving["sample"]["content_type"] == "audio/wav"
    assert "<audio controls" in serving["sample"]["html"]


def test_wav_is_genzoo_sample_n1_wav(server, notes_site, tmp_path):
    """One sample, ``audio/wav``: the bytes ``genzoo sample M -n 1 -o x.wav`` writes (the WAV
    holds no provenance: that travels in the header)."""
    status, wav, headers = request(server.url + SAMPLES, json.dumps(
        {"n": 1, "seed": 3, "options": {"pitch": 5}, "format": "wav"}).encode())
    assert status == 200 and headers["content-type"] == "audio/wav"
    assert json.loads(headers["x-genzoo-provenance"])["sample_rate"] == "8000"
    cli_sample(notes_site, "-n", "1", "--seed", "3", "--pitch", "5", "-o", str(tmp_path / "x.wav"))
    assert wav == (tmp_path / "x.wav").read_bytes()
    frames, rate, channels = read_wav(wav)
    assert (rate, channels, len(frames)) == (8000, 1, 4000) and np.abs(frames).max() > 100
    # no body at all: the modality's default format (one WAV) of seed 0
    status, default, headers = request(server.url + SAMPLES, b"{}")
    cli_sample(notes_site, "-n", "1", "-o", str(tmp_path / "d.wav"))
    assert status == 200 and default == (tmp_path / "d.wav").read_bytes() != wav


def test_json_is_a_base64_wav_per_sample(server, notes_site, tmp_path):
    body = {"n": 3, "seed": 4, "options": {"pitch": [0, 7, 11]}, "format": "json"}
    status, payload, _ = post(server.url + SAMPLES, body)
    assert status == 200 and set(payload) >= {"audios", "provenance", "meta"}
    assert payload["meta"]["sample_rate"] == 8000 and payload["meta"]["seed"] == 4
    cli_sample(notes_site, "-n", "3", "--seed", "4", "--pitch", "0,7,11",
               "-o", str(tmp_path / "each") + os.sep)
    files = sorted((tmp_path / "each").glob("*.wav"))
    assert [f.name for f in files] == ["00000.wav", "00001.wav", "00002.wav"]
    wavs = [base64.b64decode(a) for a in payload["audios"]]
    assert wavs == [f.read_bytes() for f in files]
    # the same waveforms as the float array, to 16-bit PCM rounding
    cli_sample(notes_site, "-n", "3", "--seed", "4", "--pitch", "0,7,11",
               "-o", str(tmp_path / "x.npz"))
    audios = np.load(tmp_path / "x.npz")["audios"]
    for wav, wave_ in zip(wavs, audios):
        frames, rate, _ = read_wav(wav)
        assert rate == 8000
        np.testing.assert_allclose(frames / 32767, wave_[0], rtol=0, atol=1 / 32767)
    assert len({w for w in wavs}) == 3


def test_npz_is_genzoo_sample_npz_over_several_batches(server, notes_site, tmp_path):
    """n = 40 runs as two generate calls (the model's batch size is 32), joined by the audio
    modality's ``concat``: the members ``-o x.npz`` writes, the same bytes."""
    status, npz, headers = request(server.url + SAMPLES, json.dumps(
        {"n": 40, "seed": 2, "format": "npz"}).encode())
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    cli_sample(notes_site, "-n", "40", "--seed", "2", "-o", str(tmp_path / "x.npz"))
    ours, theirs = np.load(io.BytesIO(npz)), np.load(tmp_path / "x.npz")
    assert sorted(ours.files) == sorted(theirs.files) == ["audios", "meta", "sample_rate"]
    assert ours["audios"].shape == (40, 1, 4000) and int(ours["sample_rate"]) == 8000
    for key in ours.files:  # the zip members' timestamps are the only bytes that differ
        assert ours[key].tobytes() == theirs[key].tobytes()


@pytest.mark.parametrize("model, body, says", [
    (NAME, {"format": "png"}, 'format "png" is not served for audios: ask for one of wav, '
                              "npz, json"),
    (NAME, {"format": "gif", "n": 2}, "ask for one of wav, npz, json"),
    (NAME, {"format": ["wav"]}, "ask for one of wav, npz, json"),
    (NAME, {"format": None}, "ask for one of wav, npz, json"),
    (NAME, {"format": "txt"}, "ask for one of wav, npz, json"),
    ("gan-mnist", {"format": "wav"}, 'format "wav" is not served for images: ask for one '
                                     "of png, npz, json"),
    (NAME, {"n": 3, "format": "wav"}, 'format "wav" holds one sample, asked for n = 3: send '
                                      'n = 1, or ask for "format": "npz" or "json"'),
    (NAME, {"n": 2}, "send n = 1"),  # the default format is one WAV
    (NAME, {"stream": True}, '"stream": true is for models whose samples can be shown while '
                             "they are made; audios cannot"),
    (NAME, {"n": 0, "format": "json"}, "n must be"),
])
def test_formats_the_modality_lacks_are_one_line_422(server, model, body, says):
    status, reply, _ = post(server.url + f"/v1/models/{model}/samples", body)
    assert says in assert_one_line_error(status, reply, 422)


class _Rows(Modality):
    """A third party's modality with no writer: rows, one CSV file per sample."""

    name, holds, plural, sample_suffix, content_type = "rows", "list", "rows", ".csv", "text/csv"

    def encode(self, samples, i):
        return ",".join(map(str, samples.data[i])).encode()


def test_a_plugins_modality_gets_its_own_formats():
    """No writer: its one-sample file and json; without ``encode``, json alone."""
    rows = _Rows()
    assert served_formats(rows) == ["csv", "json"] and default_format(rows) == "json"
    assert holds_one(rows, "csv") and not holds_one(rows, "json")
    assert parse_request({"format": "csv"}, rows, Limits()).n == 1
    with pytest.raises(OptionError, match='"csv" holds one sample.*ask for "format": "json"'):
        parse_request({"format": "csv", "n": 2}, rows, Limits())
    samples = Samples([[1, 2], [3, 4]], "rows")
    samples.spec = lambda: rows  # not registered: the test hands its modality over directly
    assert file_bytes(samples, "csv") == (b"1,2", "text/csv")

    class Bare(_Rows):
        encode = Modality.encode
    assert served_formats(Bare()) == ["json"]


def test_openai_routes_do_not_serve_audio(server):
    for route, body in (("images/generations", {"prompt": ""}),
                        ("completions", {"prompt": "x"})):
        status, reply, _ = post(server.url + f"/v1/{route}", {"model": NAME, **body})
        assert status == 400 and "does not serve" in reply["error"]["message"], reply


# ---- the gallery, in Debian's Chromium ------------------------------------------------------
#: Every audio element of the notes card, its metadata loaded by the browser itself: the
#: durations it decoded (an undecodable file rejects with the media error instead).
DURATIONS = """async () => Promise.all([...document.querySelectorAll(
  '#model-notes-tiny .grid audio')].map(a => new Promise((resolve, reject) => {
    if (a.readyState >= 1) return resolve(a.duration);
    a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
    a.addEventListener('error', () => reject(new Error('not decoded: ' + a.error.code)),
                       {once: true});
    a.preload = 'metadata'; a.load();
})))"""


def browse(url: str) -> dict:
    """Generate three notes and nine digits in the gallery; return what the page shows."""
    seen: dict = {}
    with gallery(url) as (page, errors):
        notes = page.locator(f"#model-{NAME}")
        seen["n_default"] = notes.locator("input[name=n]").input_value()
        generate(notes, n=3, seed=4, pitch="0,7,11")
        seen["audios"] = notes.locator(".grid audio[controls]").count()
        seen["srcs"] = [a.get_attribute("src") for a in notes.locator(".grid audio").all()]
        seen["durations"] = page.evaluate(DURATIONS)
        seen["downloads"] = [(a.get_attribute("download"), a.get_attribute("href"))
                             for a in notes.locator(".grid a[download]").all()]
        seen["rate"] = notes.locator(".provenance tr[data-key=sample_rate] td").text_content()

        gan = page.locator("#model-gan-mnist")
        generate(gan, n=9)
        seen["images"] = page.evaluate(
            "[...document.querySelectorAll('#model-gan-mnist .grid img')]"
            ".filter(i => i.complete && i.naturalWidth === 28).length")
        # the page's own template filler, given a hostile value: it must stay text
        seen["escaped"] = page.evaluate("""sampleHTML({html: '<pre title="{name}">{text}</pre>',
            json: 'value', content_type: 'text/plain; charset=utf-8', suffix: '.txt"><b>'},
            '<img src=x onerror="window.pwned=1">&', 7)""")
        seen["errors"] = errors + notes.locator(".error:visible").all_text_contents()
    return seen


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_gallery_plays_audio_and_still_shows_images(server):
    seen = browse(server.url + "/")
    assert seen["errors"] == [] and seen["n_default"] == "1"
    assert seen["audios"] == 3 and seen["rate"] == "8000"
    # the browser decoded each file: 4000 frames at 8 kHz
    assert seen["durations"] == [pytest.approx(0.5, abs=1e-3)] * 3
    # each src is the WAV the API answers for that sample, and a download link beside it
    _, payload, _ = post(server.url + SAMPLES, {"n": 3, "seed": 4, "format": "json",
                                                "options": {"pitch": [0, 7, 11]}})
    prefix = "data:audio/wav;base64,"
    assert seen["srcs"] == [prefix + a for a in payload["audios"]]
    assert seen["downloads"] == [(f"0000{i}.wav", src) for i, src in enumerate(seen["srcs"])]
    assert read_wav(base64.b64decode(seen["srcs"][0][len(prefix):]))[1] == 8000
    assert seen["images"] == 9
    assert seen["escaped"] == ('<pre title="00007.txt&quot;&gt;&lt;b&gt;">&lt;img src=x '
                               'onerror=&quot;window.pwned=1&quot;&gt;&amp;</pre>')
