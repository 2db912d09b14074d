"""``model.py`` of an export: one standalone file, PyTorch only, generated from archsearch's own source.

The block classes a network uses, ``BlockSpec``, the helpers they call and the input preprocessing
(:mod:`archsearch.data.preprocess`) are copied from their installed source, less ``@register_block`` and the
search-time ``validate``/``cost`` methods; so is the network, ``archsearch.network.build.Net`` (its constructor and
``forward``) with the helpers it calls. What ``Net`` reads of the architecture record is written beside it: a small
``Arch`` holding this network's values of exactly the attributes ``Net``'s source reads (the record's expanded plan
for ``arch.plan()``), and ``_flat_features`` as a number. Anything a copied definition reads must be torch, the
standard library or code defined beside it; anything else is an :class:`ExportError`.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Sequence
from typing import Any

from archsearch.data.image_file import IMAGE_BACKGROUND, read_image
from archsearch.data.preprocess import Preprocess, Preprocessing, WithPreprocessing
from archsearch.export._source import MODEL_FILE, Closure, ExportError
from archsearch.network import blocks
from archsearch.network.arch import Arch
from archsearch.network.build import Net, _flat_features

__all__ = ["ExportError", "MODEL_FILE", "class_names", "model_source"]

_PLAN_NAMES = ("ARCH_ID", "INPUT_SHAPE", "NET_INPUT_SHAPE", "PREPROCESSING", "STEM", "STEM_POOL", "STAGES", "HEAD",
               "FEATURES", "HIDDEN", "NUM_CLASSES", "CLASSES", "IMAGE_MODE", "IMAGE_BACKGROUND", "read_image",
               "classify")
# names model.py defines for the copied code to read: the block map (blocks.get_block reads BLOCKS), and what
# build.Net reads of the record it is built from (an Arch holding this network's values; _flat_features, a number)
_PROVIDED = ("BLOCKS", "Arch", "_flat_features")
# the record's attributes that a plan constant holds: the stand-in reads the constant (any other, its value)
_ARCH_CONSTANTS = {"stem.pool": "STEM_POOL", "head": "HEAD", "hidden": "HIDDEN", "num_classes": "NUM_CLASSES"}

_LOAD_TEMPLATE = '''
def load(folder: str | Path | None = None, *, bare: bool = False) -> nn.Module:
    """The trained network in eval mode, weights from ``weights.pt`` in ``folder`` (default: this file's folder).

    It takes raw images, N x INPUT_SHAPE in the dataset's own range, and applies PREPROCESSING first (where
    that is None the export recorded none: the network's own input). ``bare=True``: the network alone, which
    takes the preprocessed tensor, N x NET_INPUT_SHAPE.
    """
    folder = Path(__file__).resolve().parent if folder is None else Path(folder)
    net = Net(Arch())
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    if bare or PREPROCESSING is None:
        return net.eval()
    return WithPreprocessing(Preprocess(**PREPROCESSING), net).eval()


if __name__ == "__main__":
    import sys

    net = load()
    classify_file = globals().get("classify")  # defined above where the network takes 8-bit images
    if len(sys.argv) > 1 and classify_file is not None:
        failed = 0
        for path in sys.argv[1:]:  # one line per file; a file that cannot be read does not stop the rest
            try:
                _, probs = classify_file(path, net)
            except Exception as e:  # missing, empty, not an image, truncated: the reason, then the next file
                failed += 1
                why = str(e).split("\\n")[0] or type(e).__name__
                if isinstance(e, OSError) and e.strerror:
                    why = e.strerror  # No such file or directory, Is a directory, Permission denied
                elif type(e).__name__ == "UnidentifiedImageError":
                    empty = Path(path).is_file() and Path(path).stat().st_size == 0
                    why = "empty (0 bytes)" if empty else "not an image Pillow can read"
                print(f"{path}: cannot read: {why}", flush=True)
                continue
            top = sorted(probs.items(), key=lambda item: -item[1])[:3]
            print(f"{path}: " + ", ".join(f"{name} {p:.2f}" for name, p in top), flush=True)
        if failed:
            sys.exit(1)
    else:
        with torch.no_grad():
            logits = net(torch.zeros(1, *INPUT_SHAPE))
        print(f"{ARCH_ID}: logits shape {tuple(logits.shape)}")
'''


def model_source(arch: Arch, preprocessing: Preprocessing | None = None, classes: Sequence[str] | None = None) -> str:
    """The text of a standalone ``model.py`` for ``arch``: only torch and the standard library.

    With ``preprocessing`` its ``load()`` gives a network that takes raw images; without, one that takes the
    network's own input (``load(bare=True)`` is that network in both cases). ``CLASSES`` names each output
    (``classes``, or "0".."N-1"). Where the raw images are 8-bit pixels of 1 or 3 channels, ``read_image(path)``
    reads an image file as archsearch's ``folder`` dataset does (Pillow, imported when called).
    """
    names = class_names(classes, arch.num_classes)
    images = preprocessing is not None and preprocessing.divisor == 255 and preprocessing.channels in (1, 3)
    if preprocessing is not None and (preprocessing.resolution, preprocessing.channels) != (
        arch.resolution, arch.in_chs
    ):
        raise ValueError(f"the preprocessing makes {preprocessing.channels}x{preprocessing.resolution}x"
                         f"{preprocessing.resolution} inputs, the network takes {arch.in_chs}x{arch.resolution}x"
                         f"{arch.resolution}")
    stem_spec, stages = arch.plan()
    used = list(dict.fromkeys([stem_spec.block] + [s.block for stage in stages for s in stage]))
    block_classes = [blocks.get_block(name) for name in used]
    home = {blocks.__name__, Preprocess.__module__, Net.__module__} | {cls.__module__ for cls in block_classes}
    closure = Closure(home, _PROVIDED)
    closure.add(blocks.BlockSpec)
    for cls in block_classes:
        closure.add(cls)
    closure.add(Preprocess)
    closure.add(WithPreprocessing)
    closure.add(Net)  # with the helpers it calls, before it
    net = closure.sources.pop()
    for name in _PLAN_NAMES + _PROVIDED + ("Net", "load"):
        if name in closure.constants or name in closure.imports:
            raise ExportError(f"a block's module defines {name!r}, which {MODEL_FILE} uses for its own")

    feat = arch.out_chs if arch.head == "gap" else _flat_features(arch)
    net_shape = (arch.in_chs, arch.resolution, arch.resolution)
    raw_shape = net_shape if preprocessing is None else preprocessing.input_shape
    plan = [
        f"ARCH_ID = {arch.id!r}",
        f"INPUT_SHAPE = {raw_shape!r}  # C, H, W of a raw image: what load() takes",
        f"NET_INPUT_SHAPE = {net_shape!r}  # C, H, W of the network's input: what load(bare=True) takes",
        "# raw image -> network input (archsearch.data.preprocess.Preprocess): x / divisor, minus mean, over std,",
        "# then resized to size x size unless size is None; None: no preprocessing recorded",
        f"PREPROCESSING = {None if preprocessing is None else preprocessing.kwargs()!r}",
        f"STEM = {stem_spec!r}",
        f"STEM_POOL = {arch.stem.pool!r}  # max-pool kernel after the stem (stride 2); 0: none",
        "STAGES = (",
        *(
            "    (\n" + "".join(f"        {spec!r},\n" for spec in stage) + "    ),"
            for stage in stages
        ),
        ")",
        f"HEAD = {arch.head!r}",
        f"FEATURES = {feat!r}  # classifier inputs",
        f"HIDDEN = {arch.hidden!r}  # units of the FC layer (+ ReLU) before the classifier; 0: none",
        f"NUM_CLASSES = {arch.num_classes!r}",
        f"CLASSES = {names!r}  # the name of each output: CLASSES[logits.argmax(1)]",
    ]
    block_map = "BLOCKS = {\n" + "".join(f"    {n!r}: {blocks.get_block(n).__name__},\n" for n in used) + "}"
    future = closure.imports.pop("annotations")
    lines = set(closure.imports.values())
    stdlib_then_torch = [
        sorted(group, key=lambda s: (not s.startswith("import "), s))
        for group in ([s for s in lines if not _is_torch_import(s)], [s for s in lines if _is_torch_import(s)])
    ]
    imports = "\n\n".join("\n".join(group) for group in stdlib_then_torch if group)
    usage = "    print(CLASSES[logits.argmax(1)[0]])  # the first image's class name\n"
    command = "    python model.py              # one forward pass on zeros: prints the logits' shape"
    if images:
        usage += ("    x = model.read_image('cat.png')     # an image file as load() takes it: 1 x INPUT_SHAPE\n"
                  "    name, probs = model.classify('cat.png', net)  # its class, and each class's probability\n")
        command = ("    python model.py IMAGE ...    # a line per file: its top classes with their probabilities\n"
                   "                                 # (a file it cannot read: 'cannot read', and exit status 1)\n"
                   + command)
    header = f'''"""A standalone image classifier (PyTorch only), exported by archsearch.

Architecture {arch.id}.
Generated from the source of archsearch's block classes and network; re-export rather than edit.

    import model                 # with this folder on sys.path
    net = model.load()           # eval mode, weights from weights.pt beside this file
    logits = net(images)         # raw images, N x INPUT_SHAPE, in the dataset's own range
    bare = model.load(bare=True) # the network alone: takes PREPROCESSING's output, N x NET_INPUT_SHAPE
{usage}
{command}
"""'''
    parts = [
        header,
        future + "\n\n" + imports,
        *(["\n".join(closure.constants.values())] if closure.constants else []),
        *closure.sources,
        block_map,
        "# the record's plan (archsearch.network.arch.Arch.plan): one BlockSpec per block\n" + "\n".join(plan),
        _record_source(arch, _arch_reads(net)),
        net,
        _LOAD_TEMPLATE.strip() + "\n",
    ]
    if images and preprocessing is not None:  # images implies a preprocessing
        parts.insert(-1, _image_source(preprocessing))
    text = "\n\n\n".join(p.strip("\n") for p in parts[:-1]) + "\n\n\n" + parts[-1]
    compile(text, MODEL_FILE, "exec")
    return text


def class_names(classes: Sequence[str] | None, n: int) -> list[str]:
    """One name per output: ``classes``, or "0".."n-1" where None."""
    names = [str(i) for i in range(n)] if classes is None else [str(c) for c in classes]
    if len(names) != n:
        raise ValueError(f"the network has {n} outputs but {len(names)} class names were given")
    return names


def _image_source(preprocessing: Preprocessing) -> str:
    """``read_image`` for model.py: archsearch.data.image_file's, bound to this network's raw input."""
    source = textwrap.dedent(inspect.getsource(read_image)).replace("def read_image(", "def _read_image_file(", 1)
    mode = "RGB" if preprocessing.channels == 3 else "L"
    return f'''IMAGE_MODE = {mode!r}  # Pillow mode the images are converted to
IMAGE_BACKGROUND = {IMAGE_BACKGROUND!r}  # grey level that transparent pixels are laid on (255: white)


{source.strip()}


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as load() takes it, 1 x INPUT_SHAPE uint8: turned upright (EXIF orientation), laid on
    IMAGE_BACKGROUND where it has transparency, converted to IMAGE_MODE, the shorter side resized to
    INPUT_SHAPE[1] and the centre square kept where it is another size (as archsearch read the training images)."""
    return _read_image_file(path, IMAGE_MODE, INPUT_SHAPE[1]).unsqueeze(0)


def classify(path: str | Path, net: nn.Module | None = None) -> tuple[str, dict[str, float]]:
    """The class of the image file at ``path``, and each class's probability (the softmax of the logits).

    ``net``: a network from load(), loaded here where None (pass one to classify many files).
    """
    net = load() if net is None else net
    with torch.no_grad():
        probs = torch.softmax(net(read_image(path)).float(), dim=1)[0].tolist()
    best = max(range(len(probs)), key=probs.__getitem__)
    return CLASSES[best], dict(zip(CLASSES, probs))'''


def _is_torch_import(line: str) -> bool:
    return line.split()[1].split(".")[0] == "torch"


def _arch_reads(source: str) -> set[str]:
    """What ``source`` reads of the name ``arch``: dotted attribute paths ("head", "stem.pool", "plan")."""
    tree = ast.parse(source)
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    reads = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            path: list[str] = []
            value: ast.expr = node
            while isinstance(value, ast.Attribute):
                path.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "arch":
                reads.add(".".join(path))
    return reads


def _record_source(arch: Arch, reads: set[str]) -> str:
    """model.py's ``Arch``: each attribute of the record that ``Net`` reads (``reads``), holding ``arch``'s value
    (a plan constant where one holds it), and ``plan()`` giving the plan's STEM and STAGES; and ``_flat_features``."""
    where = f"{Net.__module__}.{Net.__qualname__}"
    plain: dict[str, str] = {}
    nested: dict[str, dict[str, str]] = {}
    for path in sorted(reads - {"plan"}):
        *outer, name = path.split(".")
        if len(outer) > 1:
            raise ExportError(f"{where} reads arch.{path}; {MODEL_FILE}'s Arch holds attributes one level deep")
        value: Any = arch
        for part in path.split("."):
            value = getattr(value, part)
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise ExportError(f"{where} reads arch.{path} = {type(value).__name__}, which cannot be written into "
                              f"{MODEL_FILE} (a number, string or None can)")
        text = _ARCH_CONSTANTS.get(path, repr(value))
        (nested.setdefault(outer[0], {}) if outer else plain)[name] = text
    if set(nested) & set(plain):
        raise ExportError(f"{where} reads both arch.{min(set(nested) & set(plain))} and an attribute of it")
    lines = [
        "class Arch:",
        '    """What ``Net`` reads of the architecture record (archsearch.network.arch.Arch): this network\'s '
        'values.',
        '    ``load()`` builds ``Net(Arch())``."""',
    ]
    attributes = []
    for outer_name, attrs in nested.items():  # arch.stem.pool: a class Stem inside, and stem = Stem()
        cls = outer_name.title().replace("_", "")
        lines += ["", f"    class {cls}:", *(f"        {k} = {v}" for k, v in attrs.items())]
        attributes.append(f"    {outer_name} = {cls}()")
    attributes += [f"    {k} = {v}" for k, v in plain.items()]
    if attributes:
        lines += ["", *attributes]
    if "plan" in reads:
        lines += ["", "    def plan(self) -> tuple[BlockSpec, tuple[tuple[BlockSpec, ...], ...]]:",
                  '        """The stem\'s block and each stage\'s blocks (archsearch.network.arch.Arch.plan)."""',
                  "        return STEM, STAGES"]
    return "\n".join(lines) + '''


def _flat_features(arch: Arch) -> int:
    """The classifier's inputs under the flatten head (computed at export)."""
    return FEATURES'''
