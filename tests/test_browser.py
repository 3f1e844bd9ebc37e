"""A reader's session in a real browser (headless Chromium, Debian's chromium + chromium-driver, driven by selenium):
`make lab` with the project's settings, double-click notebooks/00_data.py, run all cells, edit and save, then the
static site built from the notebook just run.

Works on a temporary copy of the notebook (figures and results go to temporary folders too), served by the project's
own `make lab` recipe and jupyter-config/. Skips with the reason where Chromium or its driver is missing, except in
CI (CI=true), where that is a failure.
"""
from __future__ import annotations

import difflib
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from ferrolib import paths
from ferrolib.site import SiteConfig, build_site

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

NOTEBOOK = "00_data.py"
EDIT = " (edited in the browser)"
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
)
pytestmark = pytest.mark.slow


def _system_browser() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver; skip (fail in CI) where either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    reason = "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Headless Chromium through the system chromedriver (selenium-manager never runs: SE_OFFLINE, explicit path)."""
    binary, driver_path = _system_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


@pytest.fixture
def lab(tmp_path: Path):
    """`make lab` (without its sync step) on a copy of notebook 00, isolated from the user's Jupyter settings."""
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(paths.NOTEBOOKS / NOTEBOOK, root / NOTEBOOK)
    port, token = _free_port(), "ferrolib-browser-test"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JUPYTER", "FERROLIB_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "user-config"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        FERROLIB_FIGURES=str(tmp_path / "figures"), FERROLIB_RESULTS=str(tmp_path / "results"),
    )
    lab_args = f"--no-browser --ServerApp.port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    if os.geteuid() == 0:  # CI containers run as root
        lab_args += " --ServerApp.allow_root=True"
    command = ["make", "--no-print-directory", "-o", "sync", "lab", f"BIN={Path(sys.executable).parent}",
               f"LAB_ROOT={root}", f"LAB_ARGS={lab_args}"]
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=paths.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{url}/api/status?token={token}", server, tmp_path / "lab.log")
        yield {"url": f"{url}/lab?token={token}", "root": root, "figures": tmp_path / "figures"}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _wait_for_server(status_url: str, server: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    """Poll the server's status API until it answers; fail with the log if it exits or stays silent."""
    for _ in range(int(timeout_s / 0.25)):
        try:
            with urllib.request.urlopen(status_url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass  # still starting
        try:
            server.wait(timeout=0.25)
            pytest.fail(f"`make lab` exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        except subprocess.TimeoutExpired:
            pass
    pytest.fail(f"JupyterLab did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _menu(driver, menu: str, command: str) -> None:
    """Click ``menu`` in the menu bar, then the item that runs ``command`` (a JupyterLab command id)."""
    wait = WebDriverWait(driver, 20)
    wait.until(EC.element_to_be_clickable(
        (By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')][normalize-space()='{menu}']"))).click()
    wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, f'li.lm-Menu-item[data-command="{command}"]'))).click()


def _save_and_wait(driver, notebook: Path, until) -> str:
    """Save through File > Save and wait until the tab is clean and ``until(text of the .py)`` holds."""
    _menu(driver, "File", "docmanager:save")
    WebDriverWait(driver, 30).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
        and notebook.with_suffix(".ipynb").exists() and until(notebook.read_text()))
    return notebook.read_text()


def _edit_markdown(driver, cell, keys: list[str]) -> None:
    """Put the markdown ``cell`` in edit mode, move to the end of its text and type ``keys``."""
    rendered = cell.find_elements(By.CSS_SELECTOR, ".jp-RenderedMarkdown")
    if rendered and rendered[0].is_displayed():
        driver.execute_script("arguments[0].scrollIntoView()", rendered[0])
        ActionChains(driver).double_click(rendered[0]).perform()
    editor = cell.find_element(By.CSS_SELECTOR, ".cm-content")
    WebDriverWait(driver, 10).until(lambda d: editor.is_displayed())
    editor.click()
    ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.END).key_up(Keys.CONTROL).send_keys(*keys).perform()


def _kernel_idle(driver) -> bool:
    """The status bar shows the notebook's kernel, started and idle."""
    return bool(driver.find_elements(By.XPATH, "//div[@id='jp-main-statusbar']//span[contains(., 'Python 3 (ipykernel) | Idle')]"))


def _executed(driver) -> bool:
    """Every code cell of the open notebook has run (prompts read [n], none [*] or [ ])."""
    try:
        prompts = [p.text for p in driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")]
    except StaleElementReferenceException:
        return False
    return bool(prompts) and all(p.strip("[]: ").isdigit() for p in prompts)


def test_reader_opens_runs_edits_and_saves_a_notebook_then_reads_the_site(lab, browser, tmp_path: Path):
    notebook = lab["root"] / NOTEBOOK
    original = notebook.read_text()
    browser.get(lab["url"])
    wait = WebDriverWait(browser, 60)

    # Double-click in the file browser opens the paired .py as a notebook (the project's default viewer).
    item = wait.until(EC.element_to_be_clickable((By.XPATH,
        f"//li[contains(@class,'jp-DirListing-item')][.//span[contains(@class,'jp-DirListing-itemText')]"
        f"[normalize-space()='{NOTEBOOK}']]")))
    ActionChains(browser).double_click(item).perform()
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook .jp-Cell")))
    assert not browser.find_elements(By.CSS_SELECTOR, ".jp-MainAreaWidget .jp-FileEditor"), "opened as text"
    wait.until(_kernel_idle)
    assert not browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog"), "a dialog is in the way"

    # Run all cells: outputs, both figures, no stderr or error output.
    _menu(browser, "Run", "runmenu:run-all")
    WebDriverWait(browser, 90).until(_executed)
    wait.until(_kernel_idle)
    panel = browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel")
    assert "measured files" in panel.text and "MNIST" in panel.text
    images = panel.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
    assert len(images) == 2, f"expected the two figures of {NOTEBOOK}, found {len(images)} images"
    for image in images:
        browser.execute_script("arguments[0].scrollIntoView()", image)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    bad = panel.find_elements(By.CSS_SELECTOR, '[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output.jp-mod-error')
    assert not bad, f"stderr or error outputs: {[b.text[:200] for b in bad]}"
    assert not browser.find_elements(By.XPATH, "//*[contains(text(), 'Jupyter news')]"), "the news prompt showed"
    assert sorted(p.name for p in lab["figures"].glob("*.png")) == ["00_measurements.png", "00_mnist.png"]

    # Saving without an edit leaves the .py byte for byte as it was.
    assert _save_and_wait(browser, notebook, lambda text: True) == original

    # Edit one markdown cell: the .py changes by exactly that edit; deleting it restores the file exactly.
    heading = wait.until(EC.presence_of_element_located((By.XPATH,
        "//div[contains(@class,'jp-MarkdownCell')][.//h2[contains(., 'MNIST in use')]]")))
    _edit_markdown(browser, heading, [EDIT])
    edited = _save_and_wait(browser, notebook, lambda text: EDIT in text)
    changes = [line for line in difflib.unified_diff(original.splitlines(), edited.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changes == ["-# ## MNIST in use", f"+# ## MNIST in use{EDIT}"]
    _edit_markdown(browser, heading, [Keys.BACKSPACE] * len(EDIT))
    assert _save_and_wait(browser, notebook, lambda text: EDIT not in text) == original

    # The site built from the notebook just run: every image loads, every link resolves.
    executed = tmp_path / "executed"
    executed.mkdir()
    shutil.copy(notebook.with_suffix(".ipynb"), executed / notebook.with_suffix(".ipynb").name)
    index = build_site(SiteConfig(executed, lab["figures"], tmp_path / "site", paths.FIGURES / "05_claims.csv"))
    pages = [index, *sorted((index.parent / "notebooks").glob("*.html"))]
    for page in pages:
        browser.get(page.as_uri())
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        images = browser.find_elements(By.TAG_NAME, "img")
        assert images, f"{page.name} shows no image"
        for image in images:
            browser.execute_script("arguments[0].scrollIntoView()", image)
            WebDriverWait(browser, 10).until(lambda d: d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", image), f"an image of {page.name} did not load")
            assert image.get_attribute("alt"), f"an image of {page.name} has no alt text"
        for href in browser.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href)"):
            target = urlparse(href)
            if target.scheme == "file":
                assert Path(unquote(target.path)).is_file(), f"{page.name}: broken link {href}"
                if target.fragment and Path(unquote(target.path)) == page:
                    assert browser.execute_script(  # the HTML spec tries the raw fragment, then the decoded one
                        "return document.getElementById(arguments[0]) || document.getElementById(arguments[1])",
                        target.fragment, unquote(target.fragment)), f"{page.name}: no anchor {href}"
    assert "<table class=\"claims\">" in index.read_text()


EQUATION_PAGE = "science"
"""The docs page the offline check opens: it carries the equations of the models and the update rules."""


def test_docs_page_shows_its_equations_offline_and_no_page_requests_the_network(browser, tmp_path: Path):
    # A site with one notebook page (an equation in its markdown) and every docs page, opened from file://.
    notebooks = tmp_path / "executed"
    notebooks.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# Capacitive charging\n\nOne pulse costs $E = \\frac{\\varepsilon_0 \\varepsilon_r A}{d} V^2$.")])
    nbformat.write(notebook, notebooks / "00_equation.ipynb")
    figures = tmp_path / "figures"
    figures.mkdir()
    index = build_site(SiteConfig(notebooks, figures, tmp_path / "site", paths.FIGURES / "05_claims.csv"))
    site = index.parent
    pages = [index, *sorted((site / "docs").glob("*.html")), *sorted((site / "notebooks").glob("*.html"))]
    assert site / "docs" / f"{EQUATION_PAGE}.html" in pages

    for page in pages:
        browser.get(page.as_uri())
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        # Every resource the page loaded (scripts, styles, fonts, images) came from the file system or the page.
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        remote = [url for url in resources if not url.startswith(("file:", "data:", "blob:"))]
        assert not remote, f"{page.name} requested {remote}"
        sources = browser.execute_script(
            "return Array.from(document.querySelectorAll('script[src], link[href], img[src], iframe[src]'),"
            " e => e.getAttribute('src') || e.getAttribute('href'))")
        assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], f"{page.name}: {sources}"

    # The equations render as laid-out MathML: a fraction stacks its numerator above its denominator.
    for page, minimum in ((site / "docs" / f"{EQUATION_PAGE}.html", 20), (site / "notebooks" / "00_equation.html", 1)):
        browser.get(page.as_uri())
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        sizes = browser.execute_script(
            "return Array.from(document.querySelectorAll('math'), m => m.getBoundingClientRect())"
            ".map(r => [r.width, r.height])")
        assert len(sizes) >= minimum, f"{page.name}: {len(sizes)} equations, expected at least {minimum}"
        assert all(width > 0 and height > 0 for width, height in sizes), f"{page.name}: an equation has no size"
        stacked = browser.execute_script(
            "const f = document.querySelector('mfrac'); if (!f) return null;"
            "const [top, bottom] = Array.from(f.children, c => c.getBoundingClientRect());"
            "return bottom.top >= top.bottom - 1 && f.getBoundingClientRect().height > top.height")
        assert stacked, f"{page.name}: the fraction is not laid out as a fraction (MathML not rendered)"
        prose = browser.execute_script(
            "const body = document.body.cloneNode(true); body.querySelectorAll('code, pre').forEach(e => e.remove());"
            "return body.textContent")
        assert "$" not in prose, f"{page.name} shows raw LaTeX"
