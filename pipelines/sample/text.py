"""Seeded generator of real-language paragraphs from the lexicon's frames."""

from __future__ import annotations

import random

from pipelines.sample import lexicon

MAIN_LANGS = ("en", "de", "fr", "es")
OTHER_LANGS = ("it", "pt", "nl", "ru", "ja")
TOPICS = tuple(lexicon.TOPICS)


class TextGenerator:
    """Fills frames with topic vocabulary; every call draws from the given RNG only."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._decks: dict[str, list[str]] = {}

    def _deal(self, key: str, items: list[str]) -> str:
        """Items are dealt from a shuffled deck, so a document repeats none until all are used
        (real text does not repeat its sentence skeletons and phrases; Gopher's n-gram rules notice)."""
        deck = self._decks.get(key)
        if not deck:
            deck = self._decks[key] = list(items)
            self.rng.shuffle(deck)
        return deck.pop()

    def sentence(self, lang: str, topic: str) -> str:
        rng = self.rng
        vocab = lexicon.TOPICS[topic][lang]
        frame = self._deal(f"frame:{lang}", lexicon.FRAMES[lang])
        time = self._deal(f"time:{lang}", lexicon.TIMES[lang])
        if not frame.startswith("{time}"):
            time = time[0].lower() + time[1:]
        text = frame.format(
            subj=self._deal(f"subj:{lang}:{topic}", vocab["subj"]),
            obj=self._deal(f"obj:{lang}:{topic}", vocab["obj"]),
            place=self._deal(f"place:{lang}", lexicon.PLACES[lang]),
            time=time,
            num=rng.choice([2, 3, 5, 7, 8, 12, 15, 18, 24, 30, 41, 60]),
            person=self._deal(f"person:{lang}", lexicon.PERSONS[lang]),
        )
        return text[0].upper() + text[1:]

    def paragraph(self, lang: str, topic: str, n_sentences: int, side_topic: str | None = None) -> str:
        sep = "" if lang == "ja" else " "
        topics = [topic] if side_topic is None else [topic, topic, side_topic]
        return sep.join(self.sentence(lang, self.rng.choice(topics)) for _ in range(n_sentences))

    def paragraphs(self, lang: str, topic: str, n: int, min_sent: int = 2, max_sent: int = 5) -> list[str]:
        """A document's paragraphs: fresh decks, and a side topic for a third of the sentences, so a
        page does not repeat its phrases more than real articles do."""
        self._decks.clear()
        side = self.rng.choice([t for t in TOPICS if t != topic])
        return [self.paragraph(lang, topic, self.rng.randint(min_sent, max_sent), side) for _ in range(n)]

    def title(self, lang: str, topic: str) -> str:
        words = self.sentence(lang, topic).rstrip(".。").split()
        return " ".join(words[: self.rng.randint(5, 9)]) if lang != "ja" else self.sentence(lang, topic)[:20]
