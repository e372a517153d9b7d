"""The registered curation taggers, in the order curated_web consults them.

Adding a tagger: write a module that defines a `Tagger` (see `pipelines/curation/tagger.py`)
and add one `register(...)` line here. Its asset, checks and curated_web columns follow.
"""

from __future__ import annotations

from pipelines.curation.tagger import Tagger
from pipelines.curation.taggers import language_id, pii_tags, quality_tags, toxicity_tags

TAGGERS: list[Tagger] = []


def register(tagger: Tagger) -> Tagger:
    """Append a tagger; its names must not collide with a registered one's."""
    taken = {t.name for t in TAGGERS}
    columns = {c for t in TAGGERS for c in [*t.attributes.names, *(f.name for f in t.carry)]}
    clash = ({tagger.name} & taken) | (set(tagger.attributes.names) | {f.name for f in tagger.carry}) & columns
    if clash:
        raise ValueError(f"tagger {tagger.name!r} reuses registered names {sorted(clash)}; rename them")
    TAGGERS.append(tagger)
    return tagger


def unregister(name: str) -> None:
    TAGGERS[:] = [t for t in TAGGERS if t.name != name]


register(language_id.TAGGER)
register(pii_tags.TAGGER)
register(toxicity_tags.TAGGER)
register(quality_tags.TAGGER)
