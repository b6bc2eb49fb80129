"""The bundled English-like corpus for the text tasks (`<repo>/data/corpus.txt`).

A small probabilistic grammar over a few hundred words writes paragraphs of sentences:
determiners, adjectives and nouns with number agreement (a/this/the cat sits, these/the
cats sit), transitive and intransitive verbs, prepositional phrases, subordinate and
coordinated clauses, questions and quoted speech; each paragraph keeps one tense (present or
past), a long-range dependency like the notes' example. Words are drawn with Zipf-like
weights, so a character model has structure at every scale: letters within words, words
within phrases, tense across sentences.

Deterministic: `random.Random(seed)` (Mersenne Twister, stable across Python versions) and
fixed word lists; `generate_corpus()` always returns the same text.
`python -m runtime.data.corpus [PATH]` writes it (default: the bundled path).
"""
from __future__ import annotations

import random
import sys
import textwrap
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "corpus.txt"
SIZE = 200_000
SEED = 1997

NOUNS = ["cat", "dog", "bird", "fox", "horse", "child", "teacher", "student", "farmer", "king",
         "queen", "doctor", "painter", "sailor", "baker", "river", "garden", "house", "forest",
         "village", "city", "window", "letter", "story", "song", "book", "friend", "mother",
         "father", "brother", "sister", "neighbour", "stranger", "captain", "soldier", "merchant",
         "machine", "engine", "lamp", "table", "door", "road", "bridge", "mountain", "island",
         "ship", "boat", "apple", "tree", "flower", "stone", "clock", "candle", "map", "key",
         "coin", "cloud", "storm", "morning", "evening", "winter", "summer"]
IRREGULAR_PLURALS = {"child": "children", "fox": "foxes", "city": "cities", "story": "stories",
                     "church": "churches", "box": "boxes", "sky": "skies"}
NAMES = ["anna", "peter", "maria", "john", "lucy", "thomas", "emma", "david", "sarah", "paul",
         "clara", "henry"]
ADJECTIVES = ["old", "young", "small", "large", "quiet", "happy", "tired", "bright", "dark",
              "green", "red", "blue", "white", "black", "strange", "little", "brave", "clever",
              "gentle", "cold", "warm", "wild", "kind", "heavy", "empty", "silent", "golden",
              "wooden", "distant", "ancient", "hungry", "careful", "busy", "lonely"]
# (base, third person singular, past); transitive verbs take an object
TRANSITIVE = [("see", "sees", "saw"), ("find", "finds", "found"), ("like", "likes", "liked"),
              ("take", "takes", "took"), ("follow", "follows", "followed"), ("watch", "watches", "watched"),
              ("carry", "carries", "carried"), ("open", "opens", "opened"), ("build", "builds", "built"),
              ("paint", "paints", "painted"), ("remember", "remembers", "remembered"),
              ("help", "helps", "helped"), ("call", "calls", "called"), ("hold", "holds", "held"),
              ("read", "reads", "read"), ("visit", "visits", "visited"), ("bring", "brings", "brought"),
              ("lose", "loses", "lost"), ("want", "wants", "wanted"), ("love", "loves", "loved")]
INTRANSITIVE = [("sleep", "sleeps", "slept"), ("sing", "sings", "sang"), ("run", "runs", "ran"),
                ("wait", "waits", "waited"), ("laugh", "laughs", "laughed"), ("smile", "smiles", "smiled"),
                ("walk", "walks", "walked"), ("sit", "sits", "sat"), ("stay", "stays", "stayed"),
                ("work", "works", "worked"), ("dream", "dreams", "dreamed"), ("fall", "falls", "fell"),
                ("arrive", "arrives", "arrived"), ("listen", "listens", "listened"), ("rest", "rests", "rested")]
ADVERBS = ["slowly", "quickly", "quietly", "often", "never", "always", "suddenly", "happily",
           "carefully", "again", "together"]
PREPOSITIONS = ["in", "on", "near", "under", "behind", "beside", "across", "through", "into", "over"]
PLACES = ["garden", "house", "forest", "village", "city", "river", "bridge", "mountain", "island",
          "road", "market", "kitchen", "tower", "harbour", "valley"]
SUBORDINATORS = ["when", "because", "while", "after", "before", "although"]
COORDINATORS = ("and", "but", "so")
OBJECT_PRONOUNS = {"she": "her", "he": "him", "they": "them", "we": "us"}


class Grammar:
    """Draws sentences; `self.past` is the tense of the current paragraph."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.past = False

    def pick(self, words, skew: float = 0.9):
        """A word with Zipf-like weight 1 / (rank + 1)^skew."""
        weights = [1.0 / (i + 1) ** skew for i in range(len(words))]
        r = self.rng.random() * sum(weights)
        for word, w in zip(words, weights):
            r -= w
            if r <= 0:
                return word
        return words[-1]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def noun_phrase(self, allow_pp: bool = True) -> tuple[str, bool]:
        """(words, plural)."""
        r = self.rng.random()
        if r < 0.12:
            return self.pick(NAMES).capitalize(), False
        if r < 0.2:
            pron = self.pick(["she", "he", "they", "it", "we"])
            return pron, pron in ("they", "we")
        plural = self.chance(0.3)
        noun = self.pick(NOUNS)
        if plural:
            noun = IRREGULAR_PLURALS.get(noun, noun + "s")
            det = self.pick(["the", "some", "many", "these", "two", "three", "our", "their"])
        else:
            det = self.pick(["the", "a", "this", "that", "her", "his", "every", "one"])
        words = [det]
        if self.chance(0.45):
            words.append(self.pick(ADJECTIVES))
        words.append(noun)
        if det == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        if allow_pp and self.chance(0.15):
            words.append(self.prepositional_phrase())
        return " ".join(words), plural

    def object_phrase(self) -> str:
        words, _ = self.noun_phrase()
        return OBJECT_PRONOUNS.get(words, words)

    def prepositional_phrase(self) -> str:
        adj = self.pick(ADJECTIVES) + " " if self.chance(0.3) else ""
        return f"{self.pick(PREPOSITIONS)} the {adj}{self.pick(PLACES)}"

    def verb(self, forms, plural: bool, subject: str) -> str:
        base, third, past = forms
        if self.past:
            return past
        return base if plural or subject in ("i", "you") else third

    def clause(self) -> str:
        subject, plural = self.noun_phrase()
        if self.chance(0.6):
            words = [self.verb(self.pick(TRANSITIVE), plural, subject), self.object_phrase()]
        elif self.chance(0.25):
            be = ("were" if plural else "was") if self.past else ("are" if plural else "is")
            words = [be, self.pick(ADJECTIVES)]
        else:
            words = [self.verb(self.pick(INTRANSITIVE), plural, subject)]
            if self.chance(0.4):
                words.append(self.pick(ADVERBS))
        if self.chance(0.3):
            words.append(self.prepositional_phrase())
        return " ".join([subject] + words)

    def sentence(self) -> str:
        r = self.rng.random()
        if r < 0.1:
            subject, plural = self.noun_phrase(allow_pp=False)
            aux = "did" if self.past else ("do" if plural else "does")
            body = f"{aux} {subject} {self.pick(TRANSITIVE)[0]} {self.object_phrase()}"
            return body[0].upper() + body[1:] + "?"
        if r < 0.18:
            said = "said" if self.past else "says"
            quote = self.clause()
            return f'"{quote[0].upper() + quote[1:]}," {said} {self.pick(NAMES).capitalize()}.'
        if r < 0.38:
            text = f"{self.pick(SUBORDINATORS)} {self.clause()}, {self.clause()}"
        elif r < 0.55:
            text = f"{self.clause()} {self.pick(COORDINATORS)} {self.clause()}"
        else:
            text = self.clause()
        return text[0].upper() + text[1:] + ("!" if self.chance(0.05) else ".")

    def paragraph(self) -> str:
        self.past = self.chance(0.5)
        sentences = [self.sentence() for _ in range(3 + int(self.rng.random() * 6))]
        return textwrap.fill(" ".join(sentences), width=78)


def generate_corpus(size: int = SIZE, seed: int = SEED) -> str:
    """About `size` characters of paragraphs (whole paragraphs; ends with a newline)."""
    grammar, parts, total = Grammar(seed), [], 0
    while total < size:
        parts.append(grammar.paragraph())
        total += len(parts[-1]) + 2
    return "\n\n".join(parts) + "\n"


def write_corpus(path=BUNDLED, size: int = SIZE, seed: int = SEED) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generate_corpus(size, seed), encoding="utf-8")
    return path


def ensure_bundled(path) -> bool:
    """Generate the bundled corpus if `path` is its (missing) location; True if it did."""
    path = Path(path).resolve()
    if path.exists() or path != BUNDLED:
        return False
    print(f"timeloom: generating the bundled corpus at {path} ({SIZE // 1000} KB, seed {SEED})",
          file=sys.stderr)
    write_corpus(path)
    return True


if __name__ == "__main__":
    print(write_corpus(sys.argv[1] if len(sys.argv) > 1 else BUNDLED))
