"""The addon's translation files: update them from a fresh export, or check them.

Used by ``tools/dev.py i18n``: Odoo exports the template (``.pot``) from a database
with the addon installed; this module compares it with ``i18n/payment_vipps.pot``,
merges it into the shipped ``.po`` files, and finds what a translator left undone:
an empty or fuzzy entry, or a placeholder or markup element that does not match
the English text.
"""

import re
from pathlib import Path

import polib

# The languages shipped: Odoo loads i18n/<code>.po for every nb_NO, da_DK, ...
LANGUAGES = {
    "nb": "Norwegian Bokmål",
    "da": "Danish",
    "fi": "Finnish",
    "sv": "Swedish",
}
# Header lines that change on every export without the texts changing.
VOLATILE_HEADERS = ("POT-Creation-Date", "PO-Revision-Date")
PYTHON_PLACEHOLDER = re.compile(
    r"%(?:\([A-Za-z_][A-Za-z0-9_]*\))?[sdfr]|%%|\{\{.*?\}\}|\{[A-Za-z_0-9]*\}"
)
MARKUP_ELEMENT = re.compile(r"<[^<>]*>")


def _load(path_or_text):
    return polib.pofile(str(path_or_text), wrapwidth=78)


def _key(entry):
    return (entry.msgctxt or "", entry.msgid)


def _live(po):
    return [entry for entry in po if not entry.obsolete]


def normalised(po):
    """The export without what changes on every run (dates), as text."""
    for header in VOLATILE_HEADERS:
        po.metadata.pop(header, None)
    po.sort(key=_key)
    return str(po)


def placeholders(text):
    """The placeholders and markup elements of a text, in a comparable form."""
    python = sorted(PYTHON_PLACEHOLDER.findall(text))
    markup = sorted(
        re.sub(r"\s+", " ", element) for element in MARKUP_ELEMENT.findall(text)
    )
    return python, markup


def entry_problems(entry):
    """What is wrong with one translated entry (empty list when nothing)."""
    where = entry.msgid.splitlines()[0][:60] if entry.msgid else "(header)"
    if "fuzzy" in entry.flags:
        return [f"fuzzy: {where!r}"]
    if not entry.msgstr.strip():
        return [f"untranslated: {where!r}"]
    problems = []
    source_python, source_markup = placeholders(entry.msgid)
    python, markup = placeholders(entry.msgstr)
    if source_python != python:
        problems.append(
            f"placeholders {python} differ from the English {source_python}: {where!r}"
        )
    if source_markup != markup:
        missing = sorted(set(source_markup) - set(markup))
        extra = sorted(set(markup) - set(source_markup))
        problems.append(
            f"markup differs from the English (missing {missing}, extra {extra}): "
            f"{where!r}"
        )
    return problems


def check(exported_pot, i18n_dir):
    """Problems with the shipped files against a fresh export (empty when none)."""
    problems = []
    i18n_dir = Path(i18n_dir)
    fresh = _load(exported_pot)
    shipped_pot = i18n_dir / "payment_vipps.pot"
    if not shipped_pot.exists():
        return [f"{shipped_pot} is missing: run python3 tools/dev.py i18n"]
    if normalised(_load(shipped_pot)) != normalised(_load(exported_pot)):
        problems.append(
            f"{shipped_pot.name} is out of date with the code: run "
            "python3 tools/dev.py i18n, translate the new entries and commit"
        )
    wanted = {_key(entry) for entry in _live(fresh)}
    for code in LANGUAGES:
        path = i18n_dir / f"{code}.po"
        if not path.exists():
            problems.append(f"{path.name} is missing")
            continue
        problems.extend(
            f"{path.name}: {problem}" for problem in _po_problems(_load(path), wanted)
        )
    return problems


def _po_problems(po, wanted):
    """What is missing, extra or wrong in one .po against the entries `wanted`."""
    have = {_key(entry): entry for entry in _live(po)}
    problems = [f"missing entry {key[1][:60]!r}" for key in sorted(wanted - set(have))]
    problems += [
        f"entry not in the code {key[1][:60]!r}" for key in sorted(set(have) - wanted)
    ]
    for key in sorted(wanted & set(have)):
        problems.extend(entry_problems(have[key]))
    return problems


def update(exported_pot, i18n_dir):
    """Write the fresh export as the .pot and merge it into each .po: translations
    of unchanged texts are kept, new texts are added empty, removed ones dropped.

    :return: {language code: number of entries left to translate}
    """
    i18n_dir = Path(i18n_dir)
    i18n_dir.mkdir(exist_ok=True)
    fresh = _load(exported_pot)
    for header in VOLATILE_HEADERS:
        fresh.metadata[header] = ""
    fresh.sort(key=_key)
    fresh.save(str(i18n_dir / "payment_vipps.pot"))
    todo = {}
    for code in LANGUAGES:
        path = i18n_dir / f"{code}.po"
        old = (
            {_key(entry): entry for entry in _live(_load(path))}
            if path.exists()
            else {}
        )
        po = polib.POFile(wrapwidth=78)
        po.header = fresh.header
        po.metadata = {
            **fresh.metadata,
            "Language": code,
            "Plural-Forms": "nplurals=2; plural=(n != 1);",
        }
        for source in _live(fresh):
            previous = old.get(_key(source))
            po.append(
                polib.POEntry(
                    msgctxt=source.msgctxt,
                    msgid=source.msgid,
                    msgstr=previous.msgstr if previous else "",
                    occurrences=source.occurrences,
                    comment=source.comment,
                    tcomment=previous.tcomment if previous else "",
                    flags=[flag for flag in source.flags if flag != "fuzzy"],
                )
            )
        po.save(str(path))
        todo[code] = sum(not entry.msgstr.strip() for entry in po)
    return todo


def counts(i18n_dir):
    """{language code: translated entries} of the shipped files."""
    return {
        code: sum(bool(entry.msgstr.strip()) for entry in _live(_load(path)))
        for code in LANGUAGES
        if (path := Path(i18n_dir) / f"{code}.po").exists()
    }


def check_file(path, pot_path=None):
    """Problems of one .po against the shipped .pot (for translators)."""
    path = Path(path)
    pot = _load(pot_path or path.parent / "payment_vipps.pot")
    return _po_problems(_load(path), {_key(entry) for entry in _live(pot)})


if __name__ == "__main__":
    import sys

    found = False
    for name in sys.argv[1:]:
        for problem in check_file(name):
            found = True
            print(f"{name}: {problem}")
    sys.exit(1 if found else 0)
