"""Step 4: the run's settings, each with gpi_pack's default and a plain explanation."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.generation.instructions import CREATE_INSTRUCTION, REPEAT_INSTRUCTION
from gpi_desktop.core.model.memory import quantization_available, quantization_missing
from gpi_desktop.core.vocabulary.errors import GpiError
from gpi_desktop.core.vocabulary.options import parse_options
from gpi_desktop.core.vocabulary.settings import POOLINGS as POOLING_NAMES
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings, parse_batch_size
from gpi_desktop.core.vocabulary.template_date import DATE_FORMAT
from gpi_desktop.ui.shared.prefs import options_text
from gpi_desktop.ui.state.window_state import MemoryInputs

TASKS = [
    ("create", "Create a text from each prompt (create)"),
    ("repeat", "Repeat each text as it is (repeat)"),
    ("custom", "My own instruction"),
]
_POOLING_WORDS = {
    "last": "Last token (last)",
    "mean": "Average over the generated tokens (mean)",
    "max": "Largest value over the generated tokens (max)",
}
POOLINGS = [(name, _POOLING_WORDS[name]) for name in POOLING_NAMES]
DTYPES = [("auto", "Automatic (auto)"), ("bfloat16", "bfloat16"), ("float16", "float16"), ("float32", "float32")]
DEVICES = [
    ("auto", "Automatic: the GPU if there is one"),
    ("cuda", "NVIDIA GPU (cuda)"),
    ("mps", "Apple GPU on a Mac (mps)"),
    ("cpu", "CPU"),
]
QUANTIZATIONS = [(None, "None: full precision"), ("8bit", "8-bit (bitsandbytes)"), ("4bit", "4-bit NF4 (bitsandbytes)")]
LOCKED_NOTE = (
    "The settings cannot change while a run or an export works: its results are made with these. "
    "Stop the run (step 5) to change them; finished texts are kept."
)
CHANGED_MARK = "\u25cf"  # beside a setting that is not its default
ONE_AT_A_TIME_WORDS = "One prompt at a time (gpi_pack's exact procedure, slower)"
TEMPLATES = [("gpi_pack", "gpi_pack-compatible"), ("model-card", "Model-card style")]

TIPS = {
    "task": (
        "What the model is told before each prompt (its instruction).\n"
        f"create: \u201c{CREATE_INSTRUCTION}\u201d\n"
        f"repeat: \u201c{REPEAT_INSTRUCTION}\u201d Use repeat to get vectors for texts you already have.\n"
        "Your own instruction is used word for word.\nDefault: create, as in gpi_pack."
    ),
    "pooling": (
        "How the model's internal states, one per generated token, become one vector per text.\n"
        "last: the state at the last generated token (gpi_pack's default).\n"
        "mean: the average over the generated tokens (the prompt's own step left out, as in gpi_pack).\n"
        "max: the largest value of each number over the generated tokens.\nDefault: last."
    ),
    "max_new_tokens": (
        "The longest text the model may write, in tokens (a token is roughly three quarters of a word).\n"
        "Texts that reach it are cut and marked \u2018Token limit\u2019 in the preview.\n"
        "Fewer tokens run faster. Default: 1000, as in gpi_pack."
    ),
    "dtype": (
        "How precisely the model's numbers are stored.\n"
        "auto: bfloat16 on a GPU that supports it (NVIDIA or Apple), else float16; float32 on the CPU.\n"
        "float32 needs twice the memory of the others. Recorded in the manifest, since it changes the numbers "
        "slightly.\nDefault: auto."
    ),
    "quantization": (
        "Load the model in 8-bit or 4-bit to need about a half or a quarter of the GPU memory.\n"
        "It changes the numbers (and so the vectors) slightly, and is recorded in the manifest.\n"
        "It needs an NVIDIA GPU. Default: none (full precision), as in gpi_pack."
    ),
    "device": (
        "Where the model runs. Automatic uses the NVIDIA GPU when there is one (or an AMD GPU with a ROCm "
        "build), else the Apple GPU of a Mac with Apple silicon (M1 and later), else the CPU (slow for large "
        "models).\nDefault: automatic."
    ),
    "batch_size": (
        "How many prompts are generated together. More is faster until memory runs out.\n"
        "On the CPU in float32 a prompt's text and vector are bit-identical whatever else is in its batch. On a "
        "GPU, or in bfloat16 or float16, the other prompts of a batch change the numbers slightly, and where two "
        "next tokens are almost equally likely a text can differ.\n"
        "One prompt at a time runs gpi_pack's exact procedure (slower).\nauto picks a size for your GPU or CPU. "
        "Default: auto."
    ),
    "one_at_a_time": (
        "Generate each prompt alone with transformers' generate(), exactly as gpi_pack does: no other prompt "
        "changes its numbers, at the cost of speed (several times slower on a GPU). Default: off (batches)."
    ),
    "template": (
        "How the instruction and the prompt are wrapped for a chat model.\n"
        "gpi_pack-compatible: exactly as gpi_pack does it (no assistant header after the prompt), so the vectors "
        "match gpi_pack's.\n"
        "Model-card style: adds the assistant header the model's documentation recommends; texts may read "
        "better, but the vectors differ from gpi_pack's.\nDefault: gpi_pack-compatible."
    ),
    "prefix": (
        "The start of each vector file's name: hidden_0.pt, hidden_1.pt, \u2026\n"
        "gpi_pack's load_hiddens needs the same prefix. Default: hidden_, as in gpi_pack."
    ),
    "save_name": (
        "The name (without extension) of the .pkl and .csv files that hold the generated texts.\n"
        "Default: generated_texts, as in gpi_pack."
    ),
    "template_options": (
        "Options some models take in how prompts are put to them, as their documentation names them: "
        "the chat template's options (gpi_pack's tokenizer_config), one KEY=VALUE per line, for example "
        "enable_thinking=false for Qwen3.\n"
        'Values are read as JSON where they can be (true, 2, "text"). Leave empty unless a model\'s '
        "documentation asks for one. Recorded in the manifest."
    ),
    "template_date": (
        "The date the chat template is given, written YYYY-MM-DD. Some templates (Llama 3.2, Mistral Small 3.1) "
        "write today's date into every prompt, which changes the vectors.\n"
        "Empty: the day the job is first run, kept for the whole job (a run continued on another day uses it "
        "too). To repeat an earlier study exactly, enter the date its manifest records. Recorded in the manifest."
    ),
    "generation_options": (
        "Extra settings for how the model writes (generation options, gpi_pack's model_config), one KEY=VALUE "
        "per line, for example "
        "repetition_penalty=1.1.\nSampling and temperature are refused: decoding is always greedy, as in "
        "gpi_pack. Leave empty unless you need one. Recorded in the manifest."
    ),
}
HELP = {
    "task": "What the model is asked to do with each prompt.",
    "pooling": "How each text's token states become one vector.",
    "max_new_tokens": "The longest text the model may write.",
    "dtype": "Numeric precision of the model.",
    "quantization": "Less GPU memory; changes the numbers slightly.",
    "device": "An NVIDIA or Apple GPU, or the CPU.",
    "batch_size": "Faster; other prompts in a batch change the numbers slightly.",
    "template": "Keep gpi_pack-compatible to match gpi_pack's vectors.",
    "prefix": "hidden_0.pt, hidden_1.pt, \u2026",
    "save_name": "generated_texts.pkl and generated_texts.csv",
}


def quantization_tip() -> str:
    """The quantization tooltip, saying whether this build can do it and, if not, how to get one that can."""
    if quantization_available():
        can = "This build can do it (it includes the bitsandbytes package)."
    else:
        can = f"This build cannot: {quantization_missing()}."
    return TIPS["quantization"] + "\n\n" + can[0].upper() + can[1:]


def _combo(items: Sequence[tuple[str | None, str]], tip: str) -> QComboBox:
    box = QComboBox()
    for value, label in items:
        box.addItem(label, value)
    box.setToolTip(tip)
    return box


def _select(box: QComboBox, value: str | None) -> None:
    index = box.findData(value)
    box.setCurrentIndex(max(index, 0))


class SettingsPanel(QWidget):
    """The settings form; `values()` gives typed RunSettings/ExportSettings (the model is the model step's)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._labels: dict[str, tuple[QLabel, str]] = {}  # TIPS key -> its label and the label's own words
        self._make_fields()
        self._lay_out(self._basic_form(), self._advanced_part())
        self.set_values(RunSettings(), ExportSettings())
        self._connect_changes()

    def _make_fields(self) -> None:
        """One widget per setting, each with its tooltip from TIPS."""
        self.task_box = _combo(TASKS, TIPS["task"])
        self.instruction_edit = QPlainTextEdit()
        self.instruction_edit.setPlaceholderText("Write the instruction the model gets before each prompt.")
        self.instruction_edit.setToolTip("Your own instruction, sent to the model word for word before each prompt.")
        self.instruction_edit.setFixedHeight(70)
        self.pooling_box = _combo(POOLINGS, TIPS["pooling"])
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 100_000)
        self.max_tokens.setGroupSeparatorShown(True)
        self.max_tokens.setToolTip(TIPS["max_new_tokens"])
        self.dtype_box = _combo(DTYPES, TIPS["dtype"])
        self.quantization_box = _combo(QUANTIZATIONS, quantization_tip())
        self.quantization_box.setEnabled(quantization_available())
        self.device_box = _combo(DEVICES, TIPS["device"])
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 4096)
        self.batch_spin.setSpecialValueText("auto")  # 0 shows as "auto"
        self.batch_spin.setToolTip(TIPS["batch_size"])
        self.one_at_a_time = QCheckBox(ONE_AT_A_TIME_WORDS)
        self.one_at_a_time.setToolTip(TIPS["one_at_a_time"])
        self.one_at_a_time.toggled.connect(lambda alone: self.batch_spin.setEnabled(not alone))
        self.template_box = _combo(TEMPLATES, TIPS["template"])
        self.prefix_edit = QLineEdit()
        self.prefix_edit.setToolTip(TIPS["prefix"])
        self.save_name_edit = QLineEdit()
        self.save_name_edit.setToolTip(TIPS["save_name"])
        self.template_options = QPlainTextEdit()
        self.template_options.setToolTip(TIPS["template_options"])
        self.template_options.setPlaceholderText("only if the model's page names one, one per line")
        self.template_options.setFixedHeight(54)
        self.template_date_edit = QLineEdit()
        self.template_date_edit.setToolTip(TIPS["template_date"])
        self.template_date_edit.setPlaceholderText(f"empty: the day the job is first run ({DATE_FORMAT})")
        self.template_date_edit.setMaxLength(10)
        self.generation_options = QPlainTextEdit()
        self.generation_options.setToolTip(TIPS["generation_options"])
        self.generation_options.setPlaceholderText("only if you need one, one per line")
        self.generation_options.setFixedHeight(54)

    def _basic_form(self) -> QFormLayout:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._add(form, "Task", self.task_box, "task")
        form.addRow("", self.instruction_edit)
        self._add(form, "Pooling", self.pooling_box, "pooling")
        self._add(form, "Maximum new tokens", self.max_tokens, "max_new_tokens")
        self._add(form, "Chat formatting", self.template_box, "template")
        self._add(form, "Precision", self.dtype_box, "dtype")
        self._add(form, "Device", self.device_box, "device")
        self._add(form, "Quantization", self.quantization_box, "quantization")
        self._add(form, "Batch size", self.batch_spin, "batch_size")
        form.addRow("", self.one_at_a_time)
        self._add(form, "File prefix", self.prefix_edit, "prefix")
        self._add(form, "Texts file name", self.save_name_edit, "save_name")
        return form

    def _advanced_part(self) -> QWidget:
        """The advanced options, hidden behind their check box until asked for."""
        self.advanced = QCheckBox("Show advanced options (as gpi_pack's tokenizer_config and model_config)")
        self.advanced.setToolTip(
            "Options most researchers never need. Open them only when a model's documentation asks for one."
        )
        adv_inner = QWidget()
        adv_form = QFormLayout(adv_inner)
        adv_form.setContentsMargins(0, 0, 0, 0)
        adv_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        adv_form.addRow(self._label("Model options", "template_options"), self.template_options)
        adv_form.addRow(self._label("Template date", "template_date"), self.template_date_edit)
        adv_form.addRow(self._label("Generation options", "generation_options"), self.generation_options)
        self.advanced.toggled.connect(adv_inner.setVisible)
        adv_inner.setVisible(False)
        return adv_inner

    def _lay_out(self, form: QFormLayout, adv_inner: QWidget) -> None:
        defaults = QPushButton("Restore gpi_pack's defaults")
        defaults.setToolTip("Set every setting on this page back to its default (the model is not changed).")
        defaults.clicked.connect(self.restore_defaults)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(defaults)

        intro = QLabel(
            f"The defaults reproduce gpi_pack; a setting marked {CHANGED_MARK} is not its default. Point at a "
            "setting to read what it means."
        )
        intro.setWordWrap(True)
        self.lock_note = QLabel(LOCKED_NOTE)  # outside the greyed part, so that it reads as the reason
        self.lock_note.setWordWrap(True)
        self.lock_note.setStyleSheet("color: #8a5a00; background: #fff4e0; padding: 6px;")
        self.lock_note.hide()
        self.body = QWidget()
        inner = QVBoxLayout(self.body)
        inner.setContentsMargins(0, 0, 0, 0)
        form_box = QWidget()
        form_box.setLayout(form)
        form_box.setMaximumWidth(760)  # fields of one width, not stretched across a wide window
        adv_inner.setMaximumWidth(760)
        inner.addWidget(form_box)
        inner.addWidget(self.advanced)
        inner.addWidget(adv_inner)
        inner.addLayout(bottom)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.lock_note)
        layout.addWidget(self.body)
        layout.addStretch(1)

    def set_locked(self, locked: bool) -> None:
        """While a run or an export works its settings stay as they are (its results are theirs): greyed, and why."""
        self.body.setEnabled(not locked)
        self.lock_note.setVisible(locked)

    def _connect_changes(self) -> None:
        for box in (
            self.task_box,
            self.pooling_box,
            self.dtype_box,
            self.template_box,
            self.device_box,
            self.quantization_box,
        ):
            box.currentIndexChanged.connect(self._on_change)
        for spin in (self.max_tokens, self.batch_spin):
            spin.valueChanged.connect(self._on_change)
        self.one_at_a_time.toggled.connect(self._on_change)
        for edit in (self.prefix_edit, self.save_name_edit, self.template_date_edit):
            edit.textChanged.connect(self._on_change)
        for text in (self.instruction_edit, self.template_options, self.generation_options):
            text.textChanged.connect(self._on_change)

    def _label(self, text: str, key: str) -> QWidget:
        label = QLabel(text)
        label.setToolTip(TIPS[key])
        self._labels[key] = (label, text)
        return label

    def _add(self, form: QFormLayout, text: str, widget: QWidget, key: str) -> None:
        field = QWidget()
        column = QVBoxLayout(field)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(1)
        column.addWidget(widget)
        if key in HELP:
            hint = QLabel(HELP[key])
            hint.setStyleSheet("color: palette(placeholder-text); font-size: 11px;")
            hint.setToolTip(TIPS[key])
            column.addWidget(hint)
        form.addRow(self._label(text, key), field)

    def _on_change(self) -> None:
        self.instruction_edit.setVisible(self.task_box.currentData() == "custom")
        self._mark_changed()
        self.changed.emit()

    def changed_from_defaults(self) -> set[str]:
        """The settings (TIPS keys) whose values differ from the defaults, which reproduce gpi_pack."""
        try:
            run, export = self.values()
        except GpiError:
            return set()  # a half-typed option line: the marks stay as they were
        default_run, default_export = RunSettings(), ExportSettings()
        changed = {key for key in TIPS if hasattr(run, key) and getattr(run, key) != getattr(default_run, key)}
        changed |= {key for key in ("prefix", "save_name") if getattr(export, key) != getattr(default_export, key)}
        if run.task != default_run.task:
            changed.add("task")
        if run.strategy != default_run.strategy:
            changed.add("one_at_a_time")
        return changed

    def _mark_changed(self) -> None:
        changed = self.changed_from_defaults()
        for key, (label, text) in self._labels.items():
            label.setText(f"{text} {CHANGED_MARK}" if key in changed else text)
            label.setToolTip(TIPS[key] + ("\n\nChanged: not the default." if key in changed else ""))
        alone = ONE_AT_A_TIME_WORDS
        self.one_at_a_time.setText(f"{alone} {CHANGED_MARK}" if "one_at_a_time" in changed else alone)

    # --- values ----------------------------------------------------------------------------------

    def set_values(self, run: RunSettings, export: ExportSettings) -> None:
        task = run.task if run.task in ("create", "repeat") else "custom"
        _select(self.task_box, task)
        if task == "custom":
            self.instruction_edit.setPlainText(run.task)
        _select(self.pooling_box, run.pooling)
        self.max_tokens.setValue(run.max_new_tokens)
        _select(self.dtype_box, run.dtype)
        _select(self.device_box, run.device)
        _select(self.quantization_box, run.quantization)
        batch = parse_batch_size(run.batch_size)
        self.batch_spin.setValue(0 if batch == "auto" else int(batch))
        _select(self.template_box, run.template)
        self.prefix_edit.setText(export.prefix)
        self.save_name_edit.setText(export.save_name)
        self.template_options.setPlainText(options_text(run.template_options))
        self.generation_options.setPlainText(options_text(run.generation_options))
        self.template_date_edit.setText(run.template_date or "")
        self.one_at_a_time.setChecked(run.strategy == "one-at-a-time")
        if run.template_options or run.generation_options or run.template_date:
            self.advanced.setChecked(True)
        self.instruction_edit.setVisible(task == "custom")

    def values(self, model: str = RunSettings.model) -> tuple[RunSettings, ExportSettings]:
        """The settings as typed; raises SettingsError (plain words) for a bad option line."""
        task = self.task_box.currentData()
        if task == "custom":
            task = self.instruction_edit.toPlainText().strip()
        run = RunSettings(
            model=model,
            task=task,
            pooling=self.pooling_box.currentData(),
            max_new_tokens=self.max_tokens.value(),
            dtype=self.dtype_box.currentData(),
            device=self.device_box.currentData(),
            template=self.template_box.currentData(),
            quantization=self.quantization_box.currentData(),
            batch_size="auto" if self.batch_spin.value() == 0 else self.batch_spin.value(),
            template_options=parse_options(_lines(self.template_options)),
            generation_options=parse_options(_lines(self.generation_options)),
            template_date=self.template_date_edit.text().strip() or None,
            strategy="one-at-a-time" if self.one_at_a_time.isChecked() else "batched",
        )
        export = ExportSettings(prefix=self.prefix_edit.text(), save_name=self.save_name_edit.text().strip())
        return run, export

    def memory_inputs(self) -> MemoryInputs:
        return MemoryInputs(
            dtype=self.dtype_box.currentData(),
            device=self.device_box.currentData(),
            batch_size=max(1, self.batch_spin.value()),
            max_new_tokens=self.max_tokens.value(),
            quantization=self.quantization_box.currentData(),
        )

    def restore_defaults(self) -> None:
        self.instruction_edit.clear()
        self.set_values(RunSettings(), ExportSettings())
        self.advanced.setChecked(False)


def _lines(edit: QPlainTextEdit) -> list[str]:
    return [line.strip() for line in edit.toPlainText().splitlines() if line.strip()]
