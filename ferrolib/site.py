"""Static site of the executed notebooks (`make site`): one HTML page per notebook, one per page of ``docs/``, the
figures, and an index with what the collection reproduces, the claims table and links to every page and figure.

Notebooks are rendered with nbconvert's ``lab`` HTML template (already a dependency of papermill and JupyterLab; no
Sphinx or Node toolchain, and the pages work from the file system), the ``docs/*.md`` pages with mistune (the
Markdown renderer nbconvert uses). Equations are converted to MathML at build time (latex2mathml), which browsers
render natively: no page loads a script, a font or anything else from the network, so the site works offline.
Every figure gets alternative text: the caption the notebook writes in the markdown cell before the figure's code
cell. The command line is ``ferrolib site EXECUTED_NOTEBOOKS_DIR FIGURES_DIR OUTPUT_DIR`` (``ferrolib.cli.site``).
"""
from __future__ import annotations

import csv
import fnmatch
import html
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import latex2mathml.converter
import mistune
import nbconvert
import nbformat
from mistune.plugins.math import BLOCK_MATH_PATTERN, INLINE_MATH_PATTERN

from . import paths, provenance

IMAGE_MIME = "image/png"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
ALT_TEXT_LIMIT = 400
"""Longest alternative text (characters); longer captions are cut at a word boundary."""

_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{#- No script from a CDN: equations are MathML already, and the pages have no widgets, JavaScript or diagrams. -#}
{% block html_head_js_requirejs %}{% endblock html_head_js_requirejs %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}" alt="{{ output.metadata.get('alt', '') | escape_html }}">
</div>
{% endblock data_png %}
"""

_SAVE_CALL = re.compile(r"""plotting\.save\(\s*\w+\s*,\s*f?(["'])(?P<name>[^"']+)\1""")

REPRODUCES = (
    "Garg, Uriarte Vicandi et al., <em>Energy-convergence trade off for the training of neural networks on "
    "bio-inspired hardware</em> (arXiv 2509.18121, 2025): measured pulse responses of ferroelectric HfO2/ZrO2 "
    "synapses (pulse widths 20 ns to 0.2 ms) are fitted with device models, drive hardware-aware MNIST training "
    "with plain analog SGD, mixed precision and symmetry-point shifting, and every programming pulse is counted "
    "into an energy ledger. The claims table below compares each claim of the paper with what this reproduction "
    "measured; it is computed by notebook 05, never typed."
)


@dataclass(frozen=True)
class SiteConfig:
    """What `make site` renders and where it writes."""

    notebooks: Path
    """Folder of executed notebooks ``NN_name.ipynb`` (``build/notebooks`` after `make figures`)."""
    figures: Path
    """Folder of the figures those notebooks wrote (``figures/``); copied into the site."""
    output: Path
    """The site folder (``build/site``); replaced on every build."""
    claims: Path | None = None
    """The claims table (CSV, ``#`` comment lines carry its provenance); default ``<figures>/05_claims.csv``."""
    docs: Path | None = None
    """Folder of the Markdown pages to include (``*.md``); default the repository's ``docs/``."""

    def __repr__(self) -> str:
        return provenance.compact_repr(self)

    @property
    def claims_csv(self) -> Path:
        return self.claims if self.claims is not None else self.figures / "05_claims.csv"

    @property
    def docs_folder(self) -> Path:
        return self.docs if self.docs is not None else paths.ROOT / "docs"


def plain_text(markdown: str) -> str:
    """Markdown to one line of plain text: drops heading marks, emphasis, code ticks and link targets."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"^\s{0,3}#+\s*", "", text, flags=re.M)
    text = re.sub(r"[*_`]", "", text)
    return " ".join(text.split())


def shorten(text: str, limit: int = ALT_TEXT_LIMIT) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (an ellipsis marks the cut)."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"


def notebook_title(notebook: nbformat.NotebookNode, fallback: str) -> str:
    """The first markdown heading of the notebook, else ``fallback``."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, flags=re.M)
            if match:
                return plain_text(match.group(1))
    return fallback


def _captioned_code_cells(notebook: nbformat.NotebookNode, title: str):
    """Yield ``(code cell, caption)``: the caption is the nearest markdown cell above, else the notebook title."""
    caption = title
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            caption = plain_text(cell.source) or caption
        elif cell.cell_type == "code":
            yield cell, caption


def figure_captions(notebook: nbformat.NotebookNode, title: str) -> list[tuple[str, str]]:
    """``(name pattern, caption)`` for every ``plotting.save`` call; f-string fields become ``*`` wildcards."""
    return [
        (re.sub(r"\{[^}]*\}", "*", match.group("name")), caption)
        for cell, caption in _captioned_code_cells(notebook, title)
        for match in _SAVE_CALL.finditer(cell.source)
    ]


def add_alt_text(notebook: nbformat.NotebookNode, title: str) -> int:
    """Set ``metadata.alt`` on every image output (the caption above its cell); returns how many images.

    Widget views (tqdm bars) keep only their text form, since a static page has no widget state."""
    images = 0
    for cell, caption in _captioned_code_cells(notebook, title):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            data.pop(WIDGET_MIME, None)
            if IMAGE_MIME in data:
                output.setdefault("metadata", {})["alt"] = shorten(f"Figure of notebook '{title}': {caption}")
                images += 1
    notebook.metadata.pop("widgets", None)
    return images


def _number(text: str) -> str:
    """A numeric cell to 3 significant digits (signed); other text unchanged, empty for NaN."""
    try:
        value = float(text)
    except ValueError:
        return text
    return "" if value != value else f"{value:+.3g}"


def reader_view(header: list[str], body: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The columns a reader wants from an ``analysis.claims`` table (claim, algorithm, devices, verdict, effect,
    estimate with its interval, seeds, what was measured), numbers to 3 digits; other tables unchanged."""
    if not {"claim", "verdict", "estimate", "ci_low", "ci_high", "n_seeds", "measured"} <= set(header):
        return header, body
    columns = ["claim", "algorithm", "devices", "verdict", "effect", "estimate [interval]", "seeds", "measured"]
    rows = []
    for row in body:
        cell = dict(zip(header, row))
        low, high = _number(cell["ci_low"]), _number(cell["ci_high"])
        estimate = _number(cell["estimate"]) + (f" [{low}, {high}]" if low and low != high else "")
        rows.append([cell.get("claim", ""), cell.get("algorithm", ""), cell.get("devices", ""), cell["verdict"],
                     cell.get("effect", ""), estimate, cell["n_seeds"], cell["measured"]])
    return columns, rows


def claims_table(path: Path) -> str:
    """The claims CSV as an HTML table (``reader_view`` of its columns), its ``#`` provenance lines as the caption."""
    lines = path.read_text().splitlines()
    notes = [line.lstrip("# ").strip() for line in lines if line.startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(line for line in lines if not line.startswith("#")))))
    if not rows:
        raise ValueError(f"{path}: the claims table has no header row")
    header, body = reader_view(rows[0], rows[1:])
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(value)}</{tag}>" for value in row)  # noqa: E731
    return (
        '<table class="claims">\n'
        f"<caption>{html.escape('; '.join(notes))}</caption>\n"
        f"<thead><tr>{cells(header, 'th')}</tr></thead>\n<tbody>\n"
        + "".join(f"<tr>{cells(row, 'td')}</tr>\n" for row in body)
        + "</tbody>\n</table>"
    )


def latex_to_mathml(latex: str, display: bool = False) -> str:
    """One equation as MathML (``display``: a block of its own); malformed LaTeX raises ValueError naming it."""
    try:
        mathml = latex2mathml.converter.convert(latex.strip(), display="block" if display else "inline")
    except Exception as error:  # latex2mathml raises its own exception types for malformed input
        raise ValueError(f"equation {latex.strip()!r} cannot be converted to MathML: {error!r}") from error
    unknown = re.findall(r">(\\[A-Za-z]+)<", mathml)  # a command latex2mathml does not know stays as text
    if unknown:
        raise ValueError(f"equation {latex.strip()!r}: unknown LaTeX command(s) {', '.join(sorted(set(unknown)))}")
    return mathml


class _MathMLRenderer(mistune.HTMLRenderer):
    """mistune's HTML renderer with ``$...$`` and ``$$...$$`` rendered as MathML."""

    def inline_math(self, text: str) -> str:
        return latex_to_mathml(text)

    def block_math(self, text: str) -> str:
        return latex_to_mathml(text, display=True) + "\n"


def markdown_to_html(markdown: str) -> str:
    """Markdown (tables, strikethrough, bare URLs, ``$`` and ``$$`` equations) to HTML with MathML equations;
    links to other ``.md`` pages point to their ``.html`` renderings."""
    renderer = _MathMLRenderer(escape=False)
    convert = mistune.create_markdown(
        renderer=renderer, plugins=["table", "strikethrough", "url", "math", "mistune.plugins.math.math_in_list",
                                             "mistune.plugins.math.math_in_quote"])
    for name in ("inline_math", "block_math"):  # the math plugin registers MathJax delimiters; keep MathML
        convert.renderer.register(name, getattr(_MathMLRenderer, name))
    body = convert(markdown)
    return re.sub(r'href="(?![a-z]+:)([^"#]+)\.md(#[^"]*)?"', r'href="\1.html\2"', body)


_CODE = re.compile(r"(```.*?```|`[^`]*`)", flags=re.S)
_MATH = re.compile(f"{BLOCK_MATH_PATTERN}|{INLINE_MATH_PATTERN}", flags=re.M)


def _math_match_to_mathml(match: re.Match) -> str:
    groups = match.groupdict()
    display = next((groups[g] for g in ("math_text_single", "math_text_multi", "display_math_text") if groups[g]), None)
    if display is not None:
        return latex_to_mathml(display, display=True)
    return latex_to_mathml(groups["backtick_math_text"] or groups["math_text"])


def markdown_math_to_mathml(markdown: str) -> str:
    """A notebook's markdown with every equation outside code replaced by its MathML (nbconvert then passes the
    HTML through), so a notebook page needs no MathJax either."""
    parts = _CODE.split(markdown)
    return "".join(part if index % 2 else _MATH.sub(_math_match_to_mathml, part) for index, part in enumerate(parts))


def _exporter() -> nbconvert.HTMLExporter:
    loader = jinja2.DictLoader({"ferrolib_site.html.j2": _TEMPLATE})
    return nbconvert.HTMLExporter(template_name="lab", template_file="ferrolib_site.html.j2", extra_loaders=[loader])


def _check_inputs(config: SiteConfig) -> list[Path]:
    """The executed notebooks; one clear error for a missing input, before anything is written."""
    if not config.notebooks.is_dir():
        raise FileNotFoundError(f"notebooks: {config.notebooks} is not a folder (run `make figures` or `make smoke`)")
    notebooks = sorted(p for p in config.notebooks.glob("[0-9][0-9]_*.ipynb") if not p.name.endswith(".source.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"notebooks: no executed NN_name.ipynb in {config.notebooks}")
    if not config.figures.is_dir():
        raise FileNotFoundError(f"figures: {config.figures} is not a folder")
    if not config.claims_csv.is_file():
        raise FileNotFoundError(f"claims: {config.claims_csv} not found (notebook 05 writes it)")
    return notebooks


def build_site(config: SiteConfig) -> Path:
    """Render the site into ``config.output`` (written beside it, then moved into place); returns index.html."""
    notebooks = _check_inputs(config)
    staging = config.output.with_name(config.output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "notebooks").mkdir(parents=True)
    (staging / "figures").mkdir()
    exporter, sections = _exporter(), []
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        title = notebook_title(notebook, path.stem)
        add_alt_text(notebook, title)
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = markdown_math_to_mathml(cell.source)
        body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
        (staging / "notebooks" / f"{path.stem}.html").write_text(body)
        captions = figure_captions(notebook, title)
        figure_items = []
        for figure in sorted(config.figures.glob(f"{path.stem[:2]}_*.png")):
            shutil.copy2(figure, staging / "figures" / figure.name)
            caption = next((c for pattern, c in captions if fnmatch.fnmatch(figure.stem, pattern)), title)
            alt = html.escape(shorten(f"Figure {figure.stem}: {caption}"), quote=True)
            figure_items.append(
                f'<li><a href="figures/{figure.name}"><img src="figures/{figure.name}" alt="{alt}" loading="lazy">'
                f"<br>{figure.name}</a></li>"
            )
        sections.append(
            f'<section><h3><a href="notebooks/{path.stem}.html">{html.escape(title)}</a></h3>\n'
            f'<ul class="figures">{"".join(figure_items)}</ul></section>'
        )
    docs = render_docs(config.docs_folder, staging / "docs")
    index = staging / "index.html"
    index.write_text(_INDEX.format(reproduces=REPRODUCES, claims=claims_table(config.claims_csv), docs=docs,
                                   sections="\n".join(sections)))
    shutil.rmtree(config.output, ignore_errors=True)
    staging.rename(config.output)
    return config.output / "index.html"


def render_docs(source: Path, output: Path) -> str:
    """Render every ``source/*.md`` page into ``output/<name>.html``; returns the index's list of links to them."""
    items = []
    for page in sorted(source.glob("*.md")):
        markdown = page.read_text()
        title = next((plain_text(line) for line in markdown.splitlines() if line.startswith("# ")), page.stem)
        output.mkdir(parents=True, exist_ok=True)
        (output / f"{page.stem}.html").write_text(_DOC_PAGE.format(title=html.escape(title), body=markdown_to_html(markdown)))
        items.append(f'<li><a href="docs/{page.stem}.html">{html.escape(title)}</a></li>')
    return f'<ul class="docs">{"".join(items)}</ul>' if items else "<p>No documentation pages.</p>"


_STYLE = """body {{ font-family: system-ui, sans-serif; max-width: 75rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; vertical-align: top; }}
table.claims caption {{ caption-side: bottom; font-size: 0.8rem; color: #555; text-align: left; }}
ul.figures {{ display: flex; flex-wrap: wrap; gap: 1rem; list-style: none; padding: 0; }}
ul.figures img {{ max-width: 22rem; max-height: 14rem; border: 1px solid #eee; }}
code, pre {{ background: #f6f6f6; }}
math[display="block"] {{ margin: 0.8rem 0; font-size: 1.1rem; }}"""

_DOC_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ferrolib: {title}</title>
<style>
""" + _STYLE + """
</style>
</head>
<body>
<p><a href="../index.html">ferrolib: notebooks, figures, claims and documentation</a></p>
{body}
</body>
</html>
"""

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ferrolib: the notebooks, their figures and the claims table</title>
<style>
""" + _STYLE + """
</style>
</head>
<body>
<h1>ferrolib: energy-convergence trade-off of training on ferroelectric synapses</h1>
<h2>What the collection reproduces</h2>
<p>{reproduces}</p>
<h2>Claims of the paper and what this reproduction measured</h2>
{claims}
<h2>Documentation</h2>
{docs}
<h2>Notebooks and figures</h2>
{sections}
</body>
</html>
"""
