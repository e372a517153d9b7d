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

    def sentence(self, lang: str, topic: str) -> str:
        rng = self.rng
        vocab = lexicon.TOPICS[topic][lang]
        frame = rng.choice(lexicon.FRAMES[lang])
        time = rng.choice(lexicon.TIMES[lang])
        if not frame.startswith("{time}"):
            time = time[0].lower() + time[1:]
        text = frame.format(
            subj=rng.choice(vocab["subj"]),
            obj=rng.choice(vocab["obj"]),
            place=rng.choice(lexicon.PLACES[lang]),
            time=time,
            num=rng.choice([2, 3, 5, 7, 8, 12, 15, 18, 24, 30, 41, 60]),
            person=rng.choice(lexicon.PERSONS[lang]),
        )
        return text[0].upper() + text[1:]

    def paragraph(self, lang: str, topic: str, n_sentences: int) -> str:
        sep = "" if lang == "ja" else " "
        return sep.join(self.sentence(lang, topic) for _ in range(n_sentences))

    def paragraphs(self, lang: str, topic: str, n: int, min_sent: int = 3, max_sent: int = 6) -> list[str]:
        return [self.paragraph(lang, topic, self.rng.randint(min_sent, max_sent)) for _ in range(n)]

    def title(self, lang: str, topic: str) -> str:
        words = self.sentence(lang, topic).rstrip(".。").split()
        return " ".join(words[: self.rng.randint(5, 9)]) if lang != "ja" else self.sentence(lang, topic)[:20]
