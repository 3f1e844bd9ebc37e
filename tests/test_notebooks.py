"""Every notebook runs end to end with its smoke parameters through papermill (as `make smoke` does),
writes its figures to the requested folder and nowhere else, and prints no warning or stderr into its outputs;
the static site built from the executed notebooks shows every figure (with alt text) and the claims table."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from ferrolib import paths, papermill_ipc
from ferrolib.site import SiteConfig, build_site, claims_table, figure_captions, latex_to_mathml, markdown_to_html

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke")


papermill_ipc.register()


@pytest.mark.slow
def test_papermill_runs_the_kernel_over_ipc_without_the_tcp_warning(tmp_path: Path):
    """`make figures` runs papermill through ferrolib.papermill_ipc: the notebook runs, stderr has no warning."""
    source, executed = tmp_path / "one_cell.ipynb", tmp_path / "one_cell.out.ipynb"
    cell = nbformat.v4.new_code_cell("from ipykernel.kernelapp import IPKernelApp\nprint(IPKernelApp.instance().transport)")
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, source)
    run = subprocess.run([sys.executable, "-m", "ferrolib.papermill_ipc", "--no-progress-bar", "--log-level", "WARNING",
                          str(source), str(executed)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "without encryption" not in run.stderr and "WARNING" not in run.stderr, run.stderr[-2000:]
    outputs = nbformat.read(executed, as_version=4).cells[0].outputs
    assert "".join(o.get("text", "") for o in outputs).strip() == "ipc"


def _execute_smoke(notebook: Path, smoke_root: Path) -> nbformat.NotebookNode:
    """Run ``notebook`` with its smoke parameters into ``smoke_root`` (once per module) and return the result."""
    executed_path = smoke_root / f"{notebook.stem}.ipynb"
    if executed_path.exists():
        return nbformat.read(executed_path, as_version=4)
    source = smoke_root / f"{notebook.stem}.source.ipynb"
    jupytext.write(jupytext.read(notebook), source)
    return papermill.execute_notebook(
        str(source),
        str(executed_path),
        parameters={"smoke": True, "output_dir": str(smoke_root / "figures"), "results_dir": str(smoke_root / "results")},
        cwd=str(paths.NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
        engine_name=papermill_ipc.ENGINE,
    )


def _committed_inputs() -> dict[Path, int]:
    """Modification times of the committed fits and physics calibration, which no notebook writes."""
    files = [*sorted(paths.DEVICES.glob("*")), paths.DATA / "physics_calibration.json"]
    return {p: p.stat().st_mtime_ns for p in files if p.exists()}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke_profile(notebook: Path, smoke_root: Path):
    figures_before = {p: p.stat().st_mtime for p in paths.FIGURES.glob("*")} if paths.FIGURES.exists() else {}
    inputs_before = _committed_inputs()
    executed = _execute_smoke(notebook, smoke_root)
    assert _committed_inputs() == inputs_before, f"{notebook.name} wrote the committed fits or calibration"
    if notebook.stem.startswith("02_"):  # refits shown and compared, nothing written unless save_fits=True
        assert not (smoke_root / "results" / "devices").exists()
        assert not (smoke_root / "results" / "physics_calibration.json").exists()
        shown = json.dumps([cell.get("outputs", []) for cell in executed.cells])
        assert "refits agree with the committed fits within 1e-06 of scale" in shown
        assert "Wrote nothing" in shown
    outputs = [o for cell in executed.cells for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    stderr = ["".join(o["text"])[:300] for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"{notebook.name} prints to stderr (warnings?): {stderr}"
    warnings = [json.dumps(o)[:300] for o in outputs if "Warning:" in json.dumps(o.get("data", {})) + json.dumps(o.get("text", ""))]
    assert not warnings, f"{notebook.name} shows warnings in its outputs: {warnings}"
    written = sorted((smoke_root / "figures").glob(f"{notebook.stem[:2]}_*.png"))
    assert written, f"{notebook.name} wrote no figure into the smoke output folder"
    assert all(p.stat().st_size > 5_000 for p in written), "a figure file is suspiciously small"
    figures_after = {p: p.stat().st_mtime for p in paths.FIGURES.glob("*")} if paths.FIGURES.exists() else {}
    assert figures_after == figures_before, "the smoke profile touched the repository's figures/"


class _Page(HTMLParser):
    """The images (src, alt) and link targets of one HTML page."""

    def __init__(self, path: Path):
        super().__init__()
        self.images: list[tuple[str, str | None]] = []
        self.links: list[str] = []
        self.feed(path.read_text())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append((attributes.get("src") or "", attributes.get("alt")))
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])


@pytest.mark.slow
def test_site_of_the_smoke_notebooks_shows_every_figure_with_alt_text_and_the_claims(smoke_root: Path, tmp_path: Path):
    for notebook in NOTEBOOKS:
        _execute_smoke(notebook, smoke_root)
    figures = sorted((smoke_root / "figures").glob("*.png"))
    index = build_site(SiteConfig(smoke_root, smoke_root / "figures", tmp_path / "site"))
    site = index.parent
    page = _Page(index)
    assert [src for src, _ in page.images] == [f"figures/{f.name}" for f in figures], "the index misses figures"
    assert {f"notebooks/{nb.stem}.html" for nb in NOTEBOOKS} <= set(page.links)
    claims = [line for line in (smoke_root / "figures" / "05_claims.csv").read_text().splitlines() if line[:1] != "#"]
    assert len(claims) > 1 and index.read_text().count("<tr>") == len(claims), "the claims table lost rows"
    for html_file in [index, *sorted((site / "notebooks").glob("*.html"))]:
        parsed = _Page(html_file)
        missing_alt = [src[:60] for src, alt in parsed.images if not (alt or "").strip()]
        assert not missing_alt, f"{html_file.name}: images without alt text: {missing_alt}"
        for href in parsed.links:
            target = href.split("#")[0]
            if target and "://" not in target:
                assert (html_file.parent / target).is_file(), f"{html_file.name}: broken link {href}"
    executed_images = sum(
        "image/png" in o.get("data", {})
        for nb in NOTEBOOKS for cell in nbformat.read(smoke_root / f"{nb.stem}.ipynb", as_version=4).cells
        for o in cell.get("outputs", [])
    )
    rendered_images = sum(len(_Page(f).images) for f in (site / "notebooks").glob("*.html"))
    assert rendered_images == executed_images, "the notebook pages dropped figures"


def test_figure_captions_come_from_the_markdown_above_and_match_fstring_names():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell('plotting.save(fig, "00_first", output_dir)'),
        nbformat.v4.new_markdown_cell("Left: **G** against `pulse`, see [the paper](https://x)."),
        nbformat.v4.new_code_cell('for d in ids:\n    plotting.save(fig, f"02_fits_{d}", output_dir)'),
    ])
    assert figure_captions(notebook, "Title") == [("00_first", "Title"), ("02_fits_*", "Left: G against pulse, see the paper.")]


def test_claims_table_escapes_cells_and_keeps_the_provenance_lines(tmp_path: Path):
    csv_file = tmp_path / "claims.csv"
    csv_file.write_text('# data: subset\n# profile: smoke\nclaim,holds\n"a <b> claim, with comma",True\n')
    table = claims_table(csv_file)
    assert "<td>a &lt;b&gt; claim, with comma</td><td>True</td>" in table
    assert "<caption>data: subset; profile: smoke</caption>" in table


def test_site_names_a_missing_input_and_writes_nothing(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="notebooks: .*missing"):
        build_site(SiteConfig(tmp_path / "missing", tmp_path, tmp_path / "site"))
    (tmp_path / "executed").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "executed" / "00_x.ipynb")
    with pytest.raises(FileNotFoundError, match="claims: .*05_claims.csv"):
        build_site(SiteConfig(tmp_path / "executed", tmp_path, tmp_path / "site"))
    assert not (tmp_path / "site").exists()


def test_every_notebook_has_the_header_jupyterlab_writes_back():
    """Opening and saving in JupyterLab rewrites the jupytext header; every notebook carries the one it writes
    (kernel ``Python 3 (ipykernel)``, no jupytext version), so a save without edits leaves no diff."""
    headers = {notebook.name: notebook.read_text().split("\n# ---\n", 1)[0] for notebook in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 8
    for name, header in headers.items():
        assert "display_name: Python 3 (ipykernel)" in header, name
        assert "jupytext_version" not in header.replace("-jupytext.text_representation.jupytext_version", ""), name
    assert len(set(headers.values())) == 1, sorted(headers)


def test_claims_table_shows_a_reader_the_verdict_and_a_rounded_interval(tmp_path: Path):
    csv_file = tmp_path / "claims.csv"
    csv_file.write_text("# target: 0.99\nclaim,algorithm,scope,devices,effect,estimate,ci_low,ci_high,threshold,"
                        "n_seeds,n_units,verdict,measured,method\n"
                        "SGD is worse,mp vs sgd,pooled,ID1,mp minus sgd,0.7580624915659427,0.6222651052890242,"
                        "0.8938598778428613,0.01,3,3,holds,mp 0.95 sgd 0.20,Student-t\n"
                        "Untestable,sgd,pooled,,epochs,,,,0.0,0,0,inconclusive,not testable,Student-t\n")
    table = claims_table(csv_file)
    assert "<th>verdict</th>" in table and "<th>ci_low</th>" not in table
    assert "<td>+0.758 [+0.622, +0.894]</td>" in table and "<td>holds</td>" in table
    assert "<td>inconclusive</td><td>epochs</td><td></td><td>0</td><td>not testable</td>" in table


def test_site_renders_the_docs_with_mathml_equations_and_references_no_network_resource(tmp_path: Path):
    notebooks, figures = tmp_path / "executed", tmp_path / "figures"
    notebooks.mkdir(), figures.mkdir()
    cells = [nbformat.v4.new_markdown_cell("# Energy\n\n$E = C V^2$, and in code `$HOME` stays.")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), notebooks / "00_energy.ipynb")
    index = build_site(SiteConfig(notebooks, figures, tmp_path / "site", paths.FIGURES / "05_claims.csv"))
    site = index.parent
    docs = sorted(p.stem for p in (paths.ROOT / "docs").glob("*.md"))
    assert docs and sorted(p.stem for p in (site / "docs").glob("*.html")) == docs
    assert all(f'href="docs/{name}.html"' in index.read_text() for name in docs)
    for page in site.rglob("*.html"):
        text = page.read_text()
        remote = re.findall(r'<(?:script|link|img|iframe)\b[^>]*?(?:src|href)="(?:https?:)?//[^"]*"', text)
        assert not remote, f"{page.relative_to(site)} loads {remote}"
        assert "mathjax" not in text.lower(), f"{page.relative_to(site)} still configures MathJax"
    science = (site / "docs" / "science.html").read_text()
    assert science.count("<math") >= 20 and "<mfrac>" in science
    assert "$" not in re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", science, flags=re.S), "raw LaTeX left"
    notebook_page = (site / "notebooks" / "00_energy.html").read_text()
    assert re.search(r'<math [^>]*display="inline"[^>]*>.*<msup>.*</math>', notebook_page, flags=re.S)
    assert "$HOME" in notebook_page and "$E = C V^2$" not in notebook_page


def test_links_between_docs_pages_point_to_their_html_and_bad_latex_names_the_equation():
    html = markdown_to_html("See [the science](science.md#device-models), [a site](https://example.org/a.md).")
    assert 'href="science.html#device-models"' in html and 'href="https://example.org/a.md"' in html
    with pytest.raises(ValueError, match=r"\\\\notacommand"):
        latex_to_mathml(r"x = \notacommand y")
