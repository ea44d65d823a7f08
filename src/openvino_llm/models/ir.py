"""OpenVINO IR folders: the files a task needs, and cheap damage checks that compile nothing.

>>> check_ir_folder(Path("my-model-ov"))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from pathlib import Path
from xml.etree import ElementTree

from ..errors import ModelNotFoundError

IR_MODEL_FILE = "openvino_model.xml"
TOKENIZER_FILE = "openvino_tokenizer.xml"
DETOKENIZER_FILE = "openvino_detokenizer.xml"


def check_ir_folder(folder: Path, task: str = "text-generation") -> None:
    """Raise :class:`ModelNotFoundError` if ``folder`` lacks the IR files ``task`` needs."""
    need = [IR_MODEL_FILE, TOKENIZER_FILE] + ([DETOKENIZER_FILE] if task == "text-generation" else [])
    missing = [name for name in need if not (folder / name).is_file()]
    if missing:
        hint = (
            "Convert the tokenizer with `convert_tokenizer` from openvino_tokenizers "
            "(with_detokenizer=True) and save both next to the model, or re-export the checkpoint."
            if IR_MODEL_FILE not in missing
            else "Export the checkpoint with `openvino-llm export SOURCE OUT`."
        )
        raise ModelNotFoundError(f"{folder} is not a complete OpenVINO IR folder for {task}: missing {missing}. {hint}")


def ir_damage(folder: Path, task: str = "text-generation") -> str | None:
    """What is wrong with the files of an IR folder, or ``None`` when they look loadable.

    Cheap checks, no model is compiled: the files ``task`` needs exist, every ``.xml`` parses as an
    OpenVINO IR (``<net>``), and its ``.bin`` holds every weight the XML points to (a truncated copy
    or an interrupted write fails here). Results are cached per file size and mtime.

    >>> ir_damage(Path("my-model-ov"))  # doctest: +SKIP
    'openvino_model.bin is truncated: 295022 bytes, but the weights need 590045'
    """
    folder = Path(folder)
    need = [IR_MODEL_FILE, TOKENIZER_FILE] + ([DETOKENIZER_FILE] if task == "text-generation" else [])
    for name in need:
        if not (folder / name).is_file():
            return f"{name} is missing"
    for name in need:
        xml = folder / name
        bin_file = xml.with_suffix(".bin")
        try:
            stamp = (str(xml), _file_stamp(xml), _file_stamp(bin_file))
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
        problem = _xml_damage(*stamp)
        if problem is not None:
            return problem
    return None


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=256)
def _xml_damage(xml_path: str, xml_stamp: tuple[int, int] | None, bin_stamp: tuple[int, int] | None) -> str | None:
    """The damage of one IR file pair; the stamps (size, mtime) are the cache key."""
    xml = Path(xml_path)
    weights_end = 0
    root_seen = False
    try:
        for event, elem in ElementTree.iterparse(xml, events=("start", "end")):
            if not root_seen:
                if elem.tag != "net":
                    return f"{xml.name} is XML but not an OpenVINO IR model (root element <{elem.tag}>, not <net>)"
                root_seen = True
            if event == "end":
                if elem.tag == "data" and "offset" in elem.attrib and "size" in elem.attrib:
                    weights_end = max(weights_end, int(elem.attrib["offset"]) + int(elem.attrib["size"]))
                elif elem.tag == "layer":
                    elem.clear()
    except (ElementTree.ParseError, ValueError) as e:
        return f"{xml.name} is not a valid OpenVINO IR file (XML error: {e})"
    except OSError as e:
        return f"{xml.name} cannot be read ({e.strerror or e})"
    bin_name = xml.with_suffix(".bin").name
    if weights_end > 0:
        if bin_stamp is None:
            return f"{bin_name} is missing (it holds the weights of {xml.name})"
        if bin_stamp[0] < weights_end:
            return f"{bin_name} is truncated: {bin_stamp[0]} bytes, but the weights need {weights_end}"
    return None


def model_xmls(ir_dir: Path) -> list[Path]:
    """The model IR files of a folder (``openvino_model.xml``, ...), without the tokenizer IRs."""
    return sorted(p for p in ir_dir.glob("*.xml") if "tokenizer" not in p.name)


def ir_file_damage(xml: Path) -> str | None:
    """What is wrong with one IR file pair (``.xml`` + its ``.bin``), or ``None``."""
    return _xml_damage(str(xml), _file_stamp(xml), _file_stamp(xml.with_suffix(".bin")))


__all__ = [
    "DETOKENIZER_FILE",
    "IR_MODEL_FILE",
    "TOKENIZER_FILE",
    "check_ir_folder",
    "ir_damage",
    "ir_file_damage",
    "model_xmls",
]
