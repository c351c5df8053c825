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
<p>GenAI-Powered Inference (GPI) estimates the causal effect of texts. Its first step gives a language model one
prompt (or one existing text) per observation, lets it write without chance (greedy decoding), and keeps two
things per observation: the text it wrote, and a vector of numbers that summarises the model's internal state while
it wrote. The estimators of the <code>gpi_pack</code> package (<code>TarNet.estimate_k_ate</code> and others) work on
those vectors. This program does that first step, exactly as <code>gpi_pack</code> does, without code, and then the
second: the effect, estimated from the vectors with gpi_pack's estimator.</p>

<h2>The seven steps</h2>
<ol>
<li><b>Hugging Face access</b>: Llama models need a free token; it is kept in your system's password store.</li>
<li><b>Model</b>: the model that writes (gpi_pack's default, Llama-3.1-8B-Instruct, needs an NVIDIA GPU; the demo
model tries everything on any computer). The step says where it runs and how long each vector is.</li>
<li><b>Prompts</b>: a CSV, TSV or Excel file with one prompt per row; pick the column that holds them.</li>
<li><b>Settings</b>: the defaults reproduce gpi_pack (a setting marked \u25cf is not its default); point at a setting
to read what it means.</li>
<li><b>Run and preview</b>: press Run; you can stop at any time and continue later. Each text shows as it is written,
with its token count. Read the texts before you export; highlighted rows reached the token limit.</li>
<li><b>Export</b>: choose a new folder; the files are written there.</li>
<li><b>Estimate the effect</b>: pick the treatment column (two values) and the outcome column (numbers) of your
prompts file or another data file, then choose a folder for the report: the effect with its standard error and 95%
interval, the rows used and left out, whether the two groups overlap, and a paragraph for your methods section.</li>
</ol>

<h2>What the export holds</h2>
<p>{html.escape(exported_files_text(export), quote=False)} Row <i>k</i> of every file is data row <i>k</i> of your
prompts file, counting from 0. Load it in Python with gpi_pack:</p>
<pre>{snippet}</pre>

<h2>Progress and the time left</h2>
<p>The progress counts the tokens written so far, of the texts in progress too, against the most the job can still
write: every unfinished prompt at its token limit. A text that ends earlier makes the job shorter, so the time left
is a bound (\u201cat most\u201d) at the current speed. Stop keeps every finished text; the texts in progress start
over when the job continues (the window says how many, and about how much work, before it stops).</p>

<h2>Texts that start with \u201cassistant\u201d</h2>
<p>gpi_pack's chat formatting ends the prompt without the assistant's header, so most chat models write their role
name first, and \u201cassistant\u201d goes into the texts. It is the default because gpi_pack's vectors are made
that way. For clean texts choose the model-card style (step 4, Chat formatting): the prompt ends with the header the
model's page recommends; the texts and the vectors then differ from gpi_pack's.</p>

<h2>Batches, and gpi_pack's exact procedure</h2>
<p>Prompts are generated in batches, which is many times faster. The other prompts of a batch change the numbers
slightly: a vector differs from a run of its prompt alone by about 1e-5 in float32, and where two next tokens are
almost equally likely a text can differ, more often on a GPU in bfloat16 or float16. A job keeps its batch size, so a
continued job gives the files of an uninterrupted one. For gpi_pack's exact procedure (each prompt alone, slower),
tick <i>One prompt at a time</i> under Batch size.</p>

<h2>Where jobs are kept</h2>
<p>While a job runs, each finished prompt is saved in <code>{runs}</code> (one folder per job). If the program is
stopped, closed or the computer goes down, the window offers it at its next start, finished jobs first (ready to
export), each with its file, rows, settings and date: one click reopens it with its inputs. The folder of a job is
removed once it has been exported.</p>

<h2>How to cite the settings</h2>
<p><code>manifest.json</code> in the export records everything that made the numbers. In a paper, report the model
and its exact version (<code>model.model_id</code>, <code>model.revision</code>), the precision and any quantization
(<code>model.precision</code>, <code>model.quantization</code>), the instruction (<code>settings.instruction</code>),
the pooling (<code>settings.pooling</code>), the token limit (<code>settings.max_new_tokens</code>), the chat
formatting (<code>settings.template</code>) and greedy decoding (<code>settings.decoding</code>), the vector length
(<code>hidden_size</code>) and the program's version (<code>versions.gpi_desktop</code>). For example: "Texts and
hidden states were generated with GPI Desktop (version), model (model_id, revision), (precision), greedy decoding up
to (max_new_tokens) new tokens, (pooling) pooling of the last layer." Keep the manifest with your replication files:
its checksums show that the files have not changed since the export was written (they guard against damage, not
against deliberate edits; to check the numbers themselves, run the job again and compare the two exports with
<code>gpi-desktop compare</code>).</p>
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
