"""`evalkit view` (issue 15): a self-contained site built from the stores, its tables equal to what
`evalkit report` prints (and writes with --out-dir), the paired differences `evalkit compare` computes,
deviations next to the numbers, sweeps, exports as inputs, the tracker; and in a real headless
Chromium: the tables show the stored numbers, the filters change the listed episodes, a video loads,
and the page asks nothing of the network (fake suite by default; `-m libero` adds a real LIBERO run)."""

import csv
import html
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.results.report import collect_report, table_slug
from evalkit.results.store import ResultStore, export_run
from evalkit.results.view import build_site, markdown_table
from evalkit.run.driver import RunConfig, execute

pytest.importorskip("imageio.v2")
pytest.importorskip("PIL")

COMMON = dict(suites=["fake"], episodes_per_task=4, max_steps=20)  # scripted-reach: 8 of 16 succeed


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    reach, random = root / "reach", root / "random"
    execute(RunConfig.from_dict({**COMMON, "policy": "scripted-reach", "out": str(reach), "video": "all"}), progress=False)
    execute(RunConfig.from_dict({**COMMON, "policy": "random", "out": str(random), "video": "failures",
                                 "policy_args": {"cameras": "agentview,robot0_eye_in_hand", "scale": 0.2}}),
            progress=False)
    return reach, random


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    page = build_site(list(runs), out)
    return page, time.perf_counter() - start


def embedded(page: Path) -> dict:
    text = page.read_text()
    return json.loads(re.search(r'<script type="application/json" id="evalkit-data">(.*?)</script>', text, re.S)[1])


def html_tables(page: Path, run: str) -> dict:
    """{table slug: rows of cell texts} of a run's report tables in the page (without the drawn interval)."""
    text = page.read_text()
    tables = {}
    for slug, body in re.findall(rf'<table class="report" data-table="(\w+)" data-run="{run}">.*?<tbody>(.*?)</tbody>',
                                 text, re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
        tables[slug] = [[re.sub(r"<[^>]+>|&#9888;", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)
                         if "<svg" not in c] for row in rows]
    return tables


def test_site_is_one_page_with_tables_videos_and_no_remote_reference(site, runs):
    page, seconds = site
    assert seconds < 10
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "nothing may come from the network"
    assert "@import" not in text and "url(" not in text
    data = embedded(page)
    assert len(data["episodes"]) == 32 and data["runs"] == ["reach", "random"]
    reach_videos = [e["video"] for e in data["episodes"] if e["run"] == "reach"]
    assert all(v.startswith("videos/reach/") and (page.parent / v).is_file() for v in reach_videos)
    random = [e for e in data["episodes"] if e["run"] == "random"]
    assert all(bool(e["video"]) == (not e["success"]) for e in random)  # --video failures


def test_page_tables_are_the_report_tables_and_the_files_agree(site, runs, tmp_path, capsys):
    page, _ = site
    for run, label in zip(runs, ("reach", "random")):
        expected = {table_slug(title): rows for title, (_, rows) in collect_report([run]).sections()}
        assert html_tables(page, label) == expected
        for slug, rows in expected.items():
            with open(page.parent / "tables" / label / f"{slug}.csv") as f:
                assert list(csv.reader(f))[1:] == rows
    # `evalkit report --out-dir` writes the same files, and its text is the printed report
    assert main(["report", *map(str, runs), "--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for path in (page.parent / "tables").rglob("*.*"):
        assert path.read_text() == (tmp_path / path.relative_to(page.parent)).read_text(), path
    assert (page.parent / "tables" / "all" / "report.md").read_text() + "\n" == printed  # print adds a newline


def test_paired_differences_flag_what_compare_flags(site, runs):
    from evalkit.results.compare import REGRESSION, compare

    code, report = compare(str(runs[0]), str(runs[1]))
    assert code == REGRESSION
    text = site[0].read_text()
    flagged = re.search(r'<p class="regression">Regression in \d+ row\(s\): (.*?)</p>', text)[1]
    assert flagged and flagged in report.replace("**Regression** in 1 row(s): ", "")
    assert "random vs baseline reach" in text


def test_provenance_and_deviations_sit_beside_the_numbers(runs, tmp_path):
    copy = tmp_path / "drifted"
    shutil.copytree(runs[0], copy)
    with ResultStore(copy) as store:  # a reference the settled states do not match: another simulator
        store.set_meta("reference_fingerprints", {"fake": {r.key: "0" * 12 for r in store.results()}})
    page = build_site([copy], tmp_path / "site")
    text = page.read_text()
    for field in ("protocol", "execution mode", "action conventions", "image path", "package versions", "git revision",
                  "settled-state fingerprint"):
        assert f"<th>{field}</th>" in text
    assert "openvla: wait 10 steps, budget 20 env_steps" in text
    assert "DIFFERS from the pinned reference in fake task 0" in text
    deviation = text.index('<div class="deviation">')
    assert "DRIFTED SIMULATOR" in text[deviation:text.index("</div>", deviation)]
    assert deviation < text.index('data-table="per_task"')  # above the tables it affects
    assert '<span class="mark" title="**DRIFTED SIMULATOR**' in text  # and marked on the fake rows


def test_an_export_renders_like_its_run(runs, tmp_path):
    exported = tmp_path / "reach.jsonl"
    export_run(runs[0], exported)
    page = build_site([exported], tmp_path / "site")
    assert html_tables(page, "reach") == {table_slug(t): rows for t, (_, rows) in collect_report([runs[0]]).sections()}
    text = page.read_text()
    assert "not recorded" not in text.split("<th>git revision</th>")[1].split("</tr>")[0]  # sessions travel along
    assert "mujoco" in text.split("<th>package versions</th>")[1].split("</tr>")[0] or "numpy" in text


SWEEP = """
out: {out}
base: {{suites: [fake], policy: scripted-reach, episodes_per_task: 2, max_steps: 20}}
grid:
  policy_args.chunk_size: [1, 4]
  mode: [open_loop, "receding:1"]
"""


def test_sweep_table_and_plot_from_stores_or_the_committed_table(tmp_path):
    from evalkit.run.sweep import expand, sweep_report

    sweep_file = tmp_path / "chunks.yaml"
    sweep_file.write_text(SWEEP.format(out=tmp_path / "sweep"))
    import yaml

    out, points = expand(yaml.safe_load(sweep_file.read_text()))
    for point in points:
        execute(point.config, progress=False)
    table = sweep_report(out, points).split("\n\nplot:")[0]
    page = build_site([], tmp_path / "site", sweeps=[sweep_file])
    text = html.unescape(page.read_text())
    headers, rows = markdown_table(table)
    assert "from the points' stores" in text and all(f"<td>{row[1]}</td>" in text for row in rows)
    assert text.count("<polyline") == 2  # a line per mode, x = chunk size
    # the stores gone (as for results/' committed sweeps): the committed table beside the file stands in
    (tmp_path / "chunks.md").write_text("# a curated copy\n\n" + table + "\n")
    shutil.rmtree(out)
    text = html.unescape(build_site([], tmp_path / "site2", sweeps=[sweep_file]).read_text())
    assert "from the committed table chunks.md" in text and all(f"<td>{row[1]}</td>" in text for row in rows)
    assert text.count("<polyline") == 2


def test_view_command(runs, tmp_path, capsys):
    assert main(["view", *map(str, runs), "--out", str(tmp_path / "site"), "--link-videos"]) == 0
    assert "site:" in capsys.readouterr().out
    videos = list((tmp_path / "site" / "videos").rglob("*.mp4"))
    assert videos and all(v.is_symlink() and v.resolve().is_file() for v in videos)
    assert main(["view", "--out", str(tmp_path / "empty")]) == 2  # nothing to show
    assert main(["view", str(runs[0]), "--out", str(runs[0])]) == 2  # never into a run directory
    assert (runs[0] / "videos").is_dir() and not (runs[0] / "index.html").exists()


def test_tracker_offline(runs, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the 'wandb' extra is not installed (scripts/setup.sh installs it)")
    from evalkit.results.tracking import log_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    where = log_run("wandb", runs[1], project="evalkit-test")
    run_dir = next((tmp_path / "wandb").glob("offline-run-*"))
    assert str(run_dir) in where
    with pytest.raises(ValueError, match="unknown tracker"):
        log_run("mlflow", runs[1])
    keys = (b"success/fake", b"success/fake/task03", b"random")  # summary values, config
    for _ in range(50):  # wandb's service may still be writing its log when finish() returns
        stored = next(run_dir.glob("run-*.wandb")).read_bytes()
        if all(key in stored for key in keys):
            break
        time.sleep(0.2)
    assert [key for key in keys if key not in stored] == []
    assert len(list(run_dir.rglob("media/videos/**/*.mp4"))) == 4  # a few failure videos
    assert list(run_dir.rglob("media/table/**/*.table.json"))
    # `evalkit run --log wandb`: the flag is not a run setting; the run is logged once finished
    import evalkit.cli as cli

    monkeypatch.setattr(cli, "SUPERVISE", False)
    assert main(["run", "--suite", "fake", "--policy", "scripted-reach", "--tasks", "0", "--episodes-per-task", "1",
                 "--out", str(tmp_path / "logged"), "--no-progress", "--log", "wandb", "--log-project", "t"]) == 0
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2


# -- in a real browser --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; "
                    "scripts/setup.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def check_in_browser(browser, page: Path, sources: dict, shot: Path) -> None:
    """sources: {run label: its run directory}."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get_log("performance")  # drop what earlier pages logged
    browser.get(page.as_uri())
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.querySelectorAll('#episode-rows tr').length"))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    # the tables show the stored numbers
    for label, source in sources.items():
        for title, (_, rows) in collect_report([source]).sections():
            shown = browser.execute_script(
                "return [...document.querySelectorAll(`table[data-run='${arguments[0]}'][data-table='${arguments[1]}'] "
                "tbody tr`)].map(tr => [...tr.cells].map(td => td.innerText.replace('\u26a0', '').trim()))",
                label, table_slug(title))
            assert [row[:len(rows[0])] for row in shown] == rows, (label, title)
    # the filters change the listed episodes
    episodes = embedded(page)["episodes"]
    count = lambda: browser.execute_script("return document.querySelectorAll('#episode-rows tr').length")
    assert count() == len(episodes)
    label = list(sources)[-1]
    Select(browser.find_element("id", "filter-run")).select_by_value(label)
    assert count() == sum(e["run"] == label for e in episodes)
    Select(browser.find_element("id", "filter-outcome")).select_by_value("failure")
    assert count() == sum(e["run"] == label and not e["success"] for e in episodes)
    Select(browser.find_element("id", "filter-run")).select_by_value("")
    Select(browser.find_element("id", "filter-outcome")).select_by_value("success")
    assert count() == sum(e["success"] for e in episodes)
    first = episodes[0]
    Select(browser.find_element("id", "filter-task")).select_by_value(f"{first['suite']}/{first['task']}")
    assert count() == sum(e["success"] and (e["suite"], e["task"]) == (first["suite"], first["task"]) for e in episodes)
    # a video loads (the player starts on the first failure with a video; then play another)
    loaded = "const v = document.getElementById('player'); return v.readyState >= 2 && !v.error && v.videoWidth > 0"
    WebDriverWait(browser, 15).until(lambda d: d.execute_script(loaded))
    links = browser.find_elements("css selector", "#episode-rows a.play")
    assert links
    links[-1].click()
    WebDriverWait(browser, 15).until(lambda d: d.execute_script(loaded) and d.execute_script(
        "return document.getElementById('player').src") == links[-1].get_attribute("href"))
    browser.save_screenshot(str(shot))
    # nothing was asked of the network: every request went to a file of the site (or inline data)
    urls = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in browser.get_log("performance")
            if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"]
    assert urls and all(url.startswith(("file://", "data:", "blob:")) for url in urls), urls
    assert any(url.startswith(page.parent.as_uri() + "/videos/") for url in urls)


def test_tracker_trackio_local(runs, tmp_path):
    """trackio keeps runs in a local SQLite file under TRACKIO_DIR (no network). Not in CI's install
    (trackio pins pillow<13 and pulls gradio-client); run here with its packages on PYTHONPATH."""
    import importlib.util
    import json
    import os
    import sqlite3
    import subprocess
    import sys

    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio is not installed")
    code = f"from evalkit.results.tracking import log_run; log_run('trackio', {str(runs[1])!r}, project='evalkit-test')"
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")}  # read when trackio is imported
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env, timeout=120)
    connection = sqlite3.connect(tmp_path / "trackio" / "evalkit-test.db")
    metrics = json.loads(connection.execute("SELECT metrics FROM metrics").fetchone()[0])
    config = json.loads(connection.execute("SELECT config FROM configs").fetchone()[0])
    assert "success/fake" in metrics and "report/per_task" in metrics
    assert config["identity"]["policy"] == "random"
    assert list((tmp_path / "trackio" / "media").rglob("*.mp4"))  # a few failure videos


def test_site_in_a_headless_browser(browser, site, runs, tmp_path):
    check_in_browser(browser, site[0], {"reach": runs[0], "random": runs[1]}, tmp_path / "site.png")
    assert (tmp_path / "site.png").stat().st_size > 10_000


def test_failed_episodes_show_their_error_and_traceback(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    fragile = tmp_path / "fragile"  # fake_fragile's simulator raises on task 1
    execute(RunConfig.from_dict(dict(suites=["fake_fragile"], policy="scripted-reach", tasks=[0, 1], episodes_per_task=1,
                                     out=str(fragile))), progress=False)
    page = build_site([fragile], tmp_path / "site")
    browser.get(page.as_uri())
    Select(browser.find_element("id", "filter-outcome")).select_by_value("error")
    rows = browser.find_elements("css selector", "#episode-rows tr")
    assert len(rows) == 1
    rows[0].find_element("tag name", "summary").click()
    trace = rows[0].find_element("tag name", "pre").text
    assert "Traceback" in trace and "fake simulator fault (fake_fragile, task 1)" in trace


@pytest.mark.libero
def test_site_of_a_real_libero_run_with_videos(browser, runs, tmp_path):
    """Two short real LIBERO episodes (libero_spatial task 0, a random policy reading both cameras) with
    videos, next to a fake-suite run, in one site."""
    import imageio.v2 as imageio

    libero = tmp_path / "libero"
    execute(RunConfig.from_dict(dict(suites=["libero_spatial"], tasks=[0], episodes_per_task=2, max_steps=30,
                                     policy="random", video="all", out=str(libero),
                                     policy_args={"cameras": "agentview,robot0_eye_in_hand", "scale": 0.3})),
            progress=False)
    with ResultStore(libero, readonly=True) as store:
        results = store.results()
    assert len(results) == 2 and all(r.video for r in results)
    frame = imageio.mimread(results[0].video)[0]
    assert frame.shape[1] == 256 + 2 + 256 and frame.shape[0] > 256  # both cameras, banner below
    page = build_site([runs[0], libero], tmp_path / "site")
    check_in_browser(browser, page, {"reach": runs[0], "libero": libero}, tmp_path / "libero.png")
