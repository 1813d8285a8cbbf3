"""The chapter's six tables: dataset, expert family, rows (weightings, in the thesis's order),
metrics, and the thesis's published means where this package knows them (3.1, 3.2, 3.3, 3.5;
3.4 and 3.6, Fashion-MNIST, are the held-out check and carry none)."""

from __future__ import annotations

from dataclasses import dataclass

from weighted_mvae.evaluate import GAUSSIAN_METRICS, IMAGE_METRICS

AUTO_ROWS = ("auto:generates-best", "auto:generates-worst", "auto:generated-best", "auto:generated-worst")
GAUSSIAN_ROWS = ("equal", "m1-x2", "m2-x2", "m3-x2", *AUTO_ROWS)
IMAGE_ROWS = ("equal", "text-x2", "text-x3", "image-x2", "image-x3", *AUTO_ROWS)
#: The thesis's row labels, for the markdown tables.
THESIS_LABELS = {
    "equal": "equal (classic)", "m1-x2": "a1 = 2a2 = 2a3", "m2-x2": "2a1 = a2 = 2a3", "m3-x2": "2a1 = 2a2 = a3",
    "text-x2": "2a_i = a_t", "text-x3": "3a_i = a_t", "image-x2": "a_i = 2a_t", "image-x3": "a_i = 3a_t",
    "auto:generates-best": "Üretebilen", "auto:generates-worst": "Üretemeyen",
    "auto:generated-best": "Üretilebilen", "auto:generated-worst": "Üretilemeyen",
}


@dataclass(frozen=True)
class Table:
    number: str
    dataset: str
    expert: str
    rows: tuple[str, ...]
    metrics: tuple[str, ...]
    thesis: dict[str, tuple[float, ...]] | None = None
    thesis_std: dict[str, tuple[float, ...]] | None = None


def _split(cells: dict[str, str]) -> tuple[dict[str, tuple[float, ...]], dict[str, tuple[float, ...]]]:
    means, stds = {}, {}
    for row, text in cells.items():
        pairs = [c.split("±") for c in text.split()]
        means[row] = tuple(float(p[0]) for p in pairs)
        stds[row] = tuple(float(p[1]) for p in pairs)
    return means, stds


_T31 = {"equal": (0.4611, 0.4644, 0.1672, 1.0927), "m1-x2": (0.4913, 0.3878, 0.2232, 1.1023),
        "m2-x2": (0.156, 0.3909, 0.1754, 0.7223), "m3-x2": (0.1701, 0.3559, 0.1682, 0.6942),
        "auto:generates-best": (0.1648, 0.3592, 0.1787, 0.7027), "auto:generates-worst": (0.1511, 0.3769, 0.1743, 0.7023),
        "auto:generated-best": (0.4188, 0.4047, 0.2227, 1.0462), "auto:generated-worst": (0.1537, 0.3645, 0.1914, 0.7096)}
_T32 = {"equal": (0.5223, 0.1968, 0.3652, 1.0843), "m1-x2": (0.5194, 0.1525, 0.3576, 1.0295),
        "m2-x2": (0.6493, 0.4270, 0.4674, 1.5437), "m3-x2": (0.5074, 0.1666, 0.3803, 1.0543),
        "auto:generates-best": (0.4955, 0.1679, 0.3703, 1.0337), "auto:generates-worst": (0.5033, 0.1758, 0.3642, 1.0433),
        "auto:generated-best": (0.5256, 0.1803, 0.3520, 1.0579), "auto:generated-worst": (0.5323, 0.1798, 0.3878, 1.0999)}
_T33, _T33_STD = _split({
    "equal": "0.2042±0.0022 0.8016±0.0444 0.1957±0.0028 0.9608±0.0391 0.2232±0.0006 0.7139±0.0535",
    "text-x2": "0.2158±0.0012 0.7793±0.0531 0.2031±0.0022 0.9138±0.0385 0.2222±0.0004 0.764±0.057",
    "text-x3": "0.2192±0.0006 0.7781±0.052 0.2055±0.0008 0.911±0.0445 0.2223±0.0005 0.7726±0.0534",
    "image-x2": "0.1919±0.0014 0.8725±0.0529 0.1879±0.0017 1.0109±0.0465 0.2244±0.0009 0.656±0.0683",
    "image-x3": "0.1889±0.0024 0.9174±0.0457 0.1869±0.0025 1.0309±0.0398 0.2251±0.0007 0.6139±0.0706",
    "auto:generates-best": "0.2011±0.0028 0.8057±0.049 0.1933±0.0033 0.9619±0.0452 0.2234±0.0007 0.7065±0.0575",
    "auto:generates-worst": "0.2049±0.0022 0.7932±0.05 0.1957±0.003 0.9494±0.0405 0.2231±0.0007 0.7224±0.0588",
    "auto:generated-best": "0.2097±0.0021 0.7785±0.0579 0.197±0.0023 0.9294±0.0549 0.2227±0.0006 0.7422±0.0564",
    "auto:generated-worst": "0.1988±0.0023 0.8428±0.0463 0.1937±0.0028 0.9878±0.0499 0.2238±0.001 0.6826±0.0598"})
_T35, _T35_STD = _split({
    "equal": "0.204±0.0016 0.7965±0.0525 0.1931±0.0035 0.9655±0.0516 0.2232±0.0006 0.7055±0.0532",
    "text-x2": "0.2125±0.0041 0.7612±0.0542 0.195±0.0086 0.9409±0.0603 0.2229±0.0007 0.7237±0.0583",
    "text-x3": "0.2157±0.0036 0.7551±0.0523 0.1956±0.0099 0.9354±0.0637 0.2229±0.0008 0.7315±0.0575",
    "image-x2": "0.1981±0.0038 0.8537±0.0444 0.1927±0.0027 0.986±0.0392 0.2235±0.0011 0.6746±0.0731",
    "image-x3": "0.1948±0.0066 0.8982±0.0491 0.1914±0.0057 1.0025±0.0479 0.2241±0.0012 0.6627±0.092",
    "auto:generates-best": "0.2038±0.0015 0.8042±0.0517 0.1935±0.003 0.967±0.0466 0.2233±0.0005 0.7035±0.0579",
    "auto:generates-worst": "0.2055±0.0018 0.7885±0.0528 0.1937±0.0041 0.9616±0.0487 0.2229±0.0003 0.7066±0.0542",
    "auto:generated-best": "0.2095±0.0025 0.7742±0.0575 0.1948±0.0046 0.9525±0.0532 0.2231±0.0007 0.7201±0.0574",
    "auto:generated-worst": "0.2003±0.0023 0.832±0.0466 0.1929±0.0019 0.9802±0.0473 0.2232±0.0004 0.688±0.0624"})

TABLES = {
    "3.1": Table("3.1", "gaussian", "poe", GAUSSIAN_ROWS, GAUSSIAN_METRICS, _T31),
    "3.2": Table("3.2", "gaussian", "moe", GAUSSIAN_ROWS, GAUSSIAN_METRICS, _T32),
    "3.3": Table("3.3", "mnist", "poe", IMAGE_ROWS, IMAGE_METRICS, _T33, _T33_STD),
    "3.4": Table("3.4", "fashion-mnist", "poe", IMAGE_ROWS, IMAGE_METRICS),
    "3.5": Table("3.5", "mnist", "moe", IMAGE_ROWS, IMAGE_METRICS, _T35, _T35_STD),
    "3.6": Table("3.6", "fashion-mnist", "moe", IMAGE_ROWS, IMAGE_METRICS),
}


def get_table(number: str) -> Table:
    if number not in TABLES:
        raise ValueError(f"unknown table {number!r}; the chapter has {', '.join(TABLES)}")
    return TABLES[number]
