"""The MLflow UI, in Debian's headless Chromium, shows a kdbench experiment and its child runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import ROOT, TINY, free_port

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DOCS_IMAGES = ROOT / "docs" / "images"
# The React app takes its time on a 2-core machine.
PATIENCE = 90
# MLflow 3 opens an experiment in its GenAI view; kdbench's runs are under "Model training".
TRAINING = "workflowType=machine_learning"


@pytest.fixture
def store(write_config, invoke, isolated: Path) -> str:
    """The tiny real matrix (one data set, no teacher and LeNet, one seed) in a sqlite store."""
    uri = f"sqlite:///{isolated}/mlflow.db"
    result = invoke("run", str(write_config(TINY.format(name="browsed"))), "--tracking-uri", uri)
    assert result.exit_code == 0, result.output
    return uri


@pytest.fixture
def ui(store: str, tmp_path: Path) -> Iterator[str]:
    """`kdbench ui` on the store; yields its base URL."""
    port = free_port()
    # Its log goes to a file: a pipe nobody reads would stall the server once full.
    log = (tmp_path / "ui.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "kdbench", "ui", "--tracking-uri", store, "--port", str(port)],
        cwd=tmp_path,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            log.flush()
            pytest.fail(
                f"`kdbench ui` did not answer within 2 minutes (exit code {server.poll()}):\n"
                + (tmp_path / "ui.log").read_text(errors="replace")[-3000:]
            )
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    # Fail, never skip: a browser test that skips where there is no browser cannot fail.
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, (
        f"{' and '.join(missing)} missing: `make browser` installs Debian's chromium and "
        "chromium-driver (apt-get install chromium chromium-driver)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        # A fresh profile, and nothing that phones home: on a closed network Chromium hangs
        # waiting for those connections.
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Containers often have a tiny /dev/shm; Chromium then crashes instead of using /tmp.
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        # Exactly 1400x900 of page for the screenshots (--window-size would include a frame).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        driver.set_page_load_timeout(PATIENCE)
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, what: str, ready: Callable[[WebDriver], object]) -> None:
    """Wait until ready(driver) holds; fail with what was expected and the page's text."""
    # React re-renders under our feet: an element gone stale mid-look means "look again".
    wait = WebDriverWait(driver, PATIENCE, 0.5, ignored_exceptions=[StaleElementReferenceException])
    try:
        wait.until(ready)
    except TimeoutException:
        pytest.fail(f"{what} not shown within {PATIENCE} s; the page:\n{page_text(driver)}")


def page_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def keep(driver: WebDriver, tmp_path: Path, name: str) -> None:
    """Screenshot to tmp_path; with KDBENCH_UPDATE_DOCS=1 also to docs/images."""
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("KDBENCH_UPDATE_DOCS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / name, DOCS_IMAGES / name)


def close_assistant(driver: WebDriver) -> None:
    # The assistant side panel opens on a fresh profile and hides half the page in screenshots.
    for button in driver.find_elements(
        By.CSS_SELECTOR, '[data-component-id="mlflow.assistant.chat_panel.close"]'
    ):
        button.click()


@pytest.mark.slow
def test_the_browser_shows_the_experiment_its_child_runs_params_and_metrics(
    browser: WebDriver, store: str, ui: str, tmp_path: Path
):
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("browsed").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if r.data.tags["kdbench.role"] == "invocation"]
    children = [r for r in runs if r.data.tags["kdbench.role"] == "cell"]
    assert len(children) == 2

    def link(run: Run) -> str:
        return f'a[href="#/experiments/{experiment}/runs/{run.info.run_id}"]'

    browser.get(f"{ui}/#/experiments/{experiment}/runs?{TRAINING}")
    wait_for(browser, "the parent run", lambda d: d.find_elements(By.CSS_SELECTOR, link(parent)))
    close_assistant(browser)
    assert "browsed" in page_text(browser)
    # Child runs are folded under their parent: unfold them with the button in its name cell.
    browser.find_element(
        By.XPATH,
        f'//a[@href="#/experiments/{experiment}/runs/{parent.info.run_id}"]'
        '/ancestor::div[@role="gridcell"]//button',
    ).click()
    wait_for(
        browser,
        "the child runs",
        lambda d: all(d.find_elements(By.CSS_SELECTOR, link(run)) for run in children),
    )
    text = page_text(browser)
    for run in children:
        assert run.info.run_name in text  # "mnist-0-2 · lenet · q2 · statevector · seed 0"
    # Widen the name column so that the screenshot shows the cells' names whole.
    handle = browser.find_element(
        By.CSS_SELECTOR, '.ag-header-cell[col-id="attributes.`Run Name`"] .ag-header-cell-resize'
    )
    ActionChains(browser).drag_and_drop_by_offset(handle, 220, 0).perform()
    keep(browser, tmp_path, "mlflow-ui-experiment.png")

    # A distilled cell's page: kdbench's params, metrics and tags, each beside its value.
    run = next(r for r in children if r.data.tags["kdbench.teacher"] == "lenet")
    params = {
        "teacher.plugin": "lenet",
        "student.plugin": "pqc",
        "student.qubits": "2",
        "backend.plugin": "statevector",
        "dataset.plugin": "mnist",
        "seed": "0",
    }
    metrics = ("test_accuracy", "teacher_test_accuracy", "circuit_width")
    browser.get(f"{ui}/#/experiments/{experiment}/runs/{run.info.run_id}?{TRAINING}")
    wait_for(
        browser,
        f"the run's params {list(params)} and metrics {list(metrics)}",
        lambda d: {*params, *metrics} <= set(page_text(d).splitlines()),
    )
    close_assistant(browser)
    lines = page_text(browser).splitlines()
    assert run.info.run_name in lines  # the page's title

    def shown(name: str) -> str:
        """The value the page shows next to name (tables render as name, value lines)."""
        return lines[lines.index(name) + 1]

    for name, value in params.items():
        assert shown(name) == value == run.data.params[name], name
    for name in metrics:
        assert float(shown(name)) == pytest.approx(run.data.metrics[name]), name
    assert 0.0 <= float(shown("test_accuracy")) <= 1.0
    assert shown("kdbench.teacher") == ": lenet"  # tags render as "key: value"
    keep(browser, tmp_path, "mlflow-ui-run.png")
