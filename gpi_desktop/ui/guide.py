"""Help > Guide: one page a researcher reads in two minutes, and the dialog that shows it."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from gpi_desktop.core.vocabulary.settings import ExportSettings
from gpi_desktop.ui.shared.screen_fit import fit_dialog
from gpi_desktop.ui.steps.export_flow import exported_files_text, gpi_pack_snippet

GUIDE_TITLE = "Guide: GPI Desktop in two minutes"


def guide_html(runs_dir: Path, export: ExportSettings | None = None) -> str:
    """The guide, naming this computer's job folder and the file names the export will use."""
    export = export or ExportSettings()
    snippet = html.escape(gpi_pack_snippet(Path("results"), export), quote=False)
    runs = html.escape(str(runs_dir), quote=False)
    return f"""

<h2>What GPI is</h2>
<p>GenAI-Powered Inference (GPI) estimates the causal effect of texts. A language model writes one text per
observation, greedily (without chance), and a vector summarising its internal state is kept with each text. The
effect is then estimated from those vectors with gpi_pack's estimator. This program does both, without code.</p>

<h2>The seven steps</h2>
<ol>
<li><b>Hugging Face access</b>: Llama models need a free token, kept in your system's password store.</li>
<li><b>Model</b>: gpi_pack's default, Llama-3.1-8B-Instruct, needs an NVIDIA GPU; the demo model runs anywhere.</li>
<li><b>Prompts</b>: a CSV, TSV or Excel file with one prompt per row; pick its column.</li>
<li><b>Settings</b>: the defaults reproduce gpi_pack (\u25cf marks a setting that is not); point at one to read it.</li>
<li><b>Run and preview</b>: texts show as they are written; stop at any time and continue later.</li>
<li><b>Export</b>: choose a new folder.</li>
<li><b>Estimate the effect</b>: a treatment column (two values) and an outcome column (numbers) give the effect, its
standard error and 95% interval, the overlap of the groups, and a paragraph for your methods section.</li>
</ol>

<h2>What the export holds</h2>
<p>{html.escape(exported_files_text(export), quote=False)} Row <i>k</i> of every file is data row <i>k</i> of your
prompts file, counting from 0. Load it in Python with gpi_pack:</p>
<pre>{snippet}</pre>

<h2>Progress and Stop</h2>
<p>Progress counts tokens against the most the job can still write, so the time left is a bound
(\u201cat most\u201d). Stop keeps every finished text; texts in progress start over (the window says how many).</p>

<h2>Texts that start with \u201cassistant\u201d</h2>
<p>gpi_pack's chat formatting ends the prompt without the assistant's header, so most chat models write their role
name first. For clean texts choose the model-card style (step 4); texts and vectors then differ from gpi_pack's.</p>

<h2>Batches, and gpi_pack's exact procedure</h2>
<p>Batches are many times faster. On the CPU in float32 each text and vector is bit-identical whatever else is in
the batch; on a GPU, or in bfloat16 or float16, the other prompts of a batch change the numbers slightly and, rarely,
a text. For gpi_pack's exact procedure (each prompt alone, slower) tick <i>One prompt at a time</i>.</p>

<h2>Where jobs are kept</h2>
<p>Each finished prompt is saved at once in <code>{runs}</code>, one folder per job. After a stop, a crash or a
restart the window offers every kept job at its start, finished ones first; one click reopens it. A job's folder is
removed once it is exported.</p>

<h2>How to cite the settings</h2>
<p><code>manifest.json</code> in the export records everything that made the numbers. Report the model and its
version (<code>model.model_id</code>, <code>model.revision</code>), <code>model.precision</code>,
<code>settings.instruction</code>, <code>settings.pooling</code>, <code>settings.max_new_tokens</code>,
<code>settings.template</code> and the program's version (<code>versions.gpi_desktop</code>). Its checksums show the
files are unchanged since the export (a guard against damage, not deliberate edits; to check the numbers, run the
job again and use <code>gpi-desktop compare</code>).</p>
"""


class GuideDialog(QDialog):
    def __init__(self, runs_dir: Path, export: ExportSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(GUIDE_TITLE)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(guide_html(runs_dir, export))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        fit_dialog(self, QSize(760, 640))
