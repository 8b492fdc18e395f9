"""Driving JupyterLab and the course's widgets from Playwright: open a notebook, run it from the
Run menu, read what the page shows, and change one control of each widget.

Each ``check_*`` function finds a widget by the ``mm-…`` classes the package gives its elements
(:func:`mmcourse.widgets._dom.mark`), changes one control the way a learner would (select, type
and press Enter, click, press a key on a slider), waits for the output to change accordingly,
and leaves a screenshot of the widget. The same checks drive the Voilà demo app.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

#: How long a widget may take to answer one change (a captioner's beam search, a VAE's drawing).
ANSWER_MS = 60_000
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")

KERNEL_DONE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
    const busy = [...document.querySelectorAll('.jp-InputArea-prompt')].some(p => p.textContent.includes('*'));
    return !!kernel && kernel.status === 'idle' && !busy;
}"""


def open_notebook(page: Page, lab_url: str, name: str) -> None:
    """Open ``name`` in JupyterLab and wait for its kernel (accepting a kernel dialog if one asks)."""
    page.goto(f"{lab_url}lab/tree/{name}?reset")  # ?reset: only this notebook open, not the workspace's earlier tabs
    page.locator(".jp-Notebook:visible").first.wait_for(timeout=60_000)
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        dialog.click(timeout=3_000)
    except Exception:  # no dialog: the notebook's kernel started by itself
        pass
    page.wait_for_function(KERNEL_DONE, timeout=120_000)


def shut_down_kernel(page: Page) -> None:
    """Free the notebook's kernel (a chapter's TensorFlow holds gigabytes) before the next test."""
    page.evaluate("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                  " && window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")


def run_all_from_menu(page: Page, timeout_s: float) -> None:
    """Run > Run All Cells, as a learner does, then wait until no cell is queued or running."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function("() => [...document.querySelectorAll('.jp-InputArea-prompt')].some(p => p.textContent.includes('*'))",
                           timeout=30_000)
    page.wait_for_function(KERNEL_DONE, timeout=timeout_s * 1000, polling=1000)


def problems_on_page(page: Page) -> list[str]:
    """What a learner must never see: a widget that failed to render, stderr or an error output."""
    found = []
    text = page.locator("body").inner_text()
    for bad in ("Error displaying widget", "VBox(children=", "HBox(children=", "Model not found"):
        if bad in text:
            found.append(f"the page shows {bad!r}")
    for output in page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all():
        found.append("stderr / error output: " + output.inner_text()[:1500])
    return found


def _text(locator: Locator) -> str:
    return locator.inner_text(timeout=ANSWER_MS)


def _src(locator: Locator) -> str:
    return locator.get_attribute("src", timeout=ANSWER_MS) or ""


def _srcs(locator: Locator) -> list[str]:
    return [image.get_attribute("src") or "" for image in locator.locator("img").all()]


def _wait_changed(page: Page, read, before, what: str):
    """Poll ``read()`` until it differs from ``before``; fail naming ``what`` if it never does."""
    deadline = page.evaluate("Date.now()") + ANSWER_MS
    while page.evaluate("Date.now()") < deadline:
        now = read()
        if now != before:
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"{what} did not change within {ANSWER_MS // 1000} s")


def _submit(box: Locator, text: str) -> None:
    """Type into a widget's text box and press Enter (the boxes update on submit, not per key)."""
    field = box.locator("input")
    field.fill(text)
    field.press("Enter")


def _chosen(select: Locator) -> str:
    """The label of a dropdown's chosen option."""
    return select.evaluate("s => s.options[s.selectedIndex].text")


def _new_colour(text: str, avoid: str = "") -> str:
    return next(c for c in COLOURS if c not in text and c not in avoid)


def check_scene_composer(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-scene-composer").first
    captions, image = root.locator(".mm-captions"), root.locator("img.mm-image")
    before_text, before_image = _text(captions), _src(image)
    colour = _new_colour(before_text)
    root.locator(".mm-colour-0 select").select_option(colour)
    expect(captions).to_contain_text(colour, timeout=ANSWER_MS)
    _wait_changed(page, lambda: _src(image), before_image, "the composer's image")
    root.screenshot(path=shots / "scene_composer.png")
    return f"object 1's colour → {colour}: the five captions name {colour}, the image changed"


def check_embedding_explorer(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-embedding-explorer").first
    table = root.locator(".mm-neighbours")
    word = "government" if "nearest to government" not in _text(table) else "police"
    _submit(root.locator(".mm-word"), word)
    expect(table).to_contain_text(f"nearest to {word}", timeout=ANSWER_MS)
    rows = table.locator("tr").count()
    assert rows >= 2, f"no neighbours listed for {word!r}"
    root.screenshot(path=shots / "embedding_explorer.png")
    return f"typed {word!r}: the table heads 'nearest to {word}' with {rows - 1} neighbours"


def check_convolution_playground(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-convolution-playground").first
    filtered, info = root.locator("img.mm-filtered"), root.locator(".mm-info")
    before = _src(filtered)
    root.locator(".mm-kernel select").select_option("box blur")
    expect(info).to_contain_text("sum to 1.00", timeout=ANSWER_MS)  # a blur's weights sum to 1 (sobel x's to 0)
    _wait_changed(page, lambda: _src(filtered), before, "the filtered image")
    root.screenshot(path=shots / "convolution_playground.png")
    return "kernel sobel x → box blur: the weights now sum to 1.00, the filtered image changed"


def check_caption_sampler(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-caption-sampler").first
    samples = root.locator(".mm-samples")
    _submit(root.locator(".mm-prefix"), "a large green")
    expect(samples.locator("li").first).to_contain_text("a large green", timeout=ANSWER_MS)
    lines = [line.inner_text() for line in samples.locator("li").all()]
    assert lines and all("a large green" in line for line in lines), f"samples not continuing the prefix: {lines}"
    root.screenshot(path=shots / "caption_sampler.png")
    return f"prefix 'a large green': all {len(lines)} samples continue it"


def check_attention_explorer(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-attention-explorer").first
    info, image = root.locator(".mm-info"), root.locator("img.mm-image")
    before_image = _src(image)
    colour = _new_colour(_text(info).split(":")[0])
    root.locator(".mm-colour select").select_option(colour)
    expect(info).to_contain_text(f"{colour} ", timeout=ANSWER_MS)
    _wait_changed(page, lambda: _src(image), before_image, "the attention map")
    root.screenshot(path=shots / "attention_explorer.png")
    return f"query colour → {colour}: the verdict names {colour}, the attention map changed"


def check_latent_sliders(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-latent-sliders").first
    original, decoded = root.locator("img.mm-original"), root.locator("img.mm-decoded")
    readout = root.locator(".mm-slider-0 .widget-readout")
    before_image, before_code = _src(original), _text(readout)
    _press(root.locator(".mm-index .noUi-handle"), "ArrowRight")  # the next image: its code fills the sliders
    _wait_changed(page, lambda: _src(original), before_image, "the image")
    _wait_changed(page, lambda: _text(readout), before_code, "the first slider (the new image's code)")
    before_decoded, before_value = _src(decoded), _text(readout)
    _press(root.locator(".mm-slider-0 .noUi-handle"), "ArrowLeft" if float(before_value) > 0 else "ArrowRight", times=10)
    after_value = _wait_changed(page, lambda: _text(readout), before_value, "the first slider")
    root.screenshot(path=shots / "latent_sliders.png")
    # A quick-profile VAE may ignore a direction (posterior collapse); the shipped one does not.
    redrawn = _src(decoded) != before_decoded
    return (f"next image: the image and the sliders' code changed; z slider {before_value} → {after_value} with the arrow keys: "
            f"decoded image {'redrawn' if redrawn else 'unchanged (this VAE ignores that direction)'}")


def _press(handle: Locator, key: str, times: int = 1) -> None:
    """Press a key on a slider's handle, as a keyboard user does (the slider sends its value on each)."""
    handle.focus()
    for _ in range(times):
        handle.press(key)


def check_text_to_image(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-text-to-image").first
    pictures, message = root.locator(".mm-pictures"), root.locator(".mm-message")
    before = _srcs(pictures)
    caption = "a small green square" if "green square" not in root.locator(".mm-caption input").input_value() else "a large red circle"
    _submit(root.locator(".mm-caption"), caption)
    after = _wait_changed(page, lambda: _srcs(pictures), before, "the drawings")
    assert len(after) >= 1
    expect(message).to_contain_text("judged true", timeout=ANSWER_MS)
    _submit(root.locator(".mm-caption"), "a small teal square")
    expect(message).to_contain_text("teal", timeout=ANSWER_MS)  # an unknown word is named, not a traceback
    root.screenshot(path=shots / "text_to_image.png")
    _submit(root.locator(".mm-caption"), caption)
    return f"typed {caption!r}: {len(after)} new drawings with the judge's verdict; 'teal' named as unknown"


def check_diffusion_drawer(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-diffusion-drawer").first
    pictures, message, frame = root.locator(".mm-pictures"), root.locator(".mm-message"), root.locator(".mm-frame")
    before = _srcs(pictures)
    caption = "a small green square" if "green square" not in root.locator(".mm-caption input").input_value() else "a large red circle"
    _submit(root.locator(".mm-caption"), caption)
    after = _wait_changed(page, lambda: _srcs(pictures), before, "the drawings")
    expect(message).to_contain_text("judged true", timeout=ANSWER_MS)
    last_frame = frame.get_attribute("src")
    steps = int(re.search(r"(\d+) DDIM steps", _text(message)).group(1))
    _press(root.locator(".mm-step .noUi-handle"), "ArrowLeft")  # one denoising step back from the finished drawing
    _wait_changed(page, lambda: frame.get_attribute("src"), last_frame, "the denoising frame")
    expect(root).to_contain_text(f"step {steps - 1} of {steps}", timeout=ANSWER_MS)
    _submit(root.locator(".mm-caption"), "a small teal square")
    expect(message).to_contain_text("teal", timeout=ANSWER_MS)  # an unknown word is named, not a traceback
    root.screenshot(path=shots / "diffusion_drawer.png")
    _submit(root.locator(".mm-caption"), caption)
    return f"typed {caption!r}: {len(after)} new drawings with the judge's verdict; step slider one back redrew the frame; 'teal' named"


def check_captioning_explorer(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-captioning-explorer").first
    info = root.locator(".mm-info")
    root.locator(".mm-source button", has_text="composed scene").click()
    composer = root.locator(".mm-scene-composer")
    chosen = {name: _chosen(composer.locator(f".mm-{name} select")) for name in ("size-0", "colour-0", "shape-0", "colour-1")}
    colour = _new_colour(" ".join(chosen.values()))
    composer.locator(".mm-colour-0 select").select_option(colour)
    expect(info).to_contain_text(f"image holds: a {chosen['size-0']} {colour} {chosen['shape-0']}", timeout=ANSWER_MS)
    caption = _text(info).split("\n")[0]
    assert colour in caption, f"the caption {caption!r} does not name the chosen colour {colour}"
    root.screenshot(path=shots / "captioning_explorer.png")
    return f"composed scene, object 1's colour → {colour}: the caption reads {caption!r}"


def check_search(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-search").first
    gallery, message = root.locator(".mm-gallery"), root.locator(".mm-message")
    labels = lambda: [b.inner_text() for b in gallery.locator("button").all()]  # noqa: E731
    before = labels()
    query = "a large green triangle"
    _submit(root.locator(".mm-query"), query)
    after = _wait_changed(page, labels, before, "the gallery")
    expect(message).to_contain_text("true to the caption", timeout=ANSWER_MS)
    true = sum("✓" in label for label in after)
    assert true >= 1, f"no image found true to {query!r}: {after}"
    root.screenshot(path=shots / "search.png")
    return f"typed {query!r}: the gallery changed, {true} of {len(after)} images marked true"


def _ask(root: Locator) -> tuple[str, str]:
    """Type a yes/no question the widget's info does not show yet into its ``.mm-typed`` box and
    wait until the info shows it: ``(question, the info's text)``."""
    info = root.locator(".mm-info")
    question = "is there a red circle" if "is there a red circle" not in _text(info) else "is there a blue square"
    _submit(root.locator(".mm-typed"), question)
    expect(info).to_contain_text(f"Q: {question}", timeout=ANSWER_MS)
    return question, _text(info)


def check_vqa_explorer(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-vqa-explorer").first
    question, shown = _ask(root)
    answer = re.search(r"A \((\w+)\): (\w+)", shown)
    assert answer and answer.group(2) in ("yes", "no"), f"no yes/no answer shown: {shown!r}"
    root.screenshot(path=shots / "vqa_explorer.png")
    return f"typed {question!r}: the {answer.group(1)} model answers {answer.group(2)!r}"


def check_vlm_explorer(page: Page, shots: Path, scope: str = "") -> str:
    root = page.locator(f"{scope} .mm-vlm-explorer").first
    info = root.locator(".mm-info")
    question, shown = _ask(root)
    answer = re.search(r"A: (.+)", shown)
    assert answer and answer.group(1).split()[0] in ("yes", "no"), f"no yes/no answer shown: {shown!r}"
    root.locator(".mm-task button", has_text="caption").click()
    expect(info).to_contain_text("caption:", timeout=ANSWER_MS)
    caption = re.search(r"caption: (.+)", _text(info))
    assert caption and caption.group(1).split()[0] != "<end>", f"no caption shown: {_text(info)!r}"
    root.screenshot(path=shots / "vlm_explorer.png")
    return f"typed {question!r}: the VLM answers {answer.group(1)!r}; task → caption: {caption.group(1)!r}"


#: Every widget the notebooks show, with the check that changes one of its controls.
NOTEBOOK_WIDGETS = {
    "00_start_here.ipynb": [check_scene_composer],
    "01_word_embeddings.ipynb": [check_embedding_explorer],
    "02_cnns_and_image_features.ipynb": [check_convolution_playground],
    "03_rnns.ipynb": [check_caption_sampler],
    "04_attention.ipynb": [check_attention_explorer],
    "05_autoencoders_and_vaes.ipynb": [check_latent_sliders, check_text_to_image],
    "06_fused_captioning.ipynb": [check_captioning_explorer],
    "07_alignment_and_retrieval.ipynb": [check_search],
    "08_fusion_and_vqa.ipynb": [check_vqa_explorer],
    "09_transformers_vision_language.ipynb": [check_captioning_explorer, check_vlm_explorer],  # the shipped Transformer captioner, the VLM
    "10_diffusion_text_to_image.ipynb": [check_diffusion_drawer],
}

#: The chapters in four groups (one test module each) that take about as long as each other.
LAB_GROUPS = (sorted(NOTEBOOK_WIDGETS)[:4], sorted(NOTEBOOK_WIDGETS)[4:6], sorted(NOTEBOOK_WIDGETS)[6:9], sorted(NOTEBOOK_WIDGETS)[9:])

#: A notebook's quick profile runs in 15-133 s alone on two cores; a browser and another test share them.
RUN_TIMEOUT_S = 600


def check_notebook(page: Page, lab_url: str, shots: Path, notebook: str) -> None:
    """Open ``notebook`` in JupyterLab, run it from the Run menu, check the page is clean, drive
    each of its widgets, check again; the kernel is shut down whatever happens."""
    open_notebook(page, lab_url, notebook)
    try:
        run_all_from_menu(page, RUN_TIMEOUT_S)
        page.screenshot(path=shots / "notebook.png")
        assert problems_on_page(page) == []
        for check in NOTEBOOK_WIDGETS[notebook]:
            print(f"{notebook} · {check.__name__}: {check(page, shots)}")
        assert problems_on_page(page) == [], "changing a control made an error appear"
    finally:
        shut_down_kernel(page)
